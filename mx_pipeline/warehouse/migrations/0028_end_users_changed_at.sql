-- changed_at: when each end user's row last changed in the warehouse, what staging.stg_users' mapped_at reads (as it
-- reads raw.mx_users by loaded_at since 0026). By registered_at, a registration the connect service received before
-- a model run began but that was stored after it was older than the next run's __since__, and fct_transactions
-- kept the user's old id (or none) until a full build. Every write of the mapping sets it.
-- Now for every row, not when it was registered: a mapping an increment missed before is recomputed by the next run
-- of fct_transactions (every mapped user's rows, once), and monthly spend follows.
alter table ops.end_users add column if not exists changed_at timestamptz default current_timestamp;
update ops.end_users set changed_at = current_timestamp;
