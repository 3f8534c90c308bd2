"""``status_gate``: member status -> one route per member -> fetch, notify, or wait.

The gate is an op with one optional output per route (``ready``, ``needs_mfa``, ``needs_reconnect``,
``degraded``, ``in_progress``, ``institution_side``, ``terminal``): a route with no members emits nothing, so in
the run view the steps behind it show as skipped. It writes ``ops.member_routes`` (which the fetching assets
read), folds each read into the member's notification episode, and decides the episode's notification in the
same transaction, so a notification is never lost between deciding it and storing it.
``reconnect_notifications`` then delivers the outbox (pending -> delivered | logged | dead | cancelled; see
``warehouse/outbox.py``): only the notifications of members this read asks to act now (``asking_now``); the
others wait, pending, for a read that does. Both are assets, wrapped as one graph.
"""

import datetime as dt

import dagster as dg

from mx_pipeline.defs.ingest.assets import MEMBER_ROUTES, POOL
from mx_pipeline.defs.resources import ConnectLinksResource, NotifierResource, WarehouseResource
from mx_pipeline.lifecycle.gate import gate
from mx_pipeline.lifecycle.notifier import Notification, NotificationState
from mx_pipeline.lifecycle.routes import DEGRADED_GRACE, Route
from mx_pipeline.warehouse import tables
from mx_pipeline.warehouse.lifecycle import latest_episodes, member_states, save_episodes, save_routes
from mx_pipeline.warehouse.outbox import bury_exhausted, cancel_closed, pending, record_delivery, store_notifications

GROUP = "lifecycle"
RECONNECT_NOTIFICATIONS = dg.AssetKey(["ops", "reconnect_notifications"])
ROUTE_OUTS = {r.value: dg.Out(list, is_required=False, description=f"members routed {r.value}") for r in Route}


class GateConfig(dg.Config):
    # A DEGRADED member is backed off and re-read first (our own bursts can cause it, and it often clears);
    # its user is asked to reconnect only if it is still DEGRADED this long after it first was.
    degraded_grace_hours: float = DEGRADED_GRACE.total_seconds() / 3600


@dg.op(
    ins={"after_status_read": dg.In(dg.Nothing)},
    out={
        "member_routes": dg.Out(dg.Nothing, description="ops.member_routes, rewritten for every member"),
        **ROUTE_OUTS,
        "asking_now": dg.Out(list, is_required=False, description="members whose read asks their user to act now"),
    },
    pool=POOL,
)
def status_gate(
    context: dg.OpExecutionContext,
    config: GateConfig,
    warehouse: WarehouseResource,
    connect_links: ConnectLinksResource,
):
    """Route every member from its latest status read; open, close and notify episodes."""
    now = dt.datetime.now(dt.UTC)
    grace = dt.timedelta(hours=config.degraded_grace_hours)
    with warehouse.open().connect() as con:
        result = gate(member_states(con), latest_episodes(con), now=now, degraded_grace=grace)
        notifications = [
            Notification.for_episode(routed, episode, connect_links.reconnect_url(routed), now)
            for routed, episode in result.asking_now
        ]
        con.execute("begin transaction")
        save_routes(con, (m for members in result.routed.values() for m in members), run_id=context.run.run_id, now=now)
        save_episodes(con, result.episodes)
        created = store_notifications(con, notifications)
        con.execute("commit")
    by_route = {route.value: len(members) for route, members in result.routed.items()}
    yield dg.Output(
        None,
        "member_routes",
        metadata={
            "dagster/row_count": sum(by_route.values()),
            "members_by_route": dg.MetadataValue.json(by_route),
            "episodes_changed": len(result.episodes),
            "notifications_decided": created,
        },
    )
    for route, members in result.routed.items():
        if route.value in context.selected_output_names:  # an asset job prunes the outputs nothing consumes
            yield dg.Output([m.member.member_guid for m in members], route.value)
    if "asking_now" in context.selected_output_names:
        yield dg.Output([routed.member.member_guid for routed, _ in result.asking_now], "asking_now")


@dg.op(pool=POOL, out=dg.Out(dg.Nothing))
def reconnect_notifications(
    context: dg.OpExecutionContext,
    asking_now: list[str],
    warehouse: WarehouseResource,
    notifier: NotifierResource,
):
    """Deliver the pending notifications (new ones, and earlier ones that failed) of members asking now.

    One whose episode closed (the member recovered, or was retired) is cancelled first, never sent. One whose
    member asks nothing for now (in progress, the bank's side, a DEGRADED grace) is held: pending, no attempt
    spent, sent after a read that asks again. One that fails its last attempt is dead (``member_health`` shows
    it). Without a backend each is ``logged``.
    """
    wh, deliver = warehouse.open(), notifier.notifier().deliver
    now = dt.datetime.now(dt.UTC)
    with wh.connect() as con:
        cancelled = cancel_closed(con, now=now)
        bury_exhausted(con, max_attempts=notifier.max_attempts, now=now)
        to_deliver, waiting = pending(con, asking_now)
    outcomes: dict[str, int] = {}
    failed = {}
    for notification in to_deliver:
        try:
            outcome, error = NotificationState(deliver(notification)), None
        except Exception as exc:  # a notifier of any kind may fail; the outbox keeps it for the next run
            outcome, error = None, f"{type(exc).__name__}: {exc}"
            failed[notification.notification_id] = error
            context.log.warning(f"notification {notification.notification_id} not delivered: {error}")
        with wh.connect() as con:
            state = record_delivery(
                con,
                notification.notification_id,
                at=dt.datetime.now(dt.UTC),
                outcome=outcome,
                error=error,
                max_attempts=notifier.max_attempts,
            )
        outcomes[state.value] = outcomes.get(state.value, 0) + 1
        if state is NotificationState.DEAD:
            context.log.error(f"notification {notification.notification_id} is dead: no attempts left ({error})")
    with wh.connect() as con:
        by_state = dict(con.execute("select state, count(*) from ops.reconnect_notifications group by 1").fetchall())
    return dg.Output(
        None,
        metadata={
            "dagster/row_count": sum(by_state.values()),
            "members_asking": len(asking_now),
            "delivered": outcomes.get(NotificationState.DELIVERED.value, 0),
            "logged": outcomes.get(NotificationState.LOGGED.value, 0),
            "dead": outcomes.get(NotificationState.DEAD.value, 0),
            "cancelled": dg.MetadataValue.json(cancelled),
            "held": dg.MetadataValue.json(waiting),
            "failed": dg.MetadataValue.json(failed),
            "outbox_by_state": dg.MetadataValue.json(by_state),
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
    asked = reconnect_notifications(routes.asking_now)
    return {"member_routes": routes.member_routes, "reconnect_notifications": asked}
