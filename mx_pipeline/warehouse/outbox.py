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

Delivery happens outside the writer pool, so runs may deliver at the same time: a run first leases its batch
(``lease_due``: at most its batch size, oldest first) and records each outcome under its lease. A leased
notification is no other run's to send, refresh, cancel or bury until the lease is let go
(``release_lease``: what the run did not get to stays pending, no attempt spent) or runs out (the run died
mid-send: the next run takes it over, so it is retried, never lost).
"""

import datetime as dt
import time
from collections.abc import Collection
from dataclasses import astuple, dataclass, fields

import duckdb

from mx_pipeline.lifecycle.notifier import Notification, NotificationState

_COLUMNS = [f.name for f in fields(Notification)]
PENDING, DELIVERED, LOGGED, DEAD, CANCELLED = (s.value for s in NotificationState)


_REFRESHED = [c for c in _COLUMNS if c not in ("notification_id", "created_at")]
_FREE = "coalesce(leased_until <= $now, true)"  # no run is sending it (or the run that was died)


@dataclass(frozen=True)
class Leased:
    """A run's batch: the notifications it leased to send now, and the pending ones it did not take."""

    notifications: list[Notification]  # oldest first
    held: list[str]  # ids whose member asks nothing for now
    left: list[str]  # ids asking now, beyond this run's batch or being sent by another run: for the next run


def store_notifications(con: duckdb.DuckDBPyConnection, notifications: list[Notification], *, now: dt.datetime) -> int:
    """Store each episode's notification, or refresh a pending one with what the member's latest read asks.

    One per member per episode (its id): a notification already delivered, logged, dead or cancelled is kept
    as it was, and so is one a run is sending. Returns how many were new.
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
        where state = '{PENDING}' and coalesce(leased_until <= ?, true)
        """,
        [(*astuple(n), now) for n in notifications],
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
        where n.state = '{PENDING}' and e.closed_at is not null and {_FREE}
        """,
        {"now": now},
    ).fetchall()
    _set_state(con, dict(rows), CANCELLED, now)
    return dict(rows)


def bury_exhausted(con: duckdb.DuckDBPyConnection, *, max_attempts: int, now: dt.datetime) -> int:
    """Pending notifications with no attempts left (say, after ``max_attempts`` was lowered) become dead."""
    rows = con.execute(
        f"select notification_id, last_error from ops.reconnect_notifications where state = '{PENDING}'"
        f" and attempts >= $max and {_FREE}",
        {"max": max_attempts, "now": now},
    ).fetchall()
    _set_state(con, dict(rows), DEAD, now)
    return len(rows)


def lease_due(
    con: duckdb.DuckDBPyConnection,
    asking_now: Collection[str],
    *,
    lease: str,
    now: dt.datetime,
    until: dt.datetime,
    limit: int,
) -> Leased:
    """Lease up to ``limit`` pending notifications of members asking now, oldest first, to ``lease`` until ``until``.

    ``asking_now``: member guids whose latest read asks the user to act (``GateResult.asking_now``); the
    notifications of the others are held: their episode is open, but the member asks nothing for now. One
    statement, outside any transaction: of two runs leasing at once, one waits for the other's to commit and
    never takes the same notification.
    """
    leased = _retrying_conflicts(
        con,
        f"""
        update ops.reconnect_notifications set leased_by = $lease, leased_until = $until
        where notification_id in (
            select notification_id from ops.reconnect_notifications
            where state = '{PENDING}' and list_contains($asking, member_guid) and {_FREE}
            order by created_at, notification_id
            limit $limit
        )
        returning {", ".join(_COLUMNS)}
        """,
        {"asking": list(asking_now), "lease": lease, "now": now, "until": until, "limit": limit},
    )
    notifications = sorted((Notification(*row) for row in leased), key=lambda n: (n.created_at, n.notification_id))
    rest = con.execute(
        f"""
        select list_contains($asking, member_guid), notification_id from ops.reconnect_notifications
        where state = '{PENDING}' and leased_by is distinct from $lease
        order by created_at, notification_id
        """,
        {"asking": list(asking_now), "lease": lease},
    ).fetchall()
    return Leased(notifications, [i for asks, i in rest if not asks], [i for asks, i in rest if asks])


def renew_lease(con: duckdb.DuckDBPyConnection, lease: str, *, until: dt.datetime) -> set[str]:
    """Extend ``lease`` to ``until``; the ids it still holds (none, if it ran out and another run took them)."""
    rows = con.execute(
        f"update ops.reconnect_notifications set leased_until = $until"
        f" where leased_by = $lease and state = '{PENDING}' returning notification_id",
        {"lease": lease, "until": until},
    ).fetchall()
    return {notification_id for (notification_id,) in rows}


def release_lease(con: duckdb.DuckDBPyConnection, lease: str) -> int:
    """Let go of what ``lease`` still holds (not sent): pending for the next run, no attempt spent. How many."""
    rows = con.execute(
        "update ops.reconnect_notifications set leased_by = null, leased_until = null"
        " where leased_by = $lease returning notification_id",
        {"lease": lease},
    ).fetchall()
    return len(rows)


def record_delivery(
    con: duckdb.DuckDBPyConnection,
    notification_id: str,
    *,
    lease: str,
    at: dt.datetime,
    outcome: NotificationState | None = None,
    error: str | None = None,
    max_attempts: int,
) -> NotificationState | None:
    """Count one delivery attempt made under ``lease``: its ``outcome`` (delivered or logged), or its ``error``.

    Returns the state it left, and lets go of the notification. A failure keeps the error for the data team; the
    attempt that uses up ``max_attempts`` makes it dead. None when the lease had run out and another run took
    the notification over: that run's word counts.
    """
    recorded = con.execute(
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
                                then 'no attempts left: ' || $error end,
            leased_by = null,
            leased_until = null
        where notification_id = $id and leased_by = $lease
        returning state
        """,
        {"id": notification_id, "lease": lease, "at": at, "outcome": outcome and outcome.value, "error": error,
         "max": max_attempts},
    ).fetchone()  # fmt: skip
    return NotificationState(recorded[0]) if recorded else None


def _set_state(con: duckdb.DuckDBPyConnection, reasons: dict[str, str | None], state: str, now: dt.datetime) -> None:
    if reasons:
        con.executemany(
            "update ops.reconnect_notifications set state = ?, state_changed_at = ?, state_reason = ?"
            " where notification_id = ?",
            [(state, now, reason, notification_id) for notification_id, reason in reasons.items()],
        )


def _retrying_conflicts(con: duckdb.DuckDBPyConnection, sql: str, params: dict, tries: int = 20) -> list[tuple]:
    """Run one autocommitted statement; a write conflict with another connection (it rolled back) runs it again."""
    for attempt in range(1, tries):
        try:
            return con.execute(sql, params).fetchall()
        except duckdb.TransactionException:
            time.sleep(0.01 * attempt)
    return con.execute(sql, params).fetchall()


def _count(con: duckdb.DuckDBPyConnection) -> int:
    (n,) = con.execute("select count(*) from ops.reconnect_notifications").fetchone()
    return int(n)
