-- materialized: incremental
-- unique_key: user_guid, month, category_id
-- description: One row per user, month, currency and category of ours: money spent (refunds netted), from fct_transactions.
-- column user_id: Our end user's id (the product's user id), beside MX's user_guid: join the product's data on it.
-- column spend: Money out minus refunds in expense categories, as a positive number, in currency_code.
with affected as (
    -- Each user, month and category of ours a transaction fct_transactions replaced since the last run is in now, or
    -- was in before (changes.marts__fct_transactions keeps the rows as they were): those are summed again.
    select user_guid, cast(date_trunc('month', transaction_date) as date) as month, category_id
    from marts.fct_transactions
    where transaction_guid in (
        select key from ops.model_changes where model = 'marts.fct_transactions' and changed_at > __since__)
    union
    select user_guid, cast(date_trunc('month', transaction_date) as date), category_id
    from changes.marts__fct_transactions
    where changed_at > __since__
)
select
    cast(date_trunc('month', transaction_date) as date) as month,
    user_guid,
    user_id,
    currency_code,
    parent_category_id,
    parent_category_name,
    category_id,
    category_name,
    -sum(amount) as spend,
    count(*) as transactions
from marts.fct_transactions
where category_kind = 'expense'
  and (__is_full__
       or (user_guid, cast(date_trunc('month', transaction_date) as date), category_id) in (select * from affected))
group by all
