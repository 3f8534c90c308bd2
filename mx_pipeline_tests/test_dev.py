"""``mx-pipeline dev`` refuses, in one line and before it starts or clears anything, what would lose data."""

import socket

import pytest

from mx_pipeline import sandbox_session, settings
from mx_pipeline.dev import run_dev
from mx_pipeline.mx import AuthError
from mx_pipeline.sandbox.server import running_sandbox


def _one_line(err: str) -> bool:
    return err.startswith("mx-pipeline dev: ") and err.count("\n") == 1 and "Traceback" not in err


def test_on_the_sandbox_dev_refuses_a_warehouse_it_did_not_build(on_the_sandbox, capsys):
    (on_the_sandbox / "warehouse.duckdb").write_bytes(b"real MX data")
    assert run_dev() == 1
    out, err = capsys.readouterr()
    assert _one_line(err) and "set MX_PIPELINE_DATA_DIR to another directory" in err
    assert "starting:" not in out
    assert (on_the_sandbox / "warehouse.duckdb").read_bytes() == b"real MX data"


def test_dev_leaves_a_running_session_alone(on_the_sandbox, monkeypatch, capsys):
    sandbox_session.start_afresh()
    (on_the_sandbox / "warehouse.duckdb").write_bytes(b"the running session's sandbox data")
    with socket.socket() as ui:
        ui.bind(("127.0.0.1", 0))
        ui.listen()
        port = ui.getsockname()[1]
        monkeypatch.setenv("MX_PIPELINE_UI_PORT", str(port))
        assert run_dev() == 1
    out, err = capsys.readouterr()
    assert _one_line(err) and f"something already listens at http://127.0.0.1:{port}: stop it first" in err
    assert "starting:" not in out
    assert (on_the_sandbox / "warehouse.duckdb").read_bytes() == b"the running session's sandbox data"


def test_on_mx_dev_asks_whether_mx_takes_the_credentials_before_it_starts_anything(on_the_sandbox, monkeypatch, capsys):
    with running_sandbox() as mx:  # an MX that never issued this key
        monkeypatch.setenv("MX_BASE_URL", mx.base_url)
        monkeypatch.setenv("MX_CLIENT_ID", settings.SANDBOX_CLIENT_ID)
        monkeypatch.setenv("MX_API_KEY", "a-key-mx-never-issued")
        with pytest.raises(AuthError, match="MX_API_KEY") as refused:  # mx-pipeline prints it as one line, exit 2
            run_dev()
    assert "a-key-mx-never-issued" not in str(refused.value)
    assert "starting:" not in capsys.readouterr().out
    made = {path.name for path in on_the_sandbox.iterdir()}
    assert made <= {".link_secret"}  # no warehouse, marker, spool or Dagster home: nothing cleared, made or started


def test_dev_creates_the_dagster_storage_before_it_starts_the_processes_that_open_it(on_the_sandbox, monkeypatch):
    """Dagster's first-time SQLite setup, run by the UI, the daemon and the first run at once, fails one of them
    ("table alembic_version already exists")."""
    found_at_first_start = []

    def start(command, env):
        home = settings.dagster_home()
        found_at_first_start.extend(p.relative_to(home).as_posix() for p in sorted(home.rglob("*.db")))
        raise KeyboardInterrupt  # Ctrl-C before anything runs

    monkeypatch.setattr("mx_pipeline.dev._start", start)
    assert run_dev() == 0
    assert {"history/runs.db", "schedules/schedules.db"} <= set(found_at_first_start)
