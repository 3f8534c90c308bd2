-- ops: the connection lifecycle. Events from the connect service's spool, each member's current route,
-- its episodes of trouble, and the outbox of reconnect notifications.

create table if not exists ops.member_events (
    event_key         varchar primary key,  -- the spool's idempotency key: a redelivery is stored once
    seq               bigint not null,      -- arrival order; the webhook sensor's cursor
    kind              varchar not null,     -- mx_webhook | connect_callback | user_registered
    source            varchar not null,     -- CONNECTION_STATUS | AGGREGATION | ... | redirect | relay | api
    user_id           varchar,              -- our end user's id, when the event names it
    user_guid         varchar not null,
    member_guid       varchar,              -- null for user_registered
    connection_status varchar,              -- what the event claimed: never acted on without a fresh read
    occurred_at       timestamptz,
    received_at       timestamptz not null
);

create table if not exists ops.member_routes (
    member_guid         varchar primary key,
    user_guid           varchar not null,
    connection_status   varchar,
    is_being_aggregated boolean,
    route               varchar not null,   -- lifecycle.routes.Route: ready | needs_mfa | needs_reconnect | ...
    reason              varchar not null,   -- plain words, as the user would be told
    connect_mode        varchar,            -- aggregation | update | reconnect when the user is asked to act
    routed_at           timestamptz not null,
    run_id              varchar not null
);

create table if not exists ops.notification_episodes (
    member_guid varchar not null,
    number      integer not null,           -- 1, 2, ... per member
    opened_at   timestamptz not null,
    route       varchar not null,
    notified_at timestamptz,
    closed_at   timestamptz,                -- the first fresh read that showed the member healthy again
    primary key (member_guid, number)
);

create table if not exists ops.reconnect_notifications (
    notification_id   varchar primary key,  -- <member_guid>:<episode number>: one per member per episode
    user_id           varchar,
    user_guid         varchar not null,
    member_guid       varchar not null,
    institution       varchar,
    connection_status varchar,
    route             varchar not null,
    reason            varchar not null,
    connect_mode      varchar not null,
    reconnect_url     varchar not null,     -- a signed link that mints a widget URL when clicked
    created_at        timestamptz not null,
    delivered_at      timestamptz,          -- null until the notifier accepted it
    attempts          integer not null default 0,
    last_error        varchar
);

create sequence if not exists ops.member_event_seq start 1;
