-- materialized: incremental
-- unique_key: pending_guid
-- description: One row per (pending, posted) pair that may be one transaction: MX usually deletes the pending row and issues the posted one under a new guid with no link, so twins are matched by account, amount, dates and description, the posted one not created by MX before the pending (an hour's slack for one aggregation creating both). is_match only when each side has exactly one candidate; ambiguous pairs stay unmerged and are counted.
-- column similarity: Jaro-Winkler similarity of the two normalized descriptions (0..1); candidates need 0.8.
-- column is_match: The pending row is hidden from the marts because its posted twin arrived.
with changed as (
    -- Rows MX sent anew since the last run (new, updated, or stopped being listed); none needed in a full build.
    select transaction_guid, account_guid, transaction_date
    from staging.stg_transactions
    where loaded_at > __since__ and not __is_full__
    union all
    -- And where they were before: a row MX moved to another day or account leaves its old twins' matches there.
    select transaction_guid, account_guid, transaction_date
    from changes.staging__stg_transactions
    where changed_at > __since__ and not __is_full__
),
affected as (
    -- A pending's candidates are posted rows 1 day before to 5 days after it, and whether it matches also counts
    -- the other pendings of those posted rows: a changed row reaches the pendings of its account 6 days around it.
    select transaction_guid as pending_guid from changed
    union
    select s.transaction_guid
    from staging.stg_transactions as s
    join changed as c
        on s.account_guid = c.account_guid
        and s.transaction_date between c.transaction_date - 6 and c.transaction_date + 6
    where s.status = 'PENDING'
),
reach as (
    -- The pendings that share a posted candidate with an affected one (6 days further): counted, never written.
    select s.transaction_guid
    from staging.stg_transactions as s
    join changed as c
        on s.account_guid = c.account_guid
        and s.transaction_date between c.transaction_date - 12 and c.transaction_date + 12
    where s.status = 'PENDING'
),
pending as (
    select * from staging.stg_transactions
    where status = 'PENDING'
      and (__is_full__ or transaction_guid in (select transaction_guid from reach))
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
        and q.transaction_date between p.transaction_date - 1 and p.transaction_date + 5
        -- MX creates a posted twin when its pending settles: a posted row MX had before the pending is another
        -- purchase (yesterday's identical fare), never its twin. One aggregation that finds both at the bank (a
        -- member's first) creates them together, in either order: an hour's slack. Without created_at, the rest
        -- decides.
        and coalesce(q.created_at > p.created_at - interval 1 hour, true)
    where jaro_winkler_similarity(p.description_normalized, q.description_normalized) >= 0.8
),
counted as (
    select
        *,
        count(*) over (partition by pending_guid) as pending_candidates,
        count(*) over (partition by posted_guid) as posted_candidates,
        count(*) over (partition by pending_guid) = 1 and count(*) over (partition by posted_guid) = 1 as is_match
    from candidates
)
select *
from counted
where __is_full__ or pending_guid in (select pending_guid from affected)
