"""``mx-pipeline demo`` runs the real ingest on the built-in sandbox and says what landed where."""

from mx_pipeline.demo import DEMO_PASSWORDS, run_demo


def test_the_demo_ingests_everything_and_prints_a_summary(tmp_path, monkeypatch, capsys):
    for name in ("MX_CLIENT_ID", "MX_API_KEY", "MX_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    assert run_demo() == 0
    out = capsys.readouterr().out
    assert f"{len(DEMO_PASSWORDS)} of {len(DEMO_PASSWORDS)} connections finished aggregating" in out
    assert "members by status: CHALLENGED 1, CONNECTED 3, DENIED 1" in out
    assert "quarantined rows:  0" in out
    assert str(tmp_path / "demo" / "warehouse.duckdb") in out
    assert "make dev" in out
