-- Where each notification stands (lifecycle.notifier.NotificationState): pending | delivered (the product
-- backend answered 2xx) | logged (no backend configured: only written to the log) | dead (every attempt
-- failed; member_health shows it) | cancelled (its episode closed first: the member recovered or was retired).
alter table ops.reconnect_notifications add column if not exists state varchar default 'pending';
alter table ops.reconnect_notifications add column if not exists state_changed_at timestamptz;
alter table ops.reconnect_notifications add column if not exists state_reason varchar;

-- Rows from before: every row with a delivered_at becomes 'delivered', including rows the old LogNotifier only
-- logged (it set delivered_at too). Which notifier handled an old row was never stored, so this cannot be known
-- from old data: some of these 'delivered' rows reached nobody. A row that used up the default 5 attempts is dead.
update ops.reconnect_notifications
set state = case
        when delivered_at is not null then 'delivered'
        when attempts >= 5 then 'dead'
        else 'pending'
    end,
    state_changed_at = case when delivered_at is not null then delivered_at end,
    state_reason = case when delivered_at is null and attempts >= 5 then last_error end;
