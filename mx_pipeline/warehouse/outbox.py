"""``ops.reconnect_notifications``: the outbox. A notification is stored before any attempt to deliver it.

Each row has a ``state`` (``NotificationState``): ``pending`` until the notifier accepts it, then ``delivered``
(the product backend answered 2xx) or ``logged`` (no backend: only the log saw it). When every attempt has
failed it is ``dead``, never silently dropped; and when its member no longer asks anything of the user before
it went out (recovered, retired, or moved to a route that asks nothing) it is ``cancelled``, never sent.
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import astuple, fields

import duckdb

from mx_pipeline.lifecycle.notifier import Notification, NotificationState
from mx_pipeline.lifecycle.routes import Route

_COLUMNS = [f.name for f in fields(Notification)]
PENDING, DELIVERED, LOGGED, DEAD, CANCELLED = (s.value for s in NotificationState)


def add_notifications(con: duckdb.DuckDBPyConnection, notifications: list[Notification]) -> int:
    """Store new notifications; one already in the outbox (same member and episode) is kept as it is."""
    if not notifications:
        return 0
    before = _count(con)
    con.executemany(
        f"""
        insert into ops.reconnect_notifications ({", ".join(_COLUMNS)}, state)
        values ({", ".join("?" for _ in _COLUMNS)}, '{PENDING}')
        on conflict (notification_id) do nothing
        """,
        [astuple(n) for n in notifications],
    )
    return _count(con) - before


def cancel_settled(
    con: duckdb.DuckDBPyConnection, asking_routes: Iterable[Route], *, now: dt.datetime
) -> dict[str, str]:
    """Cancel pending notifications whose member no longer asks anything of the user; {id: why}."""
    rows = con.execute(
        f"""
        select n.notification_id,
               case when e.closed_at is not null then 'the member recovered before it was sent'
                    when r.route is null then 'the member is no longer routed'
                    else 'the member is now ' || r.route || ': ' || r.reason end as why
        from ops.reconnect_notifications as n
        left join ops.member_routes as r on r.member_guid = n.member_guid
        left join ops.notification_episodes as e
            on e.member_guid = n.member_guid and n.notification_id = e.member_guid || ':' || e.number
        where n.state = '{PENDING}'
          and (e.closed_at is not null or r.route is null or not list_contains($asking, r.route))
        """,
        {"asking": [route.value for route in asking_routes]},
    ).fetchall()
    _set_state(con, {notification_id: why for notification_id, why in rows}, CANCELLED, now)
    return dict(rows)


def bury_exhausted(con: duckdb.DuckDBPyConnection, *, max_attempts: int, now: dt.datetime) -> int:
    """Pending notifications with no attempts left (say, after ``max_attempts`` was lowered) become dead."""
    rows = con.execute(
        f"select notification_id, last_error from ops.reconnect_notifications where state = '{PENDING}'"
        " and attempts >= ?",
        [max_attempts],
    ).fetchall()
    _set_state(con, dict(rows), DEAD, now)
    return len(rows)


def pending(con: duckdb.DuckDBPyConnection) -> list[Notification]:
    """Notifications still to deliver, oldest first."""
    rows = con.execute(
        f"""
        select {", ".join(_COLUMNS)} from ops.reconnect_notifications
        where state = '{PENDING}'
        order by created_at, notification_id
        """
    ).fetchall()
    return [Notification(*row) for row in rows]


def record_delivery(
    con: duckdb.DuckDBPyConnection,
    notification_id: str,
    *,
    at: dt.datetime,
    outcome: NotificationState | None = None,
    error: str | None = None,
    max_attempts: int,
) -> NotificationState:
    """Count one delivery attempt: its ``outcome`` (delivered or logged), or its ``error``; the state it left.

    A failure keeps the error for the data team; the attempt that uses up ``max_attempts`` makes it dead.
    """
    (state,) = con.execute(
        """
        update ops.reconnect_notifications
        set attempts = attempts + 1,
            delivered_at = case when $outcome = 'delivered' then $at end,
            last_error = $error,
            state = case when $outcome is not null then $outcome
                         when attempts + 1 >= $max then 'dead'
                         else 'pending' end,
            state_changed_at = $at,
            state_reason = case when $outcome is null and attempts + 1 >= $max
                                then 'no attempts left: ' || $error end
        where notification_id = $id
        returning state
        """,
        {"id": notification_id, "at": at, "outcome": outcome and outcome.value, "error": error, "max": max_attempts},
    ).fetchone()
    return NotificationState(state)


def _set_state(con: duckdb.DuckDBPyConnection, reasons: dict[str, str | None], state: str, now: dt.datetime) -> None:
    if reasons:
        con.executemany(
            "update ops.reconnect_notifications set state = ?, state_changed_at = ?, state_reason = ?"
            " where notification_id = ?",
            [(state, now, reason, notification_id) for notification_id, reason in reasons.items()],
        )


def _count(con: duckdb.DuckDBPyConnection) -> int:
    (n,) = con.execute("select count(*) from ops.reconnect_notifications").fetchone()
    return int(n)
