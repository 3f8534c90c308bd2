"""Marking raw transactions removed (MX no longer lists them, or their member or user is retired), and live again
(their member or account is reinstated).

A removed row stays in ``raw`` for audit, with ``removed_at`` set; either way ``loaded_at`` moves, so the
incremental models read the row again and count it, or stop counting it, and ``fetched_at`` becomes when MX was seen
no longer listing it (or listing it again): a version MX sends later is newer, one sent before is not.
"""

import datetime as dt
from collections.abc import Mapping

import duckdb


def mark_removed(
    con: duckdb.DuckDBPyConnection,
    where: str,
    params: Mapping[str, object] | None = None,
    *,
    now: dt.datetime,
    observed_at: str = "$now",
) -> int:
    """Mark removed, at ``now``, the transactions ``t`` for which ``where`` (with ``params``) holds; how many.
    ``observed_at``: when MX was seen no longer listing each (SQL over ``t``; by default ``now``)."""
    return _write_anew(con, where, params, removed_at=now, now=now, observed_at=observed_at)


def mark_live(
    con: duckdb.DuckDBPyConnection, where: str, params: Mapping[str, object] | None = None, *, now: dt.datetime
) -> int:
    """Make live again, at ``now``, the transactions ``t`` for which ``where`` (with ``params``) holds; how many."""
    return _write_anew(con, where, params, removed_at=None, now=now, observed_at="$now")


def _write_anew(
    con: duckdb.DuckDBPyConnection,
    where: str,
    params: Mapping[str, object] | None,
    *,
    removed_at: dt.datetime | None,
    now: dt.datetime,
    observed_at: str,
) -> int:
    """The rows ``where`` picks, with ``removed_at``, ``fetched_at = observed_at`` and ``loaded_at`` the transaction's
    time, written anew at the end of the table. Never ``now``: a caller may take it and then wait for the warehouse
    behind a model run, whose next increment would then never read these rows.

    Not updated where they lie. The models read raw's new rows by ``loaded_at``, and DuckDB skips a row group by its
    least and greatest value there: a few rows updated in every row group made the next increment read every
    payload of the table (3.2 s of 12.9 s at 5M rows).

    Call it inside the caller's transaction (the loader's, ``retire.atomically``): the insert and the delete must
    commit together, or a crash between them would leave a transaction twice."""
    params = {**(params or {}), "now": now}
    con.execute(
        "create or replace temp table rewritten_rows as"
        f" select rowid as row_id, cast({observed_at} as timestamptz) as observed_at"
        f" from raw.mx_transactions as t where {where}",
        {k: v for k, v in params.items() if f"${k}" in where or f"${k}" in observed_at},
    )
    # The new versions first, streamed from the old (which keep their row ids until the delete): nothing whole is held.
    ((written,),) = con.execute(
        "insert into raw.mx_transactions select t.* replace ($removed_at::timestamptz as removed_at,"
        " r.observed_at as fetched_at, current_timestamp as loaded_at)"
        " from raw.mx_transactions as t join rewritten_rows as r on t.rowid = r.row_id",
        {"removed_at": removed_at},
    ).fetchall()
    con.execute("delete from raw.mx_transactions where rowid in (select row_id from rewritten_rows)")
    con.execute("drop table rewritten_rows")
    return int(written)
