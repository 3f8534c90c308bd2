"""What each incremental model run replaced, so its readers apply only that.

A run logs every key whose rows it deleted or recomputed (``ops.model_changes``) and, when a model reads them,
keeps those rows as they were in ``changes.<schema>__<table>`` (with ``changed_at``, the run's start). An
incremental model downstream reads them to find what its own rows depend on (``monthly_spend_by_category``
re-sums the months a transaction left), and the analysts' file (publish.py) applies exactly those keys. A full
build logs nothing and empties the kept rows: a reader whose upstream model was rebuilt in full since it last
read rebuilds in full, and so does one that last read before the changes it needs were pruned
(``ops.model_changes_kept``).
"""

import datetime as dt
import json
from collections.abc import Iterable, Mapping

import duckdb

from mx_pipeline.warehouse.sql_literals import sql_literal

CHANGES_TABLE = "ops.model_changes"
REPLACED_SCHEMA = "changes"


def models_read(tables: frozenset[str]) -> frozenset[str]:
    """``tables`` with the change log read as the models it logs (``changes.marts__x`` is ``marts.x``)."""
    return frozenset(
        _model_of(table) if table.startswith(f"{REPLACED_SCHEMA}.") else table
        for table in tables
        if table != CHANGES_TABLE
    )


def replaced_rows_read(tables: frozenset[str]) -> frozenset[str]:
    """The models whose replaced rows (``changes.<schema>__<table>``) ``tables`` include."""
    return frozenset(_model_of(table) for table in tables if table.startswith(f"{REPLACED_SCHEMA}."))


def _model_of(replaced: str) -> str:
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


def reset(con: duckdb.DuckDBPyConnection, model: str) -> None:
    """After a full build: nothing replaced is kept (its readers rebuild in full); the kept rows take its columns."""
    con.execute(
        f"create or replace table {replaced_table(model)} as"
        f" select *, cast(null as timestamptz) as changed_at from {model} limit 0"
    )


def record(
    con: duckdb.DuckDBPyConnection, model: str, unique_key: str, changed_at: dt.datetime, keys: str, *, keep_rows: bool
) -> None:
    """Log the keys in table ``keys`` (the unique_key's columns); with ``keep_rows``, keep the model's rows for them
    too, before they go (only a model whose replaced rows another reads needs them: copying the old versions of
    rows spread over the whole table took 0.35 s a model in a 1% increment at 5M rows)."""
    columns, key = ", ".join(key_columns(unique_key)), key_sql(unique_key)
    con.execute(
        f"insert into ops.model_changes (model, changed_at, key)"
        f" select distinct ?, ?, {key_text_sql(unique_key)} from {keys}",
        [model, changed_at],
    )
    if not keep_rows:
        return
    kept = replaced_table(model)
    con.execute(f"create table if not exists {kept} as select *, null::timestamptz as changed_at from {model} limit 0")
    # Their row ids first, from the key columns alone: then only those rows are read whole.
    con.execute(
        f"create or replace temp table model_replaced as"
        f" select rowid as row_id from {model} where {key} in (select {columns} from {keys})"
    )
    con.execute(
        f"insert into {kept} by name select *, ?::timestamptz as changed_at from {model}"
        " where rowid in (select row_id from model_replaced)",
        [changed_at],
    )
    con.execute("drop table model_replaced")


def complete_since(con: duckdb.DuckDBPyConnection, model: str, since: dt.datetime) -> bool:
    """Whether every change of ``model`` after ``since`` is still logged (none was pruned)."""
    kept = con.execute("select kept_since from ops.model_changes_kept where model = ?", [model]).fetchone()
    return kept is None or since >= kept[0]


def rebuilt_since(con: duckdb.DuckDBPyConnection, models: Iterable[str], since: dt.datetime) -> bool:
    """Whether one of ``models`` was built in full after ``since``, or its changes since then were pruned."""
    models = sorted(models)
    (full,) = con.execute(
        "select count(*) from ops.model_runs where model in (select unnest(?)) and mode = 'full' and started_at > ?",
        [models, since],
    ).fetchone()
    return bool(full) or not all(complete_since(con, model, since) for model in models)


def prune(con: duckdb.DuckDBPyConnection, horizons: Mapping[str, dt.datetime]) -> None:
    """Forget each model's changes from before its horizon: the oldest point any of its readers last read from."""
    existing = {name for (name,) in con.execute(
        "select schema_name || '.' || table_name from duckdb_tables() where schema_name = ?", [REPLACED_SCHEMA]
    ).fetchall()}  # fmt: skip
    for model, horizon in horizons.items():
        con.execute("delete from ops.model_changes where model = ? and changed_at < ?", [model, horizon])
        if replaced_table(model) in existing:
            con.execute(f"delete from {replaced_table(model)} where changed_at < ?", [horizon])
        con.execute(
            """
            insert into ops.model_changes_kept values ($model, $at)
            on conflict (model) do update set kept_since = greatest(kept_since, excluded.kept_since)
            """,
            {"model": model, "at": horizon},
        )


def last_starts(con: duckdb.DuckDBPyConnection) -> dict[str, dt.datetime]:
    """The start of each model's last run."""
    return dict(con.execute("select model, max(started_at) from ops.model_runs group by model").fetchall())
