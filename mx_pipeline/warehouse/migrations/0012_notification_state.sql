-- Where each notification stands (lifecycle.notifier.NotificationState): pending | delivered (the product
-- backend answered 2xx) | logged (no backend configured: only written to the log) | dead (every attempt
-- failed; member_health shows it) | cancelled (the member recovered, was retired or stopped asking first).
alter table ops.reconnect_notifications add column if not exists state varchar default 'pending';
alter table ops.reconnect_notifications add column if not exists state_changed_at timestamptz;
alter table ops.reconnect_notifications add column if not exists state_reason varchar;

-- Rows from before: the notifier behind an old delivered_at is unknown, so it counts as delivered; a row that
-- used up the default 5 attempts is dead.
update ops.reconnect_notifications
set state = case
        when delivered_at is not null then 'delivered'
        when attempts >= 5 then 'dead'
        else 'pending'
    end,
    state_changed_at = case when delivered_at is not null then delivered_at end,
    state_reason = case when delivered_at is null and attempts >= 5 then last_error end;
