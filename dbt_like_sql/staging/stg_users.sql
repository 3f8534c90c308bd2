-- materialized: table
-- description: One row per MX user guid we know: our end user's id for it (the product's user id analysts join on) and whether the user was retired.
-- column user_id: Our end user's id: MX's user `id` as registered, else the connect service's registration of the guid.
-- column mapped_at: When this mapping last changed in the warehouse (a user row loaded, a registration stored): incremental marts recompute the user's rows after it.
-- column retired_at: When the user was deleted at MX (or offboarded) and retired here; null while live.
with registered as (
    select mx_user_guid as user_guid,
           arg_max(id, coalesce(registered_at, first_seen_at)) as user_id,
           max(changed_at) as changed_at,
           max(retired_at) as retired_at
    from ops.end_users
    where mx_user_guid is not null
    group by mx_user_guid
),
left_by as (
    -- Guids an end user's id left: their rows lose it then, though no end user maps to them any longer.
    select mx_user_guid as user_guid, max(changed_at) as changed_at from ops.end_users_left group by mx_user_guid
)
select
    coalesce(u.guid, r.user_guid, l.user_guid) as user_guid,
    coalesce(u.id, r.user_id) as user_id,
    greatest(u.loaded_at, r.changed_at, l.changed_at, u.removed_at) as mapped_at,
    coalesce(u.removed_at, r.retired_at) as retired_at
from raw.mx_users as u
full join registered as r on r.user_guid = u.guid
full join left_by as l on l.user_guid = coalesce(u.guid, r.user_guid)
