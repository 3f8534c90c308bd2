-- When each transaction guid first arrived. fetched_at moves with every new version of a row; this never
-- does, so "two purchases that arrived in the same fetch" stays true after MX edits one of them.
alter table raw.mx_transactions add column if not exists first_fetched_at timestamptz default current_timestamp;
update raw.mx_transactions set first_fetched_at = fetched_at where first_fetched_at is null or first_fetched_at > fetched_at;
