"""A sandbox session starts the data directory afresh, and never wipes a warehouse it did not build."""

import subprocess
import sys

import pytest

from mx_pipeline import cli, definitions, sandbox_session, settings

SESSION_STATE = [
    "warehouse.duckdb",
    "warehouse.duckdb.wal",
    "analytics.duckdb",
    "links.sqlite",
    "links.sqlite-wal",
    "spool/member/1.json",
    "landing/transactions/run=1/member=MBR-1/manifest.json",  # landed, not loaded yet: it names sandbox guids
    "dagster_home/history/runs.db",
    "dagster_home/schedules/schedules.db",
]
KEPT = ["dagster_home/dagster.yaml", ".link_secret", "reference/demo_users.csv"]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    return tmp_path


def _write(data, names):
    for name in names:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(name)


def test_a_sandbox_session_clears_the_last_sessions_state_and_keeps_config_and_secrets(data):
    assert sandbox_session.start_afresh() == data / "warehouse.duckdb"  # a fresh directory: nothing to clear
    _write(data, SESSION_STATE + KEPT)
    sandbox_session.start_afresh()
    assert [name for name in SESSION_STATE if (data / name).exists()] == []
    assert [(data / name).read_text() for name in KEPT] == KEPT
    assert (data / sandbox_session.MARKER).exists()


def test_a_warehouse_no_sandbox_session_built_is_never_wiped(data):
    _write(data, ["warehouse.duckdb", "links.sqlite"])
    with pytest.raises(sandbox_session.NotSandboxData, match="set MX_PIPELINE_DATA_DIR to another directory"):
        sandbox_session.start_afresh()
    assert (data / "warehouse.duckdb").read_text() == "warehouse.duckdb"
    assert (data / "links.sqlite").exists()
    assert not (data / sandbox_session.MARKER).exists()


def test_real_mx_clears_what_the_sandbox_built_and_leaves_real_data_alone(data):
    sandbox_session.start_afresh()
    _write(data, SESSION_STATE)
    assert sandbox_session.leave_the_sandbox() is True
    assert [name for name in SESSION_STATE if (data / name).exists()] == []
    assert not (data / sandbox_session.MARKER).exists()
    _write(data, ["warehouse.duckdb"])  # now real MX's
    assert sandbox_session.leave_the_sandbox() is False
    assert (data / "warehouse.duckdb").exists()
    with pytest.raises(sandbox_session.NotSandboxData):
        sandbox_session.start_afresh()


def test_a_running_sessions_data_is_never_wiped_by_another_session(data):
    # Another session on this data dir (a `make dev` still running, while `make demo` starts on another port).
    running = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mx_pipeline import sandbox_session as s; s.start_afresh();"
         " print('started', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert running.stdout.readline() == "started\n"
        _write(data, SESSION_STATE)
        with pytest.raises(sandbox_session.DataDirInUse, match="in use by another session"):
            sandbox_session.start_afresh()
        with pytest.raises(sandbox_session.DataDirInUse):
            sandbox_session.leave_the_sandbox()  # real MX would clear the running sandbox session's data
        assert [name for name in SESSION_STATE if not (data / name).exists()] == []
    finally:
        running.communicate(timeout=60)  # stdin closed: the session ends
    sandbox_session.start_afresh()  # once it has ended, the next session starts afresh
    assert [name for name in SESSION_STATE if (data / name).exists()] == []


def test_the_code_location_on_real_mx_refuses_a_data_dir_the_sandbox_built(data, monkeypatch):
    # Started on MX without make dev (dg dev, a daemon): real data written beside the marker would be wiped by
    # the next sandbox session, so the code location refuses until dev or demo on MX has cleared it.
    sandbox_session.start_afresh()
    monkeypatch.setenv("MX_CLIENT_ID", "my-client")
    monkeypatch.setenv("MX_API_KEY", "my-key")
    monkeypatch.setenv("MX_BASE_URL", "https://int-api.mx.com")

    with pytest.raises(settings.ConfigError, match="MX_PIPELINE_DATA_DIR") as refused:
        definitions.defs()
    assert str(data) in str(refused.value) and "make dev" in str(refused.value)


def test_events_no_sandbox_session_spooled_are_never_wiped(data):
    # The connect service on MX spools MX's events before any warehouse exists.
    _write(data, ["links.sqlite", "spool/member/1.json"])
    with pytest.raises(sandbox_session.NotSandboxData, match="spool was not made on the built-in sandbox"):
        sandbox_session.start_afresh()
    assert (data / "links.sqlite").exists() and (data / "spool/member/1.json").exists()


def test_the_link_store_an_earlier_demo_left_alone_does_not_stop_a_session(data):
    (data / "spool").mkdir()  # empty: nothing spooled
    _write(data, ["links.sqlite"])  # every `make demo` before markers existed left one, and nothing else here
    sandbox_session.start_afresh()
    assert not (data / "links.sqlite").exists() and (data / sandbox_session.MARKER).exists()


def test_the_connect_service_on_real_mx_refuses_a_data_dir_the_sandbox_built(data, monkeypatch, capsys):
    sandbox_session.start_afresh()
    monkeypatch.setenv("MX_CLIENT_ID", "my-client")
    monkeypatch.setenv("MX_API_KEY", "my-key")
    served = []
    monkeypatch.setattr("mx_pipeline.connect.server.serve", lambda *args: served.append(args))

    assert cli.main(["serve"]) == 2
    assert served == []
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mx-pipeline: ") and "MX_PIPELINE_DATA_DIR" in line


def test_dagster_history_and_analysts_files_no_sandbox_session_made_are_never_wiped(data):
    # MX_PIPELINE_DATA_DIR set to a directory that holds another project's Dagster home, or an analytics file.
    for other in (["dagster_home/history/runs.db"], ["analytics.duckdb"]):
        _write(data, other)
        with pytest.raises(sandbox_session.NotSandboxData, match="was not made on the built-in sandbox"):
            sandbox_session.start_afresh()
        assert (data / other[0]).read_text() == other[0]
        (data / other[0]).unlink()
