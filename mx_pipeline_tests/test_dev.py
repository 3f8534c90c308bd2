"""``mx-pipeline dev`` on the sandbox never wipes a warehouse a sandbox session did not build (it starts nothing)."""

from mx_pipeline.dev import run_dev


def test_on_the_sandbox_dev_refuses_a_warehouse_it_did_not_build_in_one_line(tmp_path, monkeypatch, capsys):
    for name in ("MX_CLIENT_ID", "MX_API_KEY", "MX_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    (tmp_path / "warehouse.duckdb").write_bytes(b"real MX data")
    assert run_dev() == 1
    out, err = capsys.readouterr()
    assert err.startswith("mx-pipeline dev: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "set MX_PIPELINE_DATA_DIR to another directory" in err
    assert "starting:" not in out
    assert (tmp_path / "warehouse.duckdb").read_bytes() == b"real MX data"
