import duckdb

from mx_pipeline.warehouse import migrate
from mx_pipeline.warehouse.connection import Warehouse
from mx_pipeline.warehouse.migrate import MIGRATIONS, apply_migrations, ensure_migrated


def test_first_connection_creates_the_four_layers_and_the_tables(warehouse):
    with warehouse.connect() as con:
        schemas = {s for (s,) in con.execute("select schema_name from information_schema.schemata").fetchall()}
        tables = {
            f"{s}.{t}"
            for s, t in con.execute("select table_schema, table_name from information_schema.tables").fetchall()
        }
    assert {"raw", "staging", "marts", "ops"} <= schemas
    assert {"raw.mx_transactions", "ops.quarantine", "ops.api_calls", "ops.member_sync", "ops.end_users"} <= tables


def test_migrations_apply_once(warehouse):
    with warehouse.connect() as con:
        assert apply_migrations(con) == []
        (applied,) = con.execute("select count(*) from ops.schema_migrations").fetchone()
    assert applied == len(list(MIGRATIONS.glob("*.sql")))


class _Counting:
    """A connection that notes each statement it runs."""

    def __init__(self, con, statements):
        self.con, self.statements = con, statements

    def execute(self, sql, *args):
        self.statements.append(sql)
        return self.con.execute(sql, *args)


def test_a_migrated_file_costs_one_query_per_connect(tmp_path):
    with Warehouse(tmp_path / "wh.duckdb").connect():
        pass  # a new file: every migration applied
    statements = []
    with duckdb.connect(str(tmp_path / "wh.duckdb")) as con:
        assert ensure_migrated(_Counting(con, statements)) == []
    assert len(statements) == 1


def test_a_migration_the_file_lacks_is_applied_on_connect(tmp_path, monkeypatch):
    with Warehouse(tmp_path / "wh.duckdb").connect():
        pass
    newer = tmp_path / "migrations"
    newer.mkdir()
    for script in MIGRATIONS.glob("*.sql"):
        (newer / script.name).write_text(script.read_text())
    (newer / "9999_later.sql").write_text("create table ops.later (id integer);")
    monkeypatch.setattr(migrate, "MIGRATIONS", newer)
    with Warehouse(tmp_path / "wh.duckdb").connect() as con:
        assert con.execute("select count(*) from ops.later").fetchone() == (0,)
        assert con.execute("select max(version) from ops.schema_migrations").fetchone() == ("9999_later",)
