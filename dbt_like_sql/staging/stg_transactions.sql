-- materialized: incremental
-- unique_key: transaction_guid
-- description: One row per MX transaction as MX last sent it (removed ones included), typed, signed, normalized; MX's own fields kept for audit.
-- column amount: Signed amount, the one convention of the warehouse: debits (money out) negative, credits positive. Derived from MX's unsigned amount and type.
-- column mx_amount: MX's amount as sent: unsigned; read with type.
-- column transaction_date: MX's date: the calendar day in the account's own time zone (never shifted through UTC).
-- column transacted_at: When the transaction happened, UTC.
-- column posted_at: When it posted, UTC; null while pending.
-- column created_at: When MX created the record, UTC: a pending's posted twin is created when it settles, never before it.
-- column description_normalized: Lower case, card and reference numbers and store numbers stripped, whitespace collapsed; from MX's description, else its original_description.
-- column merchant_name: Who the money went to or came from, readable: MX's description (its cleansed, human-readable name, e.g. "Bean There Coffee"), else MX's original_description as the bank sent it.
-- column first_fetched_at: When this guid first arrived (fetched_at moves with every new version of the row).
-- column loaded_at: When this version reached the warehouse (a read may be loaded a while after it was fetched): what the incremental models read by.
-- column fingerprint: md5 of account, date, signed amount and normalized description: the same purchase re-issued under a new guid has the same one.
-- column mx_category: MX's own category (MX's taxonomy; audit only, never shown as ours).
-- column is_live: False once MX stopped listing it (removed_at set).
with parsed as (
    -- Each payload is parsed once, into the fields staging reads (a `->>` per field would parse it per field).
    select
        t.*,
        json_transform(t.payload, '{
            "currency_code": "VARCHAR", "transacted_at": "VARCHAR", "posted_at": "VARCHAR", "created_at": "VARCHAR",
            "description": "VARCHAR", "original_description": "VARCHAR", "merchant_guid": "VARCHAR",
            "merchant_category_code": "VARCHAR", "category": "VARCHAR", "top_level_category": "VARCHAR",
            "category_guid": "VARCHAR"
        }') as p
    from raw.mx_transactions as t
    where t.loaded_at > __since__
),
typed as (
    select
        t.guid as transaction_guid,
        t.member_guid,
        t.account_guid,
        t.user_guid,
        t.status,
        t.type,
        t.amount as mx_amount,
        case when t.type = 'DEBIT' then -t.amount else t.amount end as amount,
        t.p.currency_code,
        t.date as transaction_date,
        try_cast(t.p.transacted_at as timestamptz) as transacted_at,
        try_cast(t.p.posted_at as timestamptz) as posted_at,
        try_cast(t.p.created_at as timestamptz) as created_at,
        t.p.description as mx_description,
        t.p.original_description as mx_original_description,
        t.p.merchant_guid,
        try_cast(t.p.merchant_category_code as integer) as merchant_category_code,
        t.p.category as mx_category,
        t.p.top_level_category as mx_top_level_category,
        t.p.category_guid as mx_category_guid,
        t.updated_at,
        t.removed_at,
        t.removed_at is null as is_live,
        t.fetched_at,
        t.first_fetched_at,
        t.loaded_at,
        t.run_id
    from parsed as t
),
normalized as (
    select
        *,
        trim(regexp_replace(regexp_replace(regexp_replace(
            lower(coalesce(nullif(trim(mx_description), ''), mx_original_description, '')),
            '(x{2,}|\*{2,}|#)\s*\d+|\b\d{4,}\b|\bref(erence)?\s*[:#]\s*\w+|\bref\s+\d+', ' ', 'g'),  -- card, store, ref numbers
            '[^a-z0-9&'' ]+', ' ', 'g'),
            '\s+', ' ', 'g')) as description_normalized
    from typed
)
select
    *,
    coalesce(nullif(trim(mx_description), ''), nullif(trim(mx_original_description), '')) as merchant_name,
    md5(concat_ws('|', account_guid, transaction_date, amount, description_normalized)) as fingerprint
from normalized
