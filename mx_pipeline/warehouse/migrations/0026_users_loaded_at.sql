-- loaded_at: when each user row's version reached the warehouse, what staging.stg_users' mapped_at reads (as the
-- transaction models read raw.mx_transactions by it since 0025). By fetched_at, a user read loaded after a model
-- run that began after it (a run killed after its reads) was older than the next run's __since__, and
-- fct_transactions kept the user's old id until a full build. A merge writes it (the default: its transaction's
-- time), and so does a reinstatement; stg_users is built in full every run, so nothing needs rebuilding.
alter table raw.mx_users add column if not exists loaded_at timestamptz default current_timestamp;
update raw.mx_users set loaded_at = fetched_at;
