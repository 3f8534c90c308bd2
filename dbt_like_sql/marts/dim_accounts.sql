-- materialized: table
-- description: One row per account of a connected member, as MX last reported it. Accounts MX no longer has (vanished from the list, or their member or user deleted at MX) are left out; raw.mx_accounts keeps them.
-- column user_id: Our end user's id (the product's user id), beside MX's user_guid: join the product's data on it.
-- column balance: The balance as MX reports it for the account type (a credit card's balance is what is owed).
select
    a.guid as account_guid,
    a.member_guid,
    a.user_guid,
    users.user_id,
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
left join staging.stg_users as users on users.user_guid = a.user_guid
where a.removed_at is null
