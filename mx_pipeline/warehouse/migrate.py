"""Schema migrations: the ``migrations/*.sql`` files, applied once each, in name order."""

from functools import cache
from pathlib import Path

import duckdb

MIGRATIONS = Path(__file__).parent / "migrations"


@cache
def _latest(folder: Path) -> tuple[int, str]:
    """(how many migrations there are, the last one's version): read once per process."""
    versions = sorted(script.stem for script in folder.glob("*.sql"))
    return len(versions), versions[-1]


def ensure_migrated(con: duckdb.DuckDBPyConnection) -> list[str]:
    """:func:`apply_migrations` when the file lacks any: one query on a file already migrated (every connect
    pays it), the full look-up only on a new or older file."""
    try:
        # fetchall: a result left half-read keeps DuckDB 2 from registering a frame on the connection
        ((count, latest),) = con.execute("select count(*), max(version) from ops.schema_migrations").fetchall()
    except duckdb.CatalogException:  # a new file
        return apply_migrations(con)
    if (count, latest) == _latest(MIGRATIONS):
        return []
    return apply_migrations(con)


def apply_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply every migration not yet recorded in ``ops.schema_migrations``; return the versions applied."""
    applied = _applied_versions(con)
    newly_applied = []
    for script in sorted(MIGRATIONS.glob("*.sql")):
        if script.stem in applied:
            continue
        con.execute("begin transaction")
        con.execute(script.read_text())
        con.execute("insert into ops.schema_migrations (version) values (?)", [script.stem])
        con.execute("commit")
        newly_applied.append(script.stem)
    if newly_applied:
        # Into the file at once: replaying a migration from the write-ahead log after a crash can fail for good
        # (DuckDB 2 then tries to download core_functions, built in, to bind 0008's `default current_timestamp`).
        con.execute("checkpoint")
    return newly_applied


def _applied_versions(con: duckdb.DuckDBPyConnection) -> set[str]:
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        ["ops", "schema_migrations"],
    ).fetchone()[0]
    if not exists:
        return set()
    return {version for (version,) in con.execute("select version from ops.schema_migrations").fetchall()}
