"""``ops.reconnect_notifications``: the outbox. A notification is stored before any attempt to deliver it."""

import datetime as dt
from dataclasses import astuple, fields

import duckdb

from mx_pipeline.lifecycle.notifier import Notification

_COLUMNS = [f.name for f in fields(Notification)]


def add_notifications(con: duckdb.DuckDBPyConnection, notifications: list[Notification]) -> int:
    """Store new notifications; one already in the outbox (same member and episode) is kept as it is."""
    if not notifications:
        return 0
    before = _count(con)
    con.executemany(
        f"""
        insert into ops.reconnect_notifications ({", ".join(_COLUMNS)})
        values ({", ".join("?" for _ in _COLUMNS)})
        on conflict (notification_id) do nothing
        """,
        [astuple(n) for n in notifications],
    )
    return _count(con) - before


def undelivered(con: duckdb.DuckDBPyConnection, *, max_attempts: int) -> list[Notification]:
    """Notifications the notifier has not yet accepted, oldest first, that have attempts left."""
    rows = con.execute(
        f"""
        select {", ".join(_COLUMNS)} from ops.reconnect_notifications
        where delivered_at is null and attempts < ?
        order by created_at, notification_id
        """,
        [max_attempts],
    ).fetchall()
    return [Notification(*row) for row in rows]


def record_delivery(
    con: duckdb.DuckDBPyConnection, notification_id: str, *, at: dt.datetime, error: str | None = None
) -> None:
    """Count one delivery attempt; a success sets ``delivered_at``, a failure keeps the error for the data team."""
    con.execute(
        """
        update ops.reconnect_notifications
        set attempts = attempts + 1,
            delivered_at = case when $error is null then $at end,
            last_error = $error
        where notification_id = $id
        """,
        {"id": notification_id, "at": at, "error": error},
    )


def _count(con: duckdb.DuckDBPyConnection) -> int:
    (n,) = con.execute("select count(*) from ops.reconnect_notifications").fetchone()
    return int(n)
