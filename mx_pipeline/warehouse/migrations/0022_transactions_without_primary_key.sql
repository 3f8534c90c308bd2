-- raw.mx_transactions loses its primary key. With it, INSERT ... ON CONFLICT brought the VARCHAR key's ART index
-- into memory for every batch, and every batch opens the file: at 600k rows one 5,000-row batch cost about 1 s
-- and +250 MiB, growing with the table. The upsert (warehouse/upsert.py)
-- finds a batch's rows by a semi-join on guid instead (milliseconds); one guid per row still holds, by the upsert
-- and the one-writer rule, and the guids_are_unique check says so after every load. DuckDB cannot drop a
-- constraint, so the table is copied into one without it (same columns, types, defaults and NOT NULLs).
create table raw.mx_transactions_unindexed (
    guid             varchar not null,
    member_guid      varchar not null,
    account_guid     varchar not null,
    user_guid        varchar not null,
    status           varchar,
    type             varchar,
    amount           decimal(18, 4),
    date             date,
    updated_at       timestamptz,
    removed_at       timestamptz,
    payload          json not null,
    run_id           varchar not null,
    fetched_at       timestamptz not null,
    first_fetched_at timestamptz default current_timestamp
);
insert into raw.mx_transactions_unindexed by name select * from raw.mx_transactions;
drop table raw.mx_transactions;
alter table raw.mx_transactions_unindexed rename to mx_transactions;
