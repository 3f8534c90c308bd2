-- Which reference data each model was last built with. A model that reads data/reference (directly or through
-- other models) is rebuilt in full whenever its recorded hash differs from the CSVs loaded now, so an edited
-- category map reaches every dependant even if the run that first loaded it built only some models or failed.
create table if not exists ops.model_reference_hashes (
    model          varchar primary key,   -- e.g. marts.fct_transactions
    reference_hash varchar not null,      -- sha256 over the content hashes of the reference tables it depends on
    built_at       timestamptz not null,  -- written in the same transaction as the build
    run_id         varchar not null
);

comment on table ops.model_reference_hashes is 'The reference data each model that depends on data/reference was last built with; a model whose hash differs from the loaded CSVs is rebuilt in full.';
comment on table ops.reference_loads is 'The version of each reference CSV loaded into the reference schema now (rewritten on every load). Which version each model was built with is ops.model_reference_hashes.';
