"""bench_models.py's last phase: what an increment of 1% cannot avoid at this size, each part done alone.

The design the issue asks for applies changed keys to tables of millions of rows (staging and the marts by their
unique keys; the analysts' file as a copy that gets the changes, then is renamed). Whatever its SQL, such an
increment pays, for each table it writes: a scan of the key column to find the rows a change replaces, and a
commit of the new rows; and the publish pays the copy of the analysts' file. Here each is done with nothing
else: 1% of a table's rows, sampled, are found by their keys (``model_changes.row_ids_of_keys``, as the models
find them), deleted by row id and inserted again, in one transaction; the analysts' file is copied as the
publish copies it. Their sum is a floor for the increment: no computing of what changed, no joins, no reads of
raw.
"""

import time
from pathlib import Path

import duckdb

from mx_pipeline.defs.resources import WarehouseResource
from mx_pipeline.warehouse.model_changes import key_columns, row_ids_of_keys
from mx_pipeline.warehouse.publish import _copy

WRITTEN = {  # the tables an increment writes by key: their unique keys (dbt_like_sql/)
    "staging.stg_transactions": "transaction_guid",
    "marts.fct_transactions": "transaction_guid",
    "marts.monthly_spend_by_category": "user_guid, month, category_id",
}
PUBLISHED = ("marts.fct_transactions", "marts.monthly_spend_by_category")  # the analysts' file's large tables


def increment_floor(path: Path) -> dict:
    """Seconds of each unavoidable part of a 1% increment on the warehouse at ``path`` and its analysts' file."""
    analytics, copy = path.with_name("analytics.duckdb"), path.with_name("analytics.floor.duckdb")
    started = time.perf_counter()
    _copy(analytics, copy)
    parts = {"copy analytics.duckdb": time.perf_counter() - started}
    with WarehouseResource(path=str(path)).open().connect() as con:  # the models' memory cap
        for table, key in WRITTEN.items():
            parts |= _replace_one_percent(con, table, key)
    with duckdb.connect(str(copy)) as con:
        for table in PUBLISHED:
            parts |= _replace_one_percent(con, table, WRITTEN[table], prefix="analytics ")
    copy.unlink()
    return {"seconds": sum(parts.values()), "parts": {name: round(seconds, 2) for name, seconds in parts.items()}}


def _replace_one_percent(con: duckdb.DuckDBPyConnection, table: str, key: str, prefix: str = "") -> dict[str, float]:
    columns = ", ".join(key_columns(key))
    con.execute(f"create or replace temp table floor_rows as select * from {table} using sample 1 percent (bernoulli)")
    con.execute(f"create or replace temp table floor_keys as select {columns} from floor_rows")
    started = time.perf_counter()
    row_ids_of_keys(con, table, key, "floor_keys", into="floor_row_ids")
    scanned = time.perf_counter()
    con.execute("begin transaction")
    con.execute(f"delete from {table} where rowid in (select row_id from floor_row_ids)")
    con.execute(f"insert into {table} select * from floor_rows")
    con.execute("commit")
    written = time.perf_counter()
    con.execute("drop table floor_rows; drop table floor_keys; drop table floor_row_ids")
    return {f"{prefix}{table}: key scan": scanned - started, f"{prefix}{table}: write 1%": written - scanned}
