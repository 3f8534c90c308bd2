-- materialized: table
-- description: One row per account of a connected member, as MX last reported it.
-- column balance: The balance as MX reports it for the account type (a credit card's balance is what is owed).
select
    a.guid as account_guid,
    a.member_guid,
    a.user_guid,
    m.institution_code,
    a.payload ->> 'name' as account_name,
    a.type as account_type,
    a.payload ->> 'subtype' as account_subtype,
    a.balance,
    try_cast(a.payload ->> 'available_balance' as decimal(18, 4)) as available_balance,
    a.currency_code,
    coalesce(try_cast(a.payload ->> 'is_closed' as boolean), false) as is_closed,
    a.updated_at
from raw.mx_accounts as a
left join raw.mx_members as m on m.guid = a.member_guid
