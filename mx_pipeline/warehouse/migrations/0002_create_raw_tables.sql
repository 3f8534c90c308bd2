-- raw: one table per MX object, upserted by MX guid. `payload` is the object exactly as MX sent it;
-- the typed columns beside it are the few the pipeline itself needs (keys, status, watermark inputs).
-- Load metadata: `run_id` (the Dagster run) and `fetched_at` (when this version of the payload arrived;
-- an unchanged re-read keeps the original values).

create table if not exists raw.mx_users (
    guid       varchar primary key,
    id         varchar,                 -- our end user's id, as registered with MX
    payload    json not null,
    run_id     varchar not null,
    fetched_at timestamptz not null
);

create table if not exists raw.mx_members (
    guid              varchar primary key,
    user_guid         varchar not null,
    institution_code  varchar,
    connection_status varchar,          -- as listed; member_status holds the fresh read
    payload           json not null,
    run_id            varchar not null,
    fetched_at        timestamptz not null
);

create table if not exists raw.mx_member_status (
    guid                       varchar primary key,  -- the member guid
    user_guid                  varchar not null,
    connection_status          varchar,
    is_being_aggregated        boolean,
    successfully_aggregated_at timestamptz,
    payload                    json not null,
    run_id                     varchar not null,
    fetched_at                 timestamptz not null
);

create table if not exists raw.mx_accounts (
    guid          varchar primary key,
    member_guid   varchar not null,
    user_guid     varchar not null,
    type          varchar,
    balance       decimal(18, 4),       -- as MX reports it (no sign convention applied in raw)
    currency_code varchar,
    updated_at    timestamptz,
    payload       json not null,
    run_id        varchar not null,
    fetched_at    timestamptz not null
);

create table if not exists raw.mx_transactions (
    guid         varchar primary key,
    member_guid  varchar not null,
    account_guid varchar not null,
    user_guid    varchar not null,
    status       varchar,               -- PENDING or POSTED
    type         varchar,               -- CREDIT or DEBIT: MX sends `amount` unsigned
    amount       decimal(18, 4),        -- unsigned, as MX sends it; staging applies debits-negative
    date         date,                  -- MX's calendar date: never shifted through a time zone
    updated_at   timestamptz,
    removed_at   timestamptz,           -- set when a pending transaction vanished upstream; null while live
    payload      json not null,
    run_id       varchar not null,
    fetched_at   timestamptz not null
);
