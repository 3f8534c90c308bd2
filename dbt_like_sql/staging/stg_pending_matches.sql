-- materialized: table
-- description: One row per (pending, posted) pair that may be one transaction: MX usually deletes the pending row and issues the posted one under a new guid with no link, so twins are matched by account, amount, dates and description. is_match only when each side has exactly one candidate; ambiguous pairs stay unmerged and are counted.
-- column similarity: Jaro-Winkler similarity of the two normalized descriptions (0..1); candidates need 0.8.
-- column is_match: The pending row is hidden from the marts because its posted twin arrived.
with pending as (
    select * from staging.stg_transactions where status = 'PENDING'
),
posted as (
    select * from staging.stg_transactions where status = 'POSTED' and is_live
),
candidates as (
    select
        p.transaction_guid as pending_guid,
        q.transaction_guid as posted_guid,
        p.account_guid,
        p.amount,
        p.transaction_date as pending_date,
        q.transaction_date as posted_date,
        jaro_winkler_similarity(p.description_normalized, q.description_normalized) as similarity
    from pending as p
    join posted as q
        on q.account_guid = p.account_guid
        and q.amount = p.amount
        and q.transaction_date between p.transaction_date - interval 1 day and p.transaction_date + interval 5 day
    where jaro_winkler_similarity(p.description_normalized, q.description_normalized) >= 0.8
)
select
    *,
    count(*) over (partition by pending_guid) as pending_candidates,
    count(*) over (partition by posted_guid) as posted_candidates,
    count(*) over (partition by pending_guid) = 1 and count(*) over (partition by posted_guid) = 1 as is_match
from candidates
