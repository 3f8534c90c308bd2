"""What each incremental model run replaced (``ops.model_changes``), so its readers apply only that.

A run logs every key whose rows it deleted or recomputed, with those rows as they were (``old_row``). An
incremental model downstream reads them to find what its own rows depend on (``monthly_spend_by_category``
re-adds the months a transaction moved out of), and the analysts' file (publish.py) applies exactly those keys.
A full build logs nothing: a reader whose upstream model was rebuilt in full since it last read rebuilds in full,
and so does one that last read before the changes it needs were pruned (``ops.model_changes_kept``).
"""

import datetime as dt
from collections.abc import Iterable, Mapping

import duckdb

CHANGES_TABLE = "ops.model_changes"


def key_sql(unique_key: str) -> str:
    """The unique_key as one SQL expression: its column, or a struct of its columns when it names several."""
    columns = [column.strip() for column in unique_key.split(",")]
    return columns[0] if len(columns) == 1 else f"struct_pack({', '.join(columns)})"


def key_text_sql(unique_key: str) -> str:
    """The unique_key as the text ``ops.model_changes.key`` holds."""
    return f"cast({key_sql(unique_key)} as varchar)"


def record(con: duckdb.DuckDBPyConnection, model: str, unique_key: str, changed_at: dt.datetime, keys: str) -> None:
    """Log the keys in table ``keys`` (the unique_key's columns) and the model's rows for them, before they go."""
    key = key_sql(unique_key)
    con.execute(
        f"""
        insert into ops.model_changes
        select $model, $at, cast(k as varchar), null from (select distinct {key} as k from {keys})
        union all
        select $model, $at, {key_text_sql(unique_key)}, to_json(old)
        from {model} as old
        where {key} in (select {key} from {keys})
        """,
        {"model": model, "at": changed_at},
    )


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
    for model, horizon in horizons.items():
        con.execute("delete from ops.model_changes where model = ? and changed_at < ?", [model, horizon])
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
