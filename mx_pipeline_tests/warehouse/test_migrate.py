from mx_pipeline.warehouse.migrate import MIGRATIONS, apply_migrations


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
