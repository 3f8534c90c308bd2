-- loaded_at: when each row's version reached the warehouse, what the incremental models read raw.mx_transactions
-- by. fetched_at is when MX sent that version (a read's time), and a read may be loaded after a model run that
-- began after it (a run killed after its reads, a load queued behind the models): by fetched_at its rows were
-- older than the next run's __since__, and no increment ever read them. A merge, a marking and a retirement each
-- write loaded_at (the default: their transaction's time); loads and model runs never overlap (one writer pool).
alter table raw.mx_transactions add column if not exists loaded_at timestamptz default current_timestamp;
update raw.mx_transactions set loaded_at = fetched_at;
-- staging.stg_transactions gains the column: built in full by the next model run (an increment cannot add it).
drop table if exists staging.stg_transactions;
