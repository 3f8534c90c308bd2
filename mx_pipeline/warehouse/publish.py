"""Publish the marts to ``analytics.duckdb`` for analysts: the last published file, copied, brought up to date, renamed.

Analysts never open the warehouse itself (DuckDB would block the pipeline's single writer). They read a copy
of the marts, refreshed after each successful model run in a new file and swapped in with one rename: a session
that has the old file open keeps reading the old file, whole, and nobody sees half a run.

The new file starts as a copy of the published one, whose ``main.publication`` table names the model run each
table reflects. A table whose model ran incrementally since then gets only the keys those runs replaced
(``ops.model_changes``); one whose model was rebuilt in full, whose columns changed, or whose provenance is
unknown (no file, no record, changes pruned) is copied whole. A crash before the rename leaves the old file as
it was, and the next publish starts from it again.
"""

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from mx_pipeline.warehouse import model_changes
from mx_pipeline.warehouse.connection import table_columns
from mx_pipeline.warehouse.models import Model, load_models
from mx_pipeline.warehouse.sql_literals import sql_literal

PUBLISHED_SCHEMAS = ("marts",)
PUBLICATION = "published.main.publication"


@dataclass(frozen=True)
class Published:
    rows: int
    how: str  # unchanged | changes (only the keys its model replaced) | whole
    keys: int = 0  # keys applied, when ``changes``


def publish(
    con: duckdb.DuckDBPyConnection, target: Path, models: Iterable[Model] | None = None
) -> dict[str, Published]:
    """Bring ``target`` up to date with every table and view of the published schemas and their comments.

    ``models`` (default: ``dbt_like_sql/``) tell each table's unique key and which models read its changes.
    """
    models = {m.name: m for m in (load_models() if models is None else models)}
    target = Path(target)
    building = target.with_name(f".{target.name}.{os.getpid()}.building")
    for pattern in ("*.building", "*.building.wal"):  # a killed publish's files (publishes never overlap)
        for stale in target.parent.glob(f".{target.name}.{pattern}"):
            stale.unlink(missing_ok=True)
    if target.exists():
        _copy(target, building)
    tables = _published_tables(con)
    starts = model_changes.last_starts(con)
    published = {}
    con.execute(f"attach {sql_literal(str(building))} as published")
    try:
        as_of = _publication(con)
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"create schema if not exists published.{schema}")
        for name in sorted(set(as_of) - {table for table, _ in tables}):  # no longer in the warehouse
            con.execute(f"drop table if exists published.{name}")
            con.execute(f"delete from {PUBLICATION} where table_name = ?", [name])
        for name, comment in tables:
            how, keys = _bring_up_to_date(con, name, models.get(name), as_of.get(name), starts.get(name))
            _comment(con, name, comment)
            con.execute(f"insert or replace into {PUBLICATION} values (?, ?, now())", [name, starts.get(name)])
            (rows,) = con.execute(f"select count(*) from {name}").fetchone()
            published[name] = Published(rows, how, keys)
        con.execute("detach published")
    except BaseException:
        con.execute("detach database if exists published")
        _remove(building)
        raise
    os.replace(building, target)  # atomic: readers see the old file or the new one, never a mix
    model_changes.prune(con, _horizons(con, models, starts))
    return published


def _copy(source: Path, copy: Path) -> None:
    """``source`` copied to ``copy`` in the kernel (``copy_file_range``): on a file system that shares blocks (XFS,
    btrfs) an instant and no disk until either file is written (a 289 MB file on XFS with reflink: 1 ms, against
    130-210 ms for ``shutil.copyfile``), elsewhere as fast as ``shutil.copyfile``, which it falls back to where the
    call is missing, refused or stops short (Python's own ``shutil`` uses it from 3.14)."""
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is not None:
        with open(source, "rb") as reading, open(copy, "wb") as writing:
            remaining = os.fstat(reading.fileno()).st_size
            with contextlib.suppress(OSError):
                while remaining > 0 and (copied := copy_file_range(reading.fileno(), writing.fileno(), remaining)):
                    remaining -= copied
        if remaining == 0:
            return
    shutil.copyfile(source, copy)


def _remove(building: Path) -> None:
    """A building file and DuckDB's write-ahead log beside it. Left there, the log of a publish killed mid-build
    would be replayed on the next file of that name (a process of the same id), and fail its attach ("WAL does not
    match database file")."""
    building.unlink(missing_ok=True)
    building.with_name(f"{building.name}.wal").unlink(missing_ok=True)


