-- Notifications are delivered outside the writer pool, so two runs may deliver at the same time. A run leases
-- its batch before sending: leased_by is the run that is sending it, leased_until when another run may take it
-- over (the first one died mid-send). Both are cleared once the run recorded what became of it, or let it go.
alter table ops.reconnect_notifications add column if not exists leased_by varchar;
alter table ops.reconnect_notifications add column if not exists leased_until timestamptz;
