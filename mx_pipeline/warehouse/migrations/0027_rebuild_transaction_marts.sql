-- A transaction read before a model run and loaded after it was never read by an increment (0025 closed that race,
-- 0026 the same for a user's id). 0025 rebuilt staging, but fct_transactions and the pending matches read staging by
-- loaded_at since their last run, so the rows they had missed stayed missing. Forgetting staging's runs makes its
-- next run a full build, which every incremental model reading it follows, in full (models.py): built from the
-- whole of staging, they count what it holds. Nothing is dropped: a run of some models alone, and the analysts'
-- file, go on meanwhile as before.
delete from ops.model_runs where model = 'staging.stg_transactions';
