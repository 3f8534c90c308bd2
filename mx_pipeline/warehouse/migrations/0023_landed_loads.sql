-- One row per landed member directory the loader merged (warehouse/landed.py), written in the same transaction
-- as its rows: a directory found again (a loader killed after its commit, before it deleted the files) is
-- deleted, not loaded twice. Rows older than the landing area's oldest possible leftover are pruned.
create table if not exists ops.landed_loads (
    table_name  varchar not null,      -- the landing area's table directory, e.g. transactions
    run_id      varchar not null,      -- the run that read it from MX
    member_guid varchar not null,
    loaded_at   timestamptz not null,
    loaded_by   varchar not null,      -- the run that merged it
    rows        bigint not null,       -- rows landed, refused ones included
    primary key (table_name, run_id, member_guid)
);

comment on table ops.landed_loads is 'Landed member directories merged into raw (one transaction each group): what a loader finds again is deleted, not loaded twice.';
