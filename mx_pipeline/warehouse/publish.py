"""Publish the marts to ``analytics.duckdb`` for analysts: built beside, then renamed into place.

Analysts never open the warehouse itself (DuckDB would block the pipeline's single writer). They read a copy
of the marts that is rebuilt after each successful model run in a new file and swapped in with one rename:
a session that has the old file open keeps reading the old file, whole, and nobody sees half a run.
"""

import os
from pathlib import Path

import duckdb

from mx_pipeline.warehouse.models import sql_literal

PUBLISHED_SCHEMAS = ("marts",)


def publish(con: duckdb.DuckDBPyConnection, target: Path) -> dict[str, int]:
    """Copy every table and view of the published schemas, with their comments, to ``target``; rows per table."""
    target = Path(target)
    building = target.with_name(f".{target.name}.{os.getpid()}.building")
    building.unlink(missing_ok=True)
    tables = con.execute(
        f"""
        select schema_name, table_name, comment from duckdb_tables()
        where database_name = current_database() and schema_name in ({", ".join("?" for _ in PUBLISHED_SCHEMAS)})
        union all
        select schema_name, view_name, comment from duckdb_views()
        where database_name = current_database() and schema_name in ({", ".join("?" for _ in PUBLISHED_SCHEMAS)})
        order by 1, 2
        """,
        [*PUBLISHED_SCHEMAS, *PUBLISHED_SCHEMAS],
    ).fetchall()
    counts = {}
    con.execute(f"attach {sql_literal(str(building))} as published")
    try:
        for schema in PUBLISHED_SCHEMAS:
            con.execute(f"create schema if not exists published.{schema}")
        for schema, table, comment in tables:
            con.execute(f"create table published.{schema}.{table} as select * from {schema}.{table}")
            if comment:
                con.execute(f"comment on table published.{schema}.{table} is {sql_literal(comment)}")
            for column, column_comment in con.execute(
                "select column_name, comment from duckdb_columns() where database_name = current_database()"
                " and schema_name = ? and table_name = ? and comment is not null",
                [schema, table],
            ).fetchall():
                con.execute(f"comment on column published.{schema}.{table}.{column} is {sql_literal(column_comment)}")
            (counts[f"{schema}.{table}"],) = con.execute(f"select count(*) from {schema}.{table}").fetchone()
    finally:
        con.execute("detach published")
    os.replace(building, target)  # atomic: readers see the old file or the new one, never a mix
    return counts
