"""What each incremental model run replaced, so its readers apply only that.

A run logs every key whose rows it deleted or recomputed (``ops.model_changes``) and, when a model reads them,
keeps those rows as they were in ``changes.<schema>__<table>``: their key and the columns their readers' SQL reads
(with ``changed_at``, the run's start). An incremental model downstream reads them to find what its own rows
depend on (``monthly_spend_by_category`` re-sums the months a transaction left), and the analysts' file
(publish.py) applies exactly those keys. A full build logs nothing and empties the kept rows: a reader whose
upstream model was rebuilt in full since it last read rebuilds in full, and so does one that last read before the
changes it needs were pruned, or before the kept rows took other columns (``ops.model_changes_kept``).
"""

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import duckdb
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from mx_pipeline.warehouse.connection import table_columns
from mx_pipeline.warehouse.sql_literals import sql_literal

if TYPE_CHECKING:
    from mx_pipeline.warehouse.models import Model

CHANGES_TABLE = "ops.model_changes"
REPLACED_SCHEMA = "changes"
CHANGED_AT = "changed_at"  # a kept row's: the start of the run that replaced it


def models_read(tables: frozenset[str]) -> frozenset[str]:
    """``tables`` with the change log read as the models it logs (``changes.marts__x`` is ``marts.x``)."""
    return frozenset(
        model_of(table) if table.startswith(f"{REPLACED_SCHEMA}.") else table
        for table in tables
        if table != CHANGES_TABLE
    )


def replaced_rows_read(models: Iterable["Model"]) -> dict[str, frozenset[str]]:
    """Per model whose replaced rows one of ``models`` reads, the columns they read ("*": all): the runs of that
    model keep those columns of the rows they replace (``run_model``), beside its key."""
    read: dict[str, frozenset[str]] = {}
    for model in models:
        for name, columns in model.reads_replaced.items():
            read[name] = read.get(name, frozenset()) | columns
    return {name: _all_or(columns) for name, columns in read.items()}


def _all_or(columns: set[str] | frozenset[str]) -> frozenset[str]:
    """``columns``, or "*" alone when they include it."""
    return frozenset({"*"}) if "*" in columns else frozenset(columns)


def replaced_columns_read(tree: exp.Expression) -> dict[str, frozenset[str]]:
    """Per model whose replaced rows a SELECT reads, the names of the columns it may read of them (lower case), or
    "*" when it reads them whole (a star, a NATURAL join).

    Every name a query reading them uses counts, anywhere in it (HAVING, QUALIFY, USING, a subquery), unqualified or
    qualified by their alias: a name that turns out to be another table's costs the kept rows nothing (only the
    model's own columns are kept), one missed would fail the reader's build, or bind its name elsewhere."""
    read: dict[str, set[str]] = {}
    for scope in traverse_scope(tree):
        for alias, (_, source) in scope.selected_sources.items():
            if isinstance(source, exp.Table) and source.db == REPLACED_SCHEMA:
                columns = read.setdefault(model_of(f"{source.db}.{source.name}"), set())
                columns |= _names_read(scope.expression, alias.lower())
    return {name: _all_or(columns - {CHANGED_AT}) for name, columns in read.items()}


# What reads columns without naming them: DuckDB's COLUMNS('regex' | lambda | *) and positions (#2).
_UNNAMED_COLUMNS = (exp.Columns, exp.PositionalColumn)


def _names_read(query: exp.Expression, alias: str) -> set[str]:
    names = set()
    for column in query.find_all(exp.Column):
        if column.table.lower() not in ("", alias):
            continue
        name = column.name.lower()
        is_whole_row = isinstance(column.this, exp.Star) or (not column.table and name == alias)  # c.*, to_json(c)
        names.add("*" if is_whole_row else name)
    if isinstance(query, exp.Select) and any(isinstance(e, exp.Star) for e in query.expressions):
        names.add("*")
    if query.find(*_UNNAMED_COLUMNS):
        names.add("*")
    for join in query.args.get("joins") or []:
        if join.method == "NATURAL":
            names.add("*")
        names |= {identifier.name.lower() for identifier in join.args.get("using") or []}
    return names


def model_of(replaced: str) -> str:
    """The model whose replaced rows table ``replaced`` keeps (``changes.marts__x`` keeps ``marts.x``'s)."""
    return replaced.split(".", 1)[1].replace("__", ".", 1)


def replaced_table(model: str) -> str:
    """Where the rows an incremental run of ``model`` replaced are kept."""
    return f"{REPLACED_SCHEMA}.{model.replace('.', '__')}"


