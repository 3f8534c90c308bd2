-- A notification names its reconnect link by id (connect/link_store.py keeps what the link may open); the URL is
-- rebuilt from the id and the link secret when the notification is sent, so neither the URL nor its token is
-- stored here. Rows from before keep a null link_id: their links were never in the link store and are refused as
-- no longer valid. A pending old row gets its episode's link id when the status gate refreshes it, before it is sent.
alter table ops.reconnect_notifications add column if not exists link_id varchar;
alter table ops.reconnect_notifications drop column if exists reconnect_url;
