"""``ops.reconnect_notifications``: the outbox. A notification is stored before any attempt to deliver it.

Each row has a ``state`` (``NotificationState``): ``pending`` until the notifier accepts it, then ``delivered``
(the product backend answered 2xx) or ``logged`` (no backend: only the log saw it). When every attempt has
failed it is ``dead``, never silently dropped.

The member's episode is the truth, not its momentary route: a pending notification is ``cancelled`` only once
its episode closed (the member recovered, its connection ended at MX, or it was retired) before it went
out. While its member's latest read asks nothing of the user for now (MX is working on it, the bank's side
is failing, a DEGRADED grace is still running) it is held: still pending, not sent, no attempt spent. It
goes out after a read that asks the user to act, saying what that read asks (one notification per member
per episode, refreshed while pending).
"""

import datetime as dt
from collections.abc import Collection
from dataclasses import astuple, fields

import duckdb

from mx_pipeline.lifecycle.notifier import Notification, NotificationState

_COLUMNS = [f.name for f in fields(Notification)]
PENDING, DELIVERED, LOGGED, DEAD, CANCELLED = (s.value for s in NotificationState)


_REFRESHED = [c for c in _COLUMNS if c not in ("notification_id", "created_at")]


def store_notifications(con: duckdb.DuckDBPyConnection, notifications: list[Notification]) -> int:
    """Store each episode's notification, or refresh a pending one with what the member's latest read asks.

    One per member per episode (its id): a notification already delivered, logged, dead or cancelled is kept
    as it was. Returns how many were new.
    """
    if not notifications:
        return 0
    before = _count(con)
    con.executemany(
        f"""
        insert into ops.reconnect_notifications ({", ".join(_COLUMNS)}, state)
        values ({", ".join("?" for _ in _COLUMNS)}, '{PENDING}')
        on conflict (notification_id) do update
        set {", ".join(f"{c} = excluded.{c}" for c in _REFRESHED)}
        where state = '{PENDING}'
        """,
        [astuple(n) for n in notifications],
    )
    return _count(con) - before


def cancel_closed(con: duckdb.DuckDBPyConnection, *, now: dt.datetime) -> dict[str, str]:
    """Cancel pending notifications whose episode closed before they went out; {id: why}."""
    rows = con.execute(
        f"""
        select n.notification_id,
               case when m.removed_at is not null then 'the member was retired before it was sent'
                    when r.route = 'terminal' then 'the connection ended at MX before it was sent'
                    else 'the member recovered before it was sent' end as why
        from ops.reconnect_notifications as n
        join ops.notification_episodes as e
            on e.member_guid = n.member_guid and n.notification_id = e.member_guid || ':' || e.number
        left join raw.mx_members as m on m.guid = n.member_guid
        left join ops.member_routes as r on r.member_guid = n.member_guid
        where n.state = '{PENDING}' and e.closed_at is not null
        """
    ).fetchall()
    _set_state(con, dict(rows), CANCELLED, now)
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


def pending(con: duckdb.DuckDBPyConnection, asking_now: Collection[str]) -> tuple[list[Notification], list[str]]:
    """Pending notifications, oldest first: (those to deliver now, ids of those held).

    ``asking_now``: member guids whose latest read asks the user to act (``GateResult.asking_now``); the
    notifications of the others are held: their episode is open, but the member asks nothing for now.
    """
    rows = con.execute(
        f"""
        select list_contains($asking, member_guid), {", ".join(_COLUMNS)} from ops.reconnect_notifications
        where state = '{PENDING}'
        order by created_at, notification_id
        """,
        {"asking": list(asking_now)},
    ).fetchall()
    to_deliver = [Notification(*row) for asks, *row in rows if asks]
    return to_deliver, [notification_id for asks, notification_id, *_ in rows if not asks]


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
