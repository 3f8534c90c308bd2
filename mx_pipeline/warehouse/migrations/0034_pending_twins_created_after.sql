-- stg_pending_matches no longer takes a posted row MX created before a pending for its twin (yesterday's identical
-- fare hid today's pending one). Staging reads MX's created_at from now on: forgetting its runs makes its next run a
-- full build, which reads it from every payload. The matches made before are only redone by a full build of
-- stg_pending_matches, and its readers (fct_transactions, then monthly spend and the analysts' file) follow.
delete from ops.model_runs where model in ('staging.stg_transactions', 'staging.stg_pending_matches');
