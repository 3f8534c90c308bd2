-- Which version of each reference CSV the models were last built with: an edited mapping re-maps everything.
create table if not exists ops.reference_loads (
    table_name   varchar primary key,     -- e.g. reference.mx_category_map
    content_hash varchar not null,        -- sha256 of the CSV file
    loaded_at    timestamptz not null
);
