"""``mx-pipeline demo`` runs the real ingest on the built-in sandbox and says what landed where."""

from mx_pipeline.demo import run_demo
from mx_pipeline.demo_connections import DEMO_CONNECTIONS


def test_the_demo_ingests_everything_and_prints_a_summary(on_the_sandbox, capsys):
    data = on_the_sandbox
    assert run_demo() == 0
    out = capsys.readouterr().out
    assert f"{len(DEMO_CONNECTIONS)} of {len(DEMO_CONNECTIONS)} connections finished aggregating" in out
    assert "members by status: CHALLENGED 1, CONNECTED 4, DEGRADED 1, DENIED 1" in out
    assert "quarantined rows:  0" in out
    # The one layout `make dev` and the README use: the warehouse and the analysts' file in the data dir itself.
    assert f"warehouse:         {data / 'warehouse.duckdb'}\n" in out
    assert f"analytics:         {data / 'analytics.duckdb'} " in out
    assert (data / "warehouse.duckdb").exists() and (data / "analytics.duckdb").exists()
    assert not (data / "demo").exists()
    assert "`make dev` opens the same files" in out


def test_on_the_sandbox_the_demo_refuses_to_wipe_a_warehouse_it_did_not_build(on_the_sandbox, capsys):
    real = on_the_sandbox / "warehouse.duckdb"
    real.write_bytes(b"a warehouse built from real MX")
    assert run_demo() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "set MX_PIPELINE_DATA_DIR to another directory" in err
    assert real.read_bytes() == b"a warehouse built from real MX"
