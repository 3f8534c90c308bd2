-- What each incremental model run replaced, so what reads a model (an incremental model downstream, the analysts'
-- file) applies only those keys instead of reading it all. A full build logs nothing: its readers rebuild in full.
create table if not exists ops.model_changes (
    model      varchar not null,      -- e.g. marts.fct_transactions
    changed_at timestamptz not null,  -- the start of the run that replaced them (ops.model_runs.started_at)
    key        varchar not null       -- the unique_key's value as text (JSON of its columns when it names several)
);

create table if not exists ops.model_changes_kept (
    model      varchar primary key,
    kept_since timestamptz not null   -- older changes were pruned: a reader last in step before this rebuilds in full
);

-- changes.<schema>__<table>: the rows an incremental run of that model replaced, as they were, with changed_at;
-- created by the model's full build.
create schema if not exists changes;

comment on table ops.model_changes is 'The keys each incremental model run deleted or recomputed (their rows as they were: changes.<schema>__<table>): an incremental model downstream and the analysts'' file apply only these. Pruned once every reader has caught up (ops.model_changes_kept).';
comment on table ops.model_changes_kept is 'Since when ops.model_changes is complete for a model; a reader last in step before it rebuilds in full.';
