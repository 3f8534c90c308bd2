"""``status_gate``: member status -> one route per member -> fetch, notify, or wait.

The gate is an op with one optional output per route (``ready``, ``needs_mfa``, ``needs_reconnect``, ``degraded``,
``in_progress``, ``institution_side``, ``terminal``): a route with no members emits nothing, so in the run view
the steps behind it show as skipped. It routes the run's members only (its ``ScopeConfig``, the same as the ingest
steps'; empty: every member): a sync run for one user re-routes that user's members, never the other 100,000. It
writes ``ops.member_routes`` (which the fetching assets read), folds each read into the member's notification
episode, and decides the episode's notification in the same transaction, so a notification is never lost between
deciding it and storing it; then it leases this run's batch of the outbox: the pending notifications of members
this read asks to act now (``asking_now``), at most ``batch_size``, oldest first. The others wait, pending, for a
read that asks, or for the next run. ``reconnect_notifications`` delivers the batch (pending -> delivered | logged
| dead | cancelled; see ``warehouse/outbox.py``) outside the writer pool, with no warehouse connection open while
it POSTs, within a time budget: a slow or dead product backend never holds up ingestion. Both are assets, wrapped
as one graph.

Each episode's notification carries one reconnect link, issued in the link store the connect service shares
(``connect/link_store.py``; the outbox keeps its id, never its URL); every gate closes the links of the
episodes that closed (the member recovered, its connection ended, or it was retired), wherever they closed.
"""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from mx_pipeline.defs.ingest.config import ScopeConfig
from mx_pipeline.defs.ingest.group import MEMBER_ROUTES
from mx_pipeline.defs.resources import ConnectLinksResource, NotifierResource, WarehouseResource
from mx_pipeline.lifecycle.gate import gate
from mx_pipeline.lifecycle.notifier import Notification, NotificationState, deliver_within
from mx_pipeline.lifecycle.routes import DEGRADED_GRACE, Route
from mx_pipeline.warehouse import tables
from mx_pipeline.warehouse.lifecycle import closed_episodes, latest_episodes, member_states, save_episodes, save_routes
from mx_pipeline.warehouse.outbox import (
    bury_exhausted,
    cancel_closed,
    lease_due,
    record_delivery,
    release_lease,
    renew_lease,
    store_notifications,
)

GROUP = "lifecycle"
RECONNECT_NOTIFICATIONS = dg.AssetKey(["ops", "reconnect_notifications"])
ROUTE_OUTS = {r.value: dg.Out(list, is_required=False, description=f"members routed {r.value}") for r in Route}


@dataclass(frozen=True)
class NotificationBatch:
    """What ``status_gate`` leased for ``reconnect_notifications`` to send, and what it left in the outbox."""

    lease: str  # the run that leased it (a re-executed step keeps its parent's)
    notifications: list[Notification]  # oldest first
    members_asking: int
    held: list[str]  # their member asks nothing for now
    left: list[str]  # beyond the batch, or another run is sending them
    cancelled: dict[str, str]  # their episode closed first: never sent


class GateConfig(ScopeConfig):
    """The run's scope (a sync run routes only its members; both empty: every member) and the DEGRADED grace."""

    degraded_grace_hours: float = Field(
        default=DEGRADED_GRACE.total_seconds() / 3600,
        description="A DEGRADED member is backed off and re-read first (our own bursts can cause it, and it often "
        "clears); its user is asked to reconnect only if it is still DEGRADED this many hours after it first was.",
    )


@dg.op(
    ins={"after_status_read": dg.In(dg.Nothing)},
    out={
        "member_routes": dg.Out(dg.Nothing, description="ops.member_routes, rewritten for the run's members"),
        **ROUTE_OUTS,
        "to_notify": dg.Out(
            NotificationBatch, is_required=False, description="the notifications this run leased to send now"
        ),
    },
)
def status_gate(
    context: dg.OpExecutionContext,
    config: GateConfig,
    warehouse: WarehouseResource,
    connect_links: ConnectLinksResource,
    notifier: NotifierResource,
):
    """Route the run's members from their latest status reads; open, close and notify their episodes; lease the
    batch to send. The other members' routes and episodes are left as they are."""
    now = dt.datetime.now(dt.UTC)
    grace = dt.timedelta(hours=config.degraded_grace_hours)
    notifying = "to_notify" in context.selected_output_names  # an asset job prunes the outputs nothing consumes
    with warehouse.open().connect() as con:
        scope = config.scope
        result = gate(member_states(con, scope), latest_episodes(con, scope), now=now, degraded_grace=grace)
        link_ids = connect_links.issue(result.asking_now)  # before storing: a link never stored is never sent
        notifications = [
            Notification.for_episode(routed, episode, link_ids[routed.member.member_guid], now)
            for routed, episode in result.asking_now
        ]
        con.execute("begin transaction")
        save_routes(con, (m for members in result.routed.values() for m in members), run_id=context.run.run_id, now=now)
        save_episodes(con, result.episodes)
        created = store_notifications(con, notifications, now=now)
        if notifying:
            cancelled = cancel_closed(con, now=now)
            bury_exhausted(con, max_attempts=notifier.max_attempts, now=now)
        con.execute("commit")
        # Here and not where an episode closes (retirement closes them too): whatever closed them, since when.
        links_closed = connect_links.close(closed_episodes(con, connect_links.open_episodes()))
        if notifying:  # its own statement: two runs leasing at once never take the same notification
            asking = [routed.member.member_guid for routed, _ in result.asking_now]
            until, limit = now + notifier.lease(warehouse.wait_seconds), notifier.batch_size
            leased = lease_due(con, asking, lease=context.run.run_id, now=now, until=until, limit=limit)
    by_route = {route.value: len(members) for route, members in result.routed.items()}
    yield dg.Output(
        None,
        "member_routes",
        metadata={
            "dagster/row_count": sum(by_route.values()),
            "members_by_route": dg.MetadataValue.json(by_route),
            # One plain number per route, 0 too, so each route's plot has a point every run.
            **{f"route/{route.value}": len(result.routed.get(route, ())) for route in Route},
            "episodes_changed": len(result.episodes),
            "notifications_decided": created,
            "reconnect_links_closed": links_closed,
        },
    )
    for route, members in result.routed.items():
        if route.value in context.selected_output_names:  # an asset job prunes the outputs nothing consumes
            yield dg.Output([m.member.member_guid for m in members], route.value)
    if notifying:
        batch = NotificationBatch(
            context.run.run_id, leased.notifications, len(asking), leased.held, leased.left, cancelled
        )
        yield dg.Output(batch, "to_notify")


