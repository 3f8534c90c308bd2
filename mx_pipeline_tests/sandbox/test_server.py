"""Starting and stopping the sandbox: in-process for tests, and the blocking ``serve`` the CLI calls."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline_tests.contract import MX_MEDIA_TYPE
from mx_pipeline_tests.local_http import free_port

from .conftest import AUTH

REPO = Path(__file__).resolve().parents[2]


def test_running_sandbox_listens_on_a_free_loopback_port_and_stops_cleanly():
    with running_sandbox() as sandbox:
        assert sandbox.base_url.startswith("http://127.0.0.1:")
        assert requests.get(
            sandbox.base_url + "/institutions", auth=AUTH, headers={"Accept": MX_MEDIA_TYPE}, timeout=30
        ).ok
        port = int(sandbox.base_url.rsplit(":", 1)[1])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/institutions", timeout=30)


def test_unknown_options_are_refused():
    with pytest.raises(TypeError, match="agregation_seconds"), running_sandbox(agregation_seconds=1):
        pass


def test_jobs_finish_on_real_time_without_any_request(start_sandbox):
    mx = start_sandbox(freeze_clock=False, aggregation_seconds=0.2, start_time=None)
    user = mx.create_user()
    aggregated = threading.Event()
    mx.sandbox.world.webhook_sink = lambda payload: payload["type"] == "AGGREGATION" and aggregated.set()
    member = mx.create_member(user)["guid"]  # the last request: only the background ticker can end the job
    assert aggregated.wait(timeout=120), "the job never finished"  # a generous bound: the cores may be loaded
    with mx.sandbox.world.lock:
        assert mx.sandbox.world.members[member].connection_status == "CONNECTED"


def _first_answer(url: str, auth: tuple[str, str], what: str) -> requests.Response:
    """The first answer from a process still starting; generous bounds, as a loaded machine starts it slowly."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return requests.get(url, auth=auth, headers={"Accept": MX_MEDIA_TYPE}, timeout=30)
        except requests.ConnectionError:
            assert time.monotonic() < deadline, f"{what} never listened"
            time.sleep(0.1)


def test_serve_blocks_serving_the_api_until_stopped():
    port = free_port()
    code = f"from mx_pipeline.sandbox.server import serve; serve(port={port}, seed=3)"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        response = _first_answer(f"http://127.0.0.1:{port}/institutions/mxbank", AUTH, "serve()")
        assert response.json()["institution"]["code"] == "mxbank"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_cli_sandbox_listens_where_the_environment_says_and_accepts_its_credentials():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MX_")} | {
        "MX_SANDBOX_PORT": str(port),
        "MX_CLIENT_ID": "team-client",
        "MX_API_KEY": "team-key",
    }
    cli = Path(sys.executable).with_name("mx-pipeline")
    process = subprocess.Popen([str(cli), "sandbox"], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/institutions/mxbank"
    try:
        ours = _first_answer(url, ("team-client", "team-key"), "the CLI sandbox on MX_SANDBOX_PORT")
        assert ours.status_code == 200
        assert requests.get(url, auth=AUTH, headers={"Accept": MX_MEDIA_TYPE}, timeout=30).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)
