"""Dedupe-then-upsert of a frame into a raw table, keyed by MX guid.

DuckDB's ``INSERT ... ON CONFLICT`` does not raise on a key repeated inside one batch: it silently keeps
the FIRST row. A page can repeat a guid (an overlap window, a record updated between two page reads), so
each batch is reduced to its latest row per guid before it reaches the table. A re-read whose content is
unchanged is not rewritten, so its ``run_id`` and ``fetched_at`` still say when that version first arrived.
Newer always wins: a row never replaces a newer version of itself (a slow page, a replayed or resumed read),
judged by MX's ``latest_by`` timestamp (a version without one is the older), then by ``fetched_at``.
Counts come from ``RETURNING`` and the table's row count, never from a join against the whole table: the
primary-key index makes the upsert itself cost the batch's size, and a join would cost the table's.
"""

from dataclasses import dataclass

import duckdb
import pandas as pd

from mx_pipeline.warehouse.tables import TableSpec


@dataclass(frozen=True)
class UpsertCounts:
    """What one upsert did: rows new to the table, rows whose content changed, rows not written (already up to
    date, or older than the version the table holds)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: "UpsertCounts") -> "UpsertCounts":
        return UpsertCounts(
            self.inserted + other.inserted, self.updated + other.updated, self.unchanged + other.unchanged
        )

    @property
    def written(self) -> int:
        return self.inserted + self.updated


def upsert(con: duckdb.DuckDBPyConnection, spec: TableSpec, frame: pd.DataFrame) -> UpsertCounts:
    """Write ``frame`` (columns = ``spec.columns``) into ``spec.name``: insert new guids, update changed ones."""
    if frame.empty:
        return UpsertCounts()
    con.register("upsert_batch", frame[list(spec.columns)].assign(_ordinal=range(len(frame))))
    try:
        return upsert_from(con, spec, "upsert_batch")
    finally:
        con.unregister("upsert_batch")


def upsert_from(con: duckdb.DuckDBPyConnection, spec: TableSpec, source: str) -> UpsertCounts:
    """Upsert the rows of ``source`` (a relation with ``spec.columns`` and an ``_ordinal``: among duplicates the
    greater is the later) into ``spec.name``, in one transaction of a fixed number of statements."""
    try:
        con.execute("begin transaction")
        con.execute(_dedupe_sql(spec, source))
        (incoming,) = con.execute("select count(*) from upsert_incoming").fetchone()
        (before,) = con.execute(f"select count(*) from {spec.name}").fetchone()
        # RETURNING lists only the rows written: inserted, or updated because their content differed.
        written = len(con.execute(_merge_sql(spec) + " returning 1").fetchall())
        (after,) = con.execute(f"select count(*) from {spec.name}").fetchone()
        con.execute("drop table upsert_incoming")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    inserted = after - before
    return UpsertCounts(inserted=inserted, updated=written - inserted, unchanged=incoming - written)


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _dedupe_sql(spec: TableSpec, source: str) -> str:
    casts = dict(spec.casts)
    select = ", ".join(f"cast({_q(c)} as {casts[c]}) as {_q(c)}" if c in casts else _q(c) for c in spec.columns)
    order = f"{_q(spec.latest_by)} desc nulls last, _ordinal desc" if spec.latest_by else "_ordinal desc"
    return f"""
        create temp table upsert_incoming as
        select {select} from {source}
        qualify row_number() over (partition by {_q(spec.key)} order by {order}) = 1
    """


def _content_differs(left: str, right: str, spec: TableSpec) -> str:
    columns = spec.content_columns
    lhs = ", ".join(f"{left}.{_q(c)}" for c in columns)
    rhs = ", ".join(f"{right}.{_q(c)}" for c in columns)
    return f"row({lhs}) is distinct from row({rhs})"


def _not_older(new: str, old: str, spec: TableSpec) -> str:
    """``new`` is at least as recent as ``old``: MX's own timestamp first, then when we fetched it."""
    fetched = f"{new}.fetched_at >= {old}.fetched_at"
    if spec.latest_by is None:
        return fetched
    latest = _q(spec.latest_by)
    return f"""(
            {new}.{latest} > {old}.{latest}
            or ({new}.{latest} is not null and {old}.{latest} is null)
            or ({new}.{latest} is not distinct from {old}.{latest} and {fetched})
        )"""


def _merge_sql(spec: TableSpec) -> str:
    columns = ", ".join(_q(c) for c in spec.columns)
    updates = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in spec.columns if c != spec.key)
    return f"""
        insert into {spec.name} as target ({columns})
        select {columns} from upsert_incoming
        on conflict ({_q(spec.key)}) do update set {updates}
        where {_content_differs("target", "excluded", spec)} and {_not_older("excluded", "target", spec)}
    """
