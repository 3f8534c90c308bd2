"""Dedupe-then-upsert of a frame into a raw table, keyed by MX guid.

A page can repeat a guid (an overlap window, a record updated between two page reads), so each batch is first
reduced to its latest row per guid. A re-read whose content is unchanged is not rewritten, so its ``run_id`` and
``fetched_at`` still say when that version first arrived. Newer always wins: a row never replaces a newer version
of itself (a slow page, a replayed or resumed read), judged by MX's ``latest_by`` timestamp (a version without one
is the older), then by ``fetched_at``. Columns the batch does not carry (``first_fetched_at``) are kept, but
``loaded_at``: every row written gets the merge's time.

The batch finds its rows by a semi-join on the key column alone; only the rows found are then compared, by a
digest of their content. No index is needed: ``raw.mx_transactions`` has none (migration 0022). With a VARCHAR
primary key, ``INSERT ... ON CONFLICT`` brought the key's ART index into memory for every batch, each batch
opening the file afresh: about 1 s and +250 MiB per 5,000 rows at 600k rows, growing with the table.

No statement holds whole rows: the newest version of each key is chosen on narrow columns, and whole rows stream
from the batch into the table, read back by name. Deduplicating whole rows held a batch's payloads at once: a
member of 24,000 transactions (32 MB of JSON) ran out of a 64 MB pool, so the loader needed 256 MB.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from mx_pipeline.warehouse.connection import registered, table_columns
from mx_pipeline.warehouse.tables import TableSpec

if TYPE_CHECKING:
    import pandas as pd


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


def upsert(con: duckdb.DuckDBPyConnection, spec: TableSpec, frame: "pd.DataFrame") -> UpsertCounts:
    """Write ``frame`` (columns = ``spec.columns``) into ``spec.name``: insert new guids, update changed ones."""
    if frame.empty:
        return UpsertCounts()
    batch = frame[list(spec.columns)].assign(_ordinal=range(len(frame)), _row=range(len(frame)))
    with registered(con, "upsert_batch", batch):
        return upsert_from(con, spec, "upsert_batch")


def upsert_from(con: duckdb.DuckDBPyConnection, spec: TableSpec, source: str) -> UpsertCounts:
    """Upsert the rows of ``source`` (see :func:`merge`) into ``spec.name``, in one transaction."""
    with merge_transaction(con):
        return merge(con, spec, source)


@contextmanager
def merge_transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """A transaction for :func:`merge`: committed, or rolled back, and either way the connection plans as DuckDB
    would. A merge that fails cannot undo its planner setting itself: its transaction is aborted then, and DuckDB
    refuses every statement but a rollback."""
    con.execute("begin transaction")
    try:
        yield
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        con.execute("reset disabled_optimizers")
        raise


def merge(con: duckdb.DuckDBPyConnection, spec: TableSpec, source: str) -> UpsertCounts:
    """:func:`upsert_from` inside the caller's :func:`merge_transaction`, in a fixed number of statements.

    ``source``: a relation with ``spec.columns``, an ``_ordinal`` (among duplicates fetched at the same time the
    greater is the later) and a ``_row`` naming each of its rows. Whatever its size, the merge holds only narrow
    columns of it: each guid's newest version is chosen on the key and its ordering columns, the versions found in
    the table are compared by a digest of their content, and whole rows stream from ``source`` into the table, read
    back by ``_row``. So the memory a merge needs does not grow with the payloads of its rows."""
    con.execute(f"set disabled_optimizers = '{_BUILD_SIDE_BY_ESTIMATE}'")
    con.execute(_dedupe_sql(spec, source))
    con.execute(_found_sql(spec))
    con.execute(_stale_sql(spec, source))
    ((incoming, found, stale),) = con.execute(
        "select (select count(*) from upsert_incoming), (select count(*) from upsert_found),"
        " (select count(*) from upsert_stale)"
    ).fetchall()
    if stale:
        con.execute(_replace_sql(spec, source, _kept_columns(con, spec)))
    if incoming > found:
        con.execute(_insert_sql(spec, source, "select _row from upsert_incoming anti join upsert_found using (key)"))
    con.execute("drop table upsert_incoming; drop table upsert_found; drop table upsert_stale")
    con.execute("reset disabled_optimizers")
    return UpsertCounts(inserted=incoming - found, updated=stale, unchanged=found - stale)


# Every join of a merge hashes the side written on its right: the narrow one (keys, row names, digests). DuckDB's
# optimizer would pick the side by its row estimates, and it guesses a Parquet scan's rows from its first file:
# after a member of 86 rows, a group of 40 members' files looked 16 times smaller than it was, the insert hashed
# their whole rows to find the 56,000 it named, and the group ran out of the loader's pool (55k rows at 64 MB).
_BUILD_SIDE_BY_ESTIMATE = "build_side_probe_side"


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _typed(spec: TableSpec, column: str) -> str:
    """``column`` of the source, cast to the table's type."""
    cast = dict(spec.casts).get(column)
    return f"cast({_q(column)} as {cast})" if cast else _q(column)