def key_columns(unique_key: str) -> list[str]:
    return [column.strip() for column in unique_key.split(",")]


def key_sql(unique_key: str) -> str:
    """The unique_key as the left side of ``in (select <its columns> ...)``: a column, or a row of columns."""
    columns = key_columns(unique_key)
    return columns[0] if len(columns) == 1 else f"({', '.join(columns)})"


def key_text_sql(unique_key: str) -> str:
    """The unique_key as the text ``ops.model_changes.key`` holds: the value, or JSON of several columns."""
    columns = key_columns(unique_key)
    return f"cast({columns[0]} as varchar)" if len(columns) == 1 else f"to_json(struct_pack({', '.join(columns)}))"


def changed_keys_sql(unique_key: str, types: Mapping[str, str]) -> str:
    """A query of the keys of model ``?`` changed after ``?``, as the unique_key's columns typed as ``types``."""
    columns = key_columns(unique_key)
    changed = "from ops.model_changes where model = ? and changed_at > ?"
    if len(columns) == 1:
        return f"select distinct cast(key as {types[columns[0]]}) as {columns[0]} {changed}"
    structure = sql_literal(json.dumps({column: types[column] for column in columns}))
    return f"select distinct k.* from (select json_transform(key, {structure}) as k {changed})"


def reset(con: duckdb.DuckDBPyConnection, model: str, unique_key: str, *, keep_columns: frozenset[str]) -> None:
    """After a full build: nothing replaced is kept (its readers rebuild in full)."""
    if keep_columns:
        _create_kept(con, model, _kept_columns(con, model, unique_key, keep_columns))
    else:
        con.execute(f"drop table if exists {replaced_table(model)}")


def record(
    con: duckdb.DuckDBPyConnection,
    model: str,
    unique_key: str,
    changed_at: dt.datetime,
    keys: str,
    *,
    keep_columns: frozenset[str],
    replaced: str,
) -> None:
    """Log the keys in table ``keys`` (the unique_key's columns); with ``keep_columns`` ("*": all), keep those
    columns and the key of the model's rows for them too, before they go, from ``replaced``: a table of their row ids
    (``row_id``, :func:`row_ids_of_keys`). Only what a reader reads is kept: copying the old versions of whole rows
    spread over the table took 0.35 s a model in a 1% increment at 5M rows, and fct_transactions' whole rows 0.6 s
    of the insert and its commit, where monthly_spend_by_category reads three columns of them."""
    con.execute(
        f"insert into ops.model_changes (model, changed_at, key)"
        f" select distinct ?, ?, {key_text_sql(unique_key)} from {keys}",
        [model, changed_at],
    )
    kept = replaced_table(model)
    if not keep_columns:
        if _column_names(con, kept):  # rows of it are kept for readers, but none of this run's: they miss them
            _complete_from(con, model, changed_at + dt.timedelta(microseconds=1))
        return
    kept_columns = _kept_columns(con, model, unique_key, keep_columns)
    if _column_names(con, kept) != [*kept_columns, CHANGED_AT]:
        # None kept yet, or other columns (a reader's SQL changed): its readers last read rows it no longer has
        _create_kept(con, model, kept_columns)
        _complete_from(con, model, changed_at)
    con.execute(
        f"insert into {kept} select {', '.join(kept_columns)}, ?::timestamptz from {model}"
        f" where rowid in (select row_id from {replaced})",
        [changed_at],
    )


def row_ids_of_keys(con: duckdb.DuckDBPyConnection, table: str, unique_key: str, keys: str, into: str) -> None:
    """Table ``into`` (``row_id``): the row ids of ``table``'s rows whose key is in table ``keys``, found from the
    key columns alone. Then only those rows are read whole, and an increment's kept copy and its delete share one
    scan of the keys: each costs about 0.1 s at 5M rows, a delete by row id 0.03 s."""
    con.execute(
        f"create or replace temp table {into} as select rowid as row_id from {table}"
        f" where {key_sql(unique_key)} in (select {', '.join(key_columns(unique_key))} from {keys})"
    )


def _kept_columns(con: duckdb.DuckDBPyConnection, model: str, unique_key: str, wanted: frozenset[str]) -> list[str]:
    """The model's columns its kept rows hold: its key and those ``wanted`` ("*": all), in the model's order."""
    wanted = {name.lower() for name in wanted | set(key_columns(unique_key))}  # DuckDB's names ignore case
    return [column for column in _column_names(con, model) if "*" in wanted or column.lower() in wanted]


