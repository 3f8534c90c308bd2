-- A member MX has not aggregated since our last complete sync is not read again (warehouse/members.py): the sync
-- remembers MX's successfully_aggregated_at as the status read gave it when the sync read the member's accounts
-- and transactions. Null until a sync completes, and again after any failed read: such a member is always read.
alter table ops.member_sync add column if not exists synced_aggregated_at timestamptz;
comment on column ops.member_sync.synced_aggregated_at is 'MX''s successfully_aggregated_at when the last complete sync read the member (accounts and transactions); null when none completed since a failed read. Unchanged at MX since: the member is skipped as unchanged.';
