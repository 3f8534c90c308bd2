-- The four layers (DESIGN.md section 5) and the ledger of applied migrations.
create schema if not exists raw;
create schema if not exists staging;
create schema if not exists marts;
create schema if not exists ops;

create table if not exists ops.schema_migrations (
    version    varchar primary key,  -- the migration file name
    applied_at timestamptz not null default current_timestamp
);
