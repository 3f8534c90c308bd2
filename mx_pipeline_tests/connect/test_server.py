"""``mx-pipeline serve`` as MX sees it: a real process whose 204 means the event is already safe on disk."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from mx_pipeline.connect import server
from mx_pipeline.connect.spool import Spool
from mx_pipeline.mx.shared_budget import SharedBudget
from mx_pipeline_tests.local_http import free_port

REPO = Path(__file__).resolve().parents[2]


def test_a_webhook_acknowledged_with_204_survives_the_service_being_killed_at_once(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MX_")} | {
        "MX_PIPELINE_DATA_DIR": str(tmp_path),
        "MX_PIPELINE_CONNECT_PORT": str(port),
        "MX_WEBHOOK_USERNAME": "mx-hooks",
        "MX_WEBHOOK_PASSWORD": "hook-password",
    }
    service = subprocess.Popen(
        [str(Path(sys.executable).with_name("mx-pipeline")), "serve"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    body = {"type": "CONNECTION_STATUS", "action": "CHANGED", "connection_status": "DENIED",
            "user_guid": "USR-1", "member_guid": "MBR-1"}  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # generous: a loaded machine starts a process slowly
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "mx-pipeline serve never listened"
                time.sleep(0.1)
        answer = requests.post(
            f"http://127.0.0.1:{port}/webhooks/mx", json=body, auth=("mx-hooks", "hook-password"), timeout=30
        )
        service.send_signal(signal.SIGKILL)  # no shutdown, no flush: only what was fsynced before the 204 remains
    finally:
        service.kill()
        service.wait()
    assert answer.status_code == 204
    [event] = Spool(tmp_path / "spool").pending()
    assert event.kind == "mx_webhook" and json.loads(event.body) == body


def test_the_connect_service_spends_the_mx_budget_every_worker_shares_when_one_is_configured(
    tmp_path, monkeypatch, postgres
):
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MX_PIPELINE_RATE_BUDGET_URL", postgres.url(postgres.create_database()))
    clients = []
    monkeypatch.setattr(server.MxClient, "from_settings", lambda configured, **options: clients.append(options))

    server.build_app()

    [options] = clients
    assert isinstance(options["limiter"]._shared, SharedBudget)
    monkeypatch.delenv("MX_PIPELINE_RATE_BUDGET_URL")
    assert server._limiter()._shared is None  # unset: the service paces MX by itself
