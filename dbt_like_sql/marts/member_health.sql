-- materialized: table
-- description: One row per member: its connection status and route, freshness against its SLA, refresh attempts, its last sync, and any open notification. Where to look first when data is missing.
-- column user_id: Our end user's id (the product's user id), beside MX's user_guid: join the product's data on it.
-- column retired_at: When MX no longer had the member (deleted by the user or the product, replaced by MX, or its user deleted) and it was retired: terminal for good, out of the other marts; reason says why.
-- column route: What happens next (ready, needs_mfa, needs_reconnect, degraded, in_progress, institution_side, terminal).
-- column last_success: MX's last successful aggregation of the member, UTC.
-- column sla_hours: The freshness SLA that applies (member, then user, then tier override, then the default).
-- column is_exhausted: Stale, with every refresh attempt of the window used since it was last fresh: it waits for the window to pass.
-- column is_stale: Older than its SLA when the mart was built (built_at).
-- column open_notification_at: When the user was told about the current episode of trouble; null when none is open.
-- column last_sync_outcome: The member's last sync: synced, skipped (its route says why, or unchanged since the last sync because MX has not aggregated it), retired, or failed (a read failed after the transport's retries; read again automatically after a back-off); null before its first.
-- column last_sync_reason: Why the last sync was skipped or failed: which read (status, accounts, transactions) and MX's answer.
-- column last_sync_at: When the last sync was attempted, UTC.
-- column notification_state: The member's latest notification: pending, delivered (the backend answered 2xx), logged (no backend: nobody was told), dead (every attempt failed: act on it), cancelled (its episode closed first: recovered, connection ended at MX, or retired); held notifications stay pending; null when it never had one.
with attempts as (
    select
        a.member_guid,
        count(*) filter (
            where a.requested_at > now() - to_seconds(cast(__attempt_window_hours__ * 3600 as bigint))
              and a.requested_at > coalesce(s.successfully_aggregated_at, '-infinity')
              and a.outcome not in (__not_aggregations__)
        ) as attempts_since_success,
        max(a.requested_at) as last_attempt_at,
        max_by(a.outcome, a.requested_at) as last_attempt_outcome
    from ops.refresh_attempts as a
    join raw.mx_member_status as s on s.guid = a.member_guid
    group by a.member_guid
),
episodes as (
    select member_guid, max(notified_at) filter (where closed_at is null) as open_notification_at
    from ops.notification_episodes
    group by member_guid
),
latest_notifications as (
    select member_guid, max_by(state, created_at) as notification_state
    from ops.reconnect_notifications
    group by member_guid
),
tiers as (
    select mx_user_guid, any_value(tier) as tier from ops.end_users group by mx_user_guid
),
known as (  -- every member listed or read, so one whose status could never be read shows too
    select guid, any_value(user_guid) as user_guid
    from (select guid, user_guid from raw.mx_members union all select guid, user_guid from raw.mx_member_status)
    group by guid
)
select
    k.guid as member_guid,
    k.user_guid,
    users.user_id,
    m.institution_code,
    s.connection_status,
    r.route,
    r.reason,
    coalesce(s.removed_at, m.removed_at) as retired_at,
    s.is_being_aggregated,
    s.successfully_aggregated_at as last_success,
    coalesce(by_member.sla_hours, by_user.sla_hours, by_tier.sla_hours, __default_sla_hours__) as sla_hours,
    round(extract(epoch from now() - s.successfully_aggregated_at) / 3600, 1) as hours_since_success,
    coalesce(s.successfully_aggregated_at < now() - to_seconds(cast(
        coalesce(by_member.sla_hours, by_user.sla_hours, by_tier.sla_hours, __default_sla_hours__) * 3600 as bigint)),
        true) as is_stale,
    coalesce(a.attempts_since_success, 0) as refresh_attempts_since_success,
    a.last_attempt_at,
    a.last_attempt_outcome,
    coalesce(a.attempts_since_success, 0) >= __max_attempts__ and r.route in (__aggregated_routes__)
        and coalesce(s.successfully_aggregated_at < now() - to_seconds(cast(coalesce(by_member.sla_hours,
            by_user.sla_hours, by_tier.sla_hours, __default_sla_hours__) * 3600 as bigint)), true) as is_exhausted,
    sync.last_outcome as last_sync_outcome,
    sync.last_reason as last_sync_reason,
    sync.last_attempt_at as last_sync_at,
    e.open_notification_at,
    ln.notification_state,
    now() as built_at
from known as k
left join raw.mx_members as m on m.guid = k.guid
left join raw.mx_member_status as s on s.guid = k.guid
left join ops.member_sync as sync on sync.member_guid = k.guid
left join staging.stg_users as users on users.user_guid = k.user_guid
left join ops.member_routes as r on r.member_guid = k.guid
left join attempts as a on a.member_guid = k.guid
left join episodes as e on e.member_guid = k.guid
left join latest_notifications as ln on ln.member_guid = k.guid
left join tiers as t on t.mx_user_guid = k.user_guid
left join ops.freshness_sla as by_member on by_member.scope = 'member' and by_member.key = k.guid
left join ops.freshness_sla as by_user on by_user.scope = 'user' and by_user.key = k.user_guid
left join ops.freshness_sla as by_tier on by_tier.scope = 'tier' and by_tier.key = t.tier
