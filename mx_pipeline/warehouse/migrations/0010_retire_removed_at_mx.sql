-- Retire, never delete: whatever MX no longer lists (a user, a member, an account) keeps its rows for audit
-- and gets `removed_at`; the fetching assets, the scheduler and the marts leave it out from then on.
-- (raw.mx_transactions has had `removed_at` since 0002.)
alter table raw.mx_users add column if not exists removed_at timestamptz;
alter table raw.mx_members add column if not exists removed_at timestamptz;
alter table raw.mx_member_status add column if not exists removed_at timestamptz;
alter table raw.mx_accounts add column if not exists removed_at timestamptz;

-- An end user deleted at MX (or offboarded by the product) is not registered again by the ingest; a new
-- registration through the connect service clears it.
alter table ops.end_users add column if not exists retired_at timestamptz;

-- Why and when each user, member or account was retired: one row per retired object.
create table if not exists ops.retirements (
    kind        varchar not null check (kind in ('user', 'member', 'account')),
    guid        varchar not null,
    user_guid   varchar not null,
    member_guid varchar,               -- null for a user
    reason      varchar not null,      -- plain words: deleted at MX, replaced, offboarded, vanished from the list
    retired_at  timestamptz not null,
    run_id      varchar not null,      -- the Dagster run, or the command that retired it
    primary key (kind, guid)
);

-- The marts gained user_id (our end user's id): rebuild the incremental fact table in full on its next run.
drop table if exists marts.fct_transactions;
