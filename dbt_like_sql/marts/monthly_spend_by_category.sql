-- materialized: table
-- description: One row per user, month, currency and category of ours: money spent (refunds netted), from fct_transactions.
-- column user_id: Our end user's id (the product's user id), beside MX's user_guid: join the product's data on it.
-- column spend: Money out minus refunds in expense categories, as a positive number, in currency_code.
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
group by all
