-- stg_pending_matches recomputes the pendings around where a changed row was as well as where it is: a posted row MX
-- moved to another day or account no longer stays matched to the pending it left (an increment hid that pending
-- still, and kept it out of monthly spend). stg_transactions keeps the rows it replaces (key, account, date) from
-- now on.
create table if not exists changes.staging__stg_transactions (
    transaction_guid varchar,
    account_guid     varchar,
    transaction_date date,
    changed_at       timestamptz
);
insert into ops.model_changes_kept values ('staging.stg_transactions', current_timestamp)
on conflict (model) do update set kept_since = greatest(kept_since, excluded.kept_since);
-- The matches an increment left behind before are only redone by a full build: forgetting stg_pending_matches' runs
-- makes its next run one, and its readers (fct_transactions, then monthly spend and the analysts' file) follow.
delete from ops.model_runs where model = 'staging.stg_pending_matches';