def _column_names(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [name for name, _ in table_columns(con, table)]


def _create_kept(con: duckdb.DuckDBPyConnection, model: str, columns: list[str]) -> None:
    con.execute(
        f"create or replace table {replaced_table(model)} as"
        f" select {', '.join(columns)}, cast(null as timestamptz) as {CHANGED_AT} from {model} limit 0"
    )


def complete_since(con: duckdb.DuckDBPyConnection, models: Iterable[str], since: dt.datetime) -> bool:
    """Whether every change of each of ``models`` after ``since`` is still logged: none of their incremental runs after
    ``since`` began before their changes were kept from (``ops.model_changes_kept``: pruned before, or kept with other
    columns before)."""
    ((incomplete,),) = con.execute(
        """
        select count(*) from ops.model_changes_kept as k
        join ops.model_runs as r
            on r.model = k.model and r.mode = 'incremental' and r.started_at > $since and r.started_at < k.kept_since
        where k.model in (select unnest($models::varchar[]))
        """,
        {"models": sorted(models), "since": since},
    ).fetchall()
    return not incomplete


def rebuilt_since(con: duckdb.DuckDBPyConnection, models: Iterable[str], since: dt.datetime) -> bool:
    """Whether one of ``models`` was built in full after ``since``, or its changes since then were pruned."""
    models = sorted(models)
    return built_in_full_since(con, models, since) or not complete_since(con, models, since)


def built_in_full_since(con: duckdb.DuckDBPyConnection, models: Iterable[str], since: dt.datetime) -> bool:
    """Whether one of ``models`` was built in full after ``since``."""
    ((full,),) = con.execute(
        "select count(*) from ops.model_runs where model in (select unnest(?)) and mode = 'full' and started_at > ?",
        [sorted(models), since],
    ).fetchall()
    return bool(full)


def prune(con: duckdb.DuckDBPyConnection, horizons: Mapping[str, dt.datetime]) -> None:
    """Forget each model's changes from before its horizon: the oldest point any of its readers last read from."""
    existing = {name for (name,) in con.execute(
        "select schema_name || '.' || table_name from duckdb_tables() where schema_name = ?", [REPLACED_SCHEMA]
    ).fetchall()}  # fmt: skip
    for model, horizon in horizons.items():
        con.execute("delete from ops.model_changes where model = ? and changed_at < ?", [model, horizon])
        if replaced_table(model) in existing:
            con.execute(f"delete from {replaced_table(model)} where changed_at < ?", [horizon])
        _complete_from(con, model, horizon)


def _complete_from(con: duckdb.DuckDBPyConnection, model: str, since: dt.datetime) -> None:
    """Note that the changes of ``model`` are complete only after ``since`` (:func:`complete_since`)."""
    con.execute(
        """
        insert into ops.model_changes_kept values ($model, $at)
        on conflict (model) do update set kept_since = greatest(kept_since, excluded.kept_since)
        """,
        {"model": model, "at": since},
    )


def read_since(con: duckdb.DuckDBPyConnection, model: str, reads: Iterable[str]) -> dt.datetime | None:
    """Since when the next incremental run of ``model`` reads what changed: its last start, or the last start then of
    a model it ``reads`` when earlier; None when it never ran (or a model it reads first ran after it).

    Not its own last start alone: staging hands on raw's ``loaded_at``, and a run of the marts alone (a subset) sees
    staging as it was at staging's last start. A row loaded after that but staged only later carries a ``loaded_at``
    older than the marts' last start, and an increment from there would never read it."""
    if (last := last_start(con, model)) is None:
        return None
    upstream = con.execute(
        "select max(started_at) filter (started_at <= $last) from ops.model_runs"
        " where model in (select unnest($reads::varchar[])) and model <> $model group by model",
        {"last": last, "reads": sorted(reads), "model": model},
    ).fetchall()
    if any(start is None for (start,) in upstream):
        return None
    return min([last, *(start for (start,) in upstream)])


def last_start(con: duckdb.DuckDBPyConnection, model: str) -> dt.datetime | None:
    """The start of the model's last run; None: it never ran."""
    ((last,),) = con.execute("select max(started_at) from ops.model_runs where model = ?", [model]).fetchall()
    return last


def last_starts(con: duckdb.DuckDBPyConnection) -> dict[str, dt.datetime]:
    """The start of each model's last run."""
    return dict(con.execute("select model, max(started_at) from ops.model_runs group by model").fetchall())
