-- The SQL models' inputs that the product writes, and the runner's ledger.

create schema if not exists reference;  -- data/reference/*.csv, loaded before every model run

create table if not exists ops.category_overrides (
    transaction_guid varchar primary key,  -- an MX transaction guid; survives every re-sync and re-mapping
    category_id      varchar not null,     -- one of ours (reference.internal_categories)
    set_by           varchar,              -- who or what set it (a user id, "support", ...)
    set_at           timestamptz not null default current_timestamp
);

create table if not exists ops.merchant_category_overrides (
    merchant_guid varchar primary key,     -- MX's merchant guid: every transaction of it gets this category
    category_id   varchar not null,
    set_by        varchar,
    set_at        timestamptz not null default current_timestamp
);

create table if not exists ops.model_runs (
    model       varchar not null,          -- e.g. staging.stg_transactions
    started_at  timestamptz not null,      -- an incremental model's next run reads what arrived after this
    finished_at timestamptz not null,
    rows        bigint not null,
    mode        varchar not null,          -- full | incremental
    run_id      varchar not null
);