@dg.op(out=dg.Out(dg.Nothing))  # no pool: it mostly waits on the product backend
def reconnect_notifications(
    context: dg.OpExecutionContext,
    to_notify: NotificationBatch,
    warehouse: WarehouseResource,
    notifier: NotifierResource,
    connect_links: ConnectLinksResource,
):
    """Deliver the batch ``status_gate`` leased: new notifications, and earlier ones that failed.

    No warehouse connection is open while a notification is sent; each outcome is recorded (and its lease let
    go) before the next is sent. Once the time budget is spent, what is left is let go, still pending, for the
    next run. One that fails its last attempt is dead (``member_health`` shows it). Without a backend each is
    ``logged``. Cancelled (closed episode) and held (its member asks nothing for now) ones are never sent.
    """
    wh, batch = warehouse.open(), to_notify
    with wh.connect() as con:  # a re-executed step, or one that started late, sends only what it still holds
        ours = renew_lease(con, batch.lease, until=dt.datetime.now(dt.UTC) + notifier.lease(warehouse.wait_seconds))
    outcomes: dict[str, int] = {}
    failed, sent, told = {}, set(), []
    try:
        to_send = [n for n in batch.notifications if n.notification_id in ours]
        budget = notifier.time_budget_seconds
        sender = notifier.notifier(connect_links.url())
        for notification, outcome, error in deliver_within(to_send, sender, budget_seconds=budget):
            sent.add(notification.notification_id)
            if error:
                failed[notification.notification_id] = error
                context.log.warning(f"notification {notification.notification_id} not delivered: {error}")
            with wh.connect() as con:
                state = record_delivery(con, notification.notification_id, lease=batch.lease,
                                        at=dt.datetime.now(dt.UTC), outcome=outcome, error=error,
                                        max_attempts=notifier.max_attempts)  # fmt: skip
            if outcome:
                told.append(notification.link_id)
            name = state.value if state else "taken_over"  # our lease ran out; the run that took it over records
            outcomes[name] = outcomes.get(name, 0) + 1
            if state is NotificationState.DEAD:
                context.log.error(f"notification {notification.notification_id} is dead: no attempts left ({error})")
    finally:
        with wh.connect() as con:  # not sent (out of time, or this step failed): pending for the next run
            release_lease(con, batch.lease)
        connect_links.sent(told)  # an unopened link lives 7 days from now, however long it waited
    with wh.connect() as con:
        by_state = dict(con.execute("select state, count(*) from ops.reconnect_notifications group by 1").fetchall())
    unsent = [n.notification_id for n in batch.notifications if n.notification_id not in sent]
    return dg.Output(
        None,
        metadata={
            "dagster/row_count": sum(by_state.values()),
            "members_asking": batch.members_asking,
            "delivered": outcomes.get(NotificationState.DELIVERED.value, 0),
            "logged": outcomes.get(NotificationState.LOGGED.value, 0),
            "dead": outcomes.get(NotificationState.DEAD.value, 0),
            "cancelled": dg.MetadataValue.json(batch.cancelled),
            "held": dg.MetadataValue.json(batch.held),
            "failed": dg.MetadataValue.json(failed),
            "left_for_next_run": dg.MetadataValue.json(batch.left + unsent),
            "outbox_by_state": dg.MetadataValue.json(by_state),
            **{f"outbox/{state.value}": by_state.get(state.value, 0) for state in NotificationState},  # plotted
        },
    )


@dg.graph_multi_asset(
    name="member_lifecycle",
    group_name=GROUP,
    ins={"member_status": dg.AssetIn(key=tables.MEMBER_STATUS.key_path, dagster_type=dg.Nothing)},
    outs={
        "member_routes": dg.AssetOut(
            key=MEMBER_ROUTES,
            kinds={"python", "duckdb"},
            description="One row per member: its route (ready, needs_mfa, ...) from its latest status read.",
        ),
        "reconnect_notifications": dg.AssetOut(
            key=RECONNECT_NOTIFICATIONS,
            kinds={"python", "duckdb"},
            is_required=False,
            description="One row per member per episode of trouble: what the user was told and the link to fix it.",
        ),
    },
)  # fmt: skip
def member_lifecycle(member_status):
    routes = status_gate(member_status)
    asked = reconnect_notifications(routes.to_notify)
    return {"member_routes": routes.member_routes, "reconnect_notifications": asked}