def _published_tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str | None]]:
    """(schema.table, comment) of every table and view of the published schemas."""
    marks = ", ".join("?" for _ in PUBLISHED_SCHEMAS)
    return con.execute(
        f"""
        select schema_name || '.' || table_name, comment from duckdb_tables()
        where database_name = current_database() and schema_name in ({marks})
        union all
        select schema_name || '.' || view_name, comment from duckdb_views()
        where database_name = current_database() and schema_name in ({marks})
        order by 1
        """,
        [*PUBLISHED_SCHEMAS, *PUBLISHED_SCHEMAS],
    ).fetchall()


def _publication(con: duckdb.DuckDBPyConnection) -> dict[str, dt.datetime | None]:
    """The model run (its start) each table of the published copy reflects; an unknown table is absent."""
    con.execute(
        f"""
        create table if not exists {PUBLICATION} (
            table_name   varchar primary key,
            model_run_at timestamptz,  -- the start of the model run it reflects (ops.model_runs); null: a view
            published_at timestamptz not null
        )
        """
    )
    con.execute(
        f"comment on table {PUBLICATION} is"
        " 'One row per published table: the start of the model run it reflects, and when it was published.'"
    )
    existing = {
        f"{schema}.{table}"
        for schema, table in con.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = 'published'"
        ).fetchall()
    }
    recorded = con.execute(f"select table_name, model_run_at from {PUBLICATION}").fetchall()
    return {name: run_at for name, run_at in recorded if name in existing}


def _bring_up_to_date(
    con: duckdb.DuckDBPyConnection, name: str, model: Model | None, as_of: dt.datetime | None, start: dt.datetime | None
) -> tuple[str, int]:
    """Bring the copy of table ``name`` to its model's last run ``start`` from ``as_of``: (how, keys applied)."""
    copy = f"published.{name}"
    same_columns = table_columns(con, name, "published") == table_columns(con, name)
    if start is not None and as_of == start and same_columns:
        return "unchanged", 0  # its model has not run since
    if (
        model is not None
        and model.materialized == "incremental"
        and as_of is not None
        and same_columns
        and _is_a_run_of(con, name, as_of)
        and not model_changes.rebuilt_since(con, [name], as_of)
    ):
        key, columns = model_changes.key_sql(model.unique_key), model.unique_key
        changed = model_changes.changed_keys_sql(model.unique_key, dict(table_columns(con, name)))
        con.execute(f"create or replace temp table publish_keys as {changed}", [name, as_of])
        (keys,) = con.execute("select count(*) from publish_keys").fetchone()
        con.execute(f"delete from {copy} where {key} in (select {columns} from publish_keys)")
        model_changes.row_ids_of_keys(con, name, model.unique_key, "publish_keys", into="publish_rows")
        con.execute(f"insert into {copy} by name select * from {name} where rowid in (select row_id from publish_rows)")
        con.execute("drop table publish_keys; drop table publish_rows")
        return "changes", int(keys)
    con.execute(f"create or replace table {copy} as select * from {name}")
    return "whole", 0


def _is_a_run_of(con: duckdb.DuckDBPyConnection, name: str, started: dt.datetime) -> bool:
    found = con.execute("select count(*) from ops.model_runs where model = ? and started_at = ?", [name, started])
    return bool(found.fetchone()[0])


def _comment(con: duckdb.DuckDBPyConnection, name: str, comment: str | None) -> None:
    """The table's and its columns' comments as in the warehouse (only those that differ are written)."""
    schema, table = name.split(".")
    differ = con.execute(
        """
        select w.column_name, w.comment
        from (select * from duckdb_columns() where database_name = current_database()) as w
        left join (select * from duckdb_columns() where database_name = 'published') as p
            using (schema_name, table_name, column_name)
        where w.schema_name = ? and w.table_name = ? and w.comment is distinct from p.comment
        """,
        [schema, table],
    ).fetchall()
    (published,) = con.execute(
        "select comment from duckdb_tables() where database_name = 'published' and schema_name = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    if published != comment:
        con.execute(f"comment on table published.{name} is {sql_literal(comment) if comment else 'null'}")
    for column, text in differ:
        con.execute(f"comment on column published.{name}.{column} is {sql_literal(text) if text else 'null'}")


def _horizons(
    con: duckdb.DuckDBPyConnection, models: dict[str, Model], starts: dict[str, dt.datetime]
) -> dict[str, dt.datetime]:
    """Per incremental model: the oldest point its readers (the published file, models reading its changes) read from.

    The published file now reflects each model's last run; a model reading changes reads next from its
    ``model_changes.read_since``.
    """
    horizons = {}
    for name, model in models.items():
        if model.materialized != "incremental" or name not in starts:
            continue
        readers = [model_changes.read_since(con, m.name, m.reads) for m in models.values()
                   if m.reads_changes and name in m.reads and m.name in starts]  # fmt: skip
        horizons[name] = min([starts[name], *(since for since in readers if since is not None)])
    return horizons
