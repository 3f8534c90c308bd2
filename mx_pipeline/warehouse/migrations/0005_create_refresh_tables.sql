-- ops: the refresh scheduler. Freshness SLAs, claims (at most one pending refresh per member), attempts.

alter table ops.end_users add column if not exists tier varchar;  -- a user tier SLAs can be set for

create table if not exists ops.freshness_sla (
    scope     varchar not null check (scope in ('member', 'user', 'tier')),
    key       varchar not null,              -- a member guid, a user guid, or a tier name
    sla_hours double not null check (sla_hours > 0),
    primary key (scope, key)
);

create table if not exists ops.refresh_claims (
    member_guid varchar primary key,         -- a member with a refresh pending: nobody else launches one
    user_guid   varchar not null,
    trigger     varchar not null,            -- sla | webhook | manual
    run_key     varchar not null,            -- the run that holds it; released when that run is done with it
    claimed_at  timestamptz not null
);

create table if not exists ops.refresh_attempts (
    member_guid       varchar not null,
    user_guid         varchar not null,
    trigger           varchar not null,      -- sla | webhook | manual
    requested_at      timestamptz not null,  -- when the aggregation was asked for
    finished_at       timestamptz not null,
    outcome           varchar not null,      -- refreshed | needs_user | held | failed | timed_out | conflict | declined
    connection_status varchar,               -- the status read when the attempt ended
    api_calls         integer not null,
    run_id            varchar not null,
    detail            varchar                -- the error or MX's message, never a credential
);
