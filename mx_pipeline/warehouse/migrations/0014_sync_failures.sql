-- A run that could not read a member or a user's member list (after the transport's retries) says so: member
-- reads (status, accounts, transactions) record their failure in ops.member_sync, whose comments now say so; a
-- user's member list records its outcome here. The freshness sensor reads both again after a back-off.
create table if not exists ops.user_sync (
    user_guid       varchar primary key,
    last_outcome    varchar not null,  -- listed | failed
    last_reason     varchar,           -- why the list could not be read
    last_attempt_at timestamptz not null,
    last_run_id     varchar not null
);

comment on table ops.user_sync is 'Each user''s last member-list read: listed, or failed with the reason; a failed list is read again by the freshness sensor after a back-off.';
comment on table ops.member_sync is 'Each member''s last sync: transactions synced, skipped (its route and status), retired, or failed with the read that failed and why (status, accounts or transactions read failed: ...); a failed member is read again by the freshness sensor after a back-off.';
