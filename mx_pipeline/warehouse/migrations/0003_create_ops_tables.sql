-- ops: what the pipeline did and why, for the data team.

create table if not exists ops.end_users (
    id            varchar primary key,  -- our end user's id (never an email or a name)
    source        varchar not null,     -- where we learned of the user: a reference file or the connect service
    mx_user_guid  varchar,              -- null until the user is registered with MX
    first_seen_at timestamptz not null default current_timestamp,
    registered_at timestamptz
);

create table if not exists ops.member_status_history (
    member_guid         varchar not null,
    user_guid           varchar not null,
    connection_status   varchar,
    is_being_aggregated boolean,
    checked_at          timestamptz not null,
    run_id              varchar not null
);

create table if not exists ops.member_sync (
    member_guid            varchar primary key,
    user_guid              varchar not null,
    transactions_watermark timestamptz,  -- newest `updated_at` of the last complete transaction sync
    last_synced_at         timestamptz,  -- when that sync finished
    last_outcome           varchar not null,  -- synced | skipped | failed
    last_reason            varchar,           -- why it was skipped or failed
    last_attempt_at        timestamptz not null,
    last_run_id            varchar not null
);

create table if not exists ops.quarantine (
    quarantined_at timestamptz not null,
    run_id         varchar not null,
    table_name     varchar not null,    -- the table the record was meant for, e.g. raw.mx_transactions
    record_guid    varchar,             -- null when the record had no usable guid, or a whole page failed
    member_guid    varchar,
    reason         varchar not null,
    payload        json                 -- as received; null when the response itself was unreadable
);

create table if not exists ops.api_calls (
    started_at    timestamptz not null,
    run_id        varchar,
    method        varchar not null,
    path_template varchar not null,     -- e.g. /users/{user_guid}/members: never the guids or the query
    status        integer,              -- null when no response arrived
    latency_ms    double not null,
    attempt       integer not null,
    request_id    varchar,
    user_guid     varchar,
    member_guid   varchar,
    error         varchar               -- exception class name only: never bodies or credentials
);
