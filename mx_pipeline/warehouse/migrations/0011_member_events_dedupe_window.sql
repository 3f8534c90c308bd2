-- Events dedupe within a bounded window (connect.spool.DEDUPE_WINDOW, longer than MX's day of retries), not
-- forever: a member CHALLENGED again weeks later sends the same bytes, and that is a new event. So event_key
-- is no longer a primary key. DuckDB cannot drop one in place: recreate the table, keep every row (and
-- ops.member_event_seq, which is its own object, untouched).
create table ops.member_events_windowed (
    event_key         varchar not null,     -- the spool's idempotency key: stored once per dedupe window
    seq               bigint not null,      -- arrival order; the webhook sensor's cursor
    kind              varchar not null,     -- mx_webhook | connect_callback | user_registered
    source            varchar not null,     -- CONNECTION_STATUS | AGGREGATION | ... | redirect | relay | api
    user_id           varchar,              -- our end user's id, when the event names it
    user_guid         varchar not null,
    member_guid       varchar,              -- null for user_registered
    connection_status varchar,              -- what the event claimed: never acted on without a fresh read
    occurred_at       timestamptz,
    received_at       timestamptz not null  -- when the connect service spooled it: the dedupe window's clock
);
insert into ops.member_events_windowed
select event_key, seq, kind, source, user_id, user_guid, member_guid, connection_status, occurred_at, received_at
from ops.member_events;
drop table ops.member_events;
alter table ops.member_events_windowed rename to member_events;
