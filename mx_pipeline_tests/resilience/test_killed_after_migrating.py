"""A process killed right after it migrated the warehouse leaves a file the next process can open.

DuckDB replays its write-ahead log on open, and replaying a migration's ``alter table ... default
current_timestamp`` (0008) makes DuckDB 2 try to download an extension it has built in; with no network the
warehouse could then never be opened again, and every later run failed. Found by killing a first ingest run
in its first step (``test_dead_run.py``).
"""

import subprocess
import sys

from mx_pipeline.warehouse.connection import connect
from mx_pipeline.warehouse.migrate import MIGRATIONS

KILLED_WHILE_CONNECTED = """
import os, signal, sys
from mx_pipeline.warehouse.connection import connect
with connect(sys.argv[1]):
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_warehouse_whose_first_writer_was_killed_opens_with_every_migration(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_CONNECTED, str(path)], check=False)
    assert killed.returncode == -9

    with connect(path) as con:
        applied = {v for (v,) in con.execute("select version from ops.schema_migrations").fetchall()}
        (first_fetched_at,) = con.execute(
            "select count(*) from information_schema.columns"
            " where table_name = 'mx_transactions' and column_name = 'first_fetched_at'"
        ).fetchone()
    assert applied == {script.stem for script in MIGRATIONS.glob("*.sql")}
    assert first_fetched_at == 1
