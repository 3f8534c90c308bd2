"""Marking raw transactions removed (MX no longer lists them, or their member or user is retired), and live again
(their member or account is reinstated).

A removed row stays in ``raw`` for audit, with ``removed_at`` set; either way ``fetched_at`` moves, so the
incremental models read the row again and count it, or stop counting it.
"""

import datetime as dt
from collections.abc import Mapping

import duckdb


def mark_removed(
    con: duckdb.DuckDBPyConnection, where: str, params: Mapping[str, object] | None = None, *, now: dt.datetime
) -> int:
    """Mark removed, at ``now``, the transactions ``t`` for which ``where`` (with ``params``) holds; how many."""
    return _write_anew(con, where, params, removed_at=now, now=now)


def mark_live(
    con: duckdb.DuckDBPyConnection, where: str, params: Mapping[str, object] | None = None, *, now: dt.datetime
) -> int:
    """Make live again, at ``now``, the transactions ``t`` for which ``where`` (with ``params``) holds; how many."""
    return _write_anew(con, where, params, removed_at=None, now=now)


def _write_anew(
    con: duckdb.DuckDBPyConnection,
    where: str,
    params: Mapping[str, object] | None,
    *,
    removed_at: dt.datetime | None,
    now: dt.datetime,
) -> int:
    """The rows ``where`` picks, with ``removed_at`` and ``fetched_at = now``, written anew at the end of the table.

    Not updated where they lie. The models read raw's new rows by ``fetched_at``, and DuckDB skips a row group by its
    least and greatest ``fetched_at``: a few rows updated in every row group made the next increment read every
    payload of the table (3.2 s of 12.9 s at 5M rows).

    Call it inside the caller's transaction (the loader's, ``retire.atomically``): the insert and the delete must
    commit together, or a crash between them would leave a transaction twice."""
    con.execute(
        "create or replace temp table rewritten_rows as"
        f" select rowid as row_id from raw.mx_transactions as t where {where}",
        params or {},
    )
    # The new versions first, streamed from the old (which keep their row ids until the delete): nothing whole is held.
    ((written,),) = con.execute(
        "insert into raw.mx_transactions select * replace ($removed_at::timestamptz as removed_at,"
        " $now::timestamptz as fetched_at) from raw.mx_transactions where rowid in (select row_id from rewritten_rows)",
        {"removed_at": removed_at, "now": now},
    ).fetchall()
    con.execute("delete from raw.mx_transactions where rowid in (select row_id from rewritten_rows)")
    con.execute("drop table rewritten_rows")
    return int(written)