def _typed_rows(spec: TableSpec, source: str, rows: str) -> str:
    """The rows of ``source`` named in ``rows`` (a query of ``_row``), whole and typed: streamed, never held."""
    select = ", ".join(f"{_typed(spec, c)} as {_q(c)}" for c in spec.columns)
    return f"(select {select}, _row from {source} where _row in ({rows}))"


def _dedupe_sql(spec: TableSpec, source: str) -> str:
    """Each key's newest version in the batch: its key and ``_row`` only."""
    arrival = "fetched_at desc, _ordinal desc"  # the later fetch, then the later place in it
    order = f"{_typed(spec, spec.latest_by)} desc nulls last, {arrival}" if spec.latest_by else arrival
    return f"""
        create temp table upsert_incoming as
        select {_typed(spec, spec.key)} as key, _row from {source}
        qualify row_number() over (partition by {_typed(spec, spec.key)} order by {order}) = 1
    """


def _found_sql(spec: TableSpec) -> str:
    """The table's rows the batch has a version of: their rowids, from a scan of the key column alone."""
    key = _q(spec.key)
    return f"""
        create temp table upsert_found as
        select target.rowid as row_id, target.{key} as key
        from {spec.name} as target semi join upsert_incoming as incoming on target.{key} = incoming.key
    """


def _compared(spec: TableSpec) -> str:
    """What a version is compared on, narrow: its key, a digest of its content, and what says which is the newer.
    The digest is the MD5 (128 bits) of the content columns as JSON, a JSON payload by its own MD5 (DuckDB's
    ``to_json`` parses a JSON value it embeds: 16 MiB at a time)."""
    json = {c for c, cast in spec.casts if cast == "json"}
    content = ", ".join(
        f"{_q(c)} := md5(cast({_q(c)} as varchar))" if c in json else f"{_q(c)} := {_q(c)}"
        for c in spec.content_columns
    )
    newer = ", ".join(_q(c) for c in dict.fromkeys((*filter(None, (spec.latest_by,)), "fetched_at")))
    return f"{_q(spec.key)}, md5_number(cast(to_json(struct_pack({content})) as varchar)) as content, {newer}"


def _stale_sql(spec: TableSpec, source: str) -> str:
    """Of those, the rows the batch's version replaces: its content differs and it is not older. Each side's
    versions are digested into a table of their own first, each in one pass, so the join holds narrow rows only."""
    key = _q(spec.key)
    theirs = _typed_rows(spec, source, "select _row from upsert_incoming semi join upsert_found using (key)")
    return f"""
        create temp table upsert_theirs as select {_compared(spec)}, _row from {theirs};
        create temp table upsert_ours as
        select rowid as row_id, {_compared(spec)} from {spec.name} where rowid in (select row_id from upsert_found);
        create temp table upsert_stale as
        select ours.row_id, theirs._row
        from upsert_theirs as theirs join upsert_ours as ours on ours.{key} = theirs.{key}
        where ours.content <> theirs.content and {_not_older("theirs", "ours", spec)};
        drop table upsert_theirs; drop table upsert_ours;
    """


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


# A table's column a batch does not carry that says when a row was written: a replaced row takes its default (the
# merge's transaction time), as an inserted one does; the incremental models read raw.mx_transactions by it.
LOADED_AT = "loaded_at"


def _kept_columns(con: duckdb.DuckDBPyConnection, spec: TableSpec) -> list[str]:
    """The table's columns a batch does not carry (``first_fetched_at``) but :data:`LOADED_AT`: a replaced row keeps
    their values."""
    return [name for name, _ in table_columns(con, spec.name) if name not in spec.columns and name != LOADED_AT]


def _replace_sql(spec: TableSpec, source: str, kept: list[str]) -> str:
    """The stale rows, deleted and inserted in their new version; the columns ``kept`` get back the values they had.

    Not an UPDATE from the source: DuckDB holds an update's new values in memory until the commit, so a read in
    which all of a large member's rows changed (MX re-categorizing its history) ran out of the loader's pool at
    every load. An insert streams its rows to the file; ``kept`` is narrow (``first_fetched_at``)."""
    key = _q(spec.key)
    keep = f"""
        create temp table upsert_kept as
        select {key} as key, {", ".join(map(_q, kept))} from {spec.name}
        where rowid in (select row_id from upsert_stale);
    """
    restore = f"""
        update {spec.name} as target set {", ".join(f"{_q(c)} = kept.{_q(c)}" for c in kept)}
        from upsert_kept as kept where target.{key} = kept.key;
        drop table upsert_kept;
    """
    return f"""
        {keep if kept else ""}
        delete from {spec.name} where rowid in (select row_id from upsert_stale);
        {_insert_sql(spec, source, "select _row from upsert_stale")};
        {restore if kept else ""}
    """


def _insert_sql(spec: TableSpec, source: str, rows: str) -> str:
    """The rows of ``source`` named in ``rows`` (a query of ``_row``), inserted whole."""
    columns = ", ".join(_q(c) for c in spec.columns)
    return f"insert into {spec.name} ({columns}) select {columns} from {_typed_rows(spec, source, rows)}"
