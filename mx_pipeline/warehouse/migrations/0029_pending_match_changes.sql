-- fct_transactions finds the rows a pending match reaches from the matches stg_pending_matches replaced (their keys
-- in ops.model_changes, the rows as they were in changes.staging__stg_pending_matches), no longer from every row of
-- the account within 6 days of a change. The replaced matches are kept from now on: a reader that has not read an
-- incremental run of stg_pending_matches from before now builds in full once (that run's rows were not kept), and a
-- run of the marts alone finds the table it reads. A full build of stg_pending_matches makes the table anew with the
-- same columns.
create table if not exists changes.staging__stg_pending_matches (
    pending_guid varchar,
    posted_guid  varchar,
    changed_at   timestamptz
);
insert into ops.model_changes_kept values ('staging.stg_pending_matches', current_timestamp)
on conflict (model) do update set kept_since = greatest(kept_since, excluded.kept_since);
