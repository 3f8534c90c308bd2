"""End to end in a real headless Chromium: Connect in the sandbox's widget, MFA in update mode, reconnect mode.

The whole product runs here: the sandbox (MX) posts its webhooks to the connect service, the end user clicks
through the widget pages, the connect_events sensor drains the spool, and the pipeline's runs land the member
in the warehouse. Screenshots of every step go to ``data/artifacts/browser/``.
"""

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests
import uvicorn

from mx_pipeline import definitions, settings
from mx_pipeline.connect.app import ConnectService, create_app
from mx_pipeline.connect.links import Links, reconnect_url
from mx_pipeline.connect.spool import Spool
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.defs.jobs import scoped_run_config
from mx_pipeline.defs.lifecycle import sensors
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.mx import MxClient
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse import Warehouse

ARTIFACTS = Path(__file__).resolve().parents[2] / "data" / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no calls home
    "--disable-component-update",
    "--disable-sync",
]
HOOK_USER, HOOK_PASSWORD = "sandbox-webhooks", "e2e-webhook-password"
LOCATION = definitions.defs()


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or CHROMIUM is None:
        reason = "Chromium (Debian's chromium package) and playwright are needed for the browser test"
        if os.environ.get("MX_PIPELINE_REQUIRE_BROWSER"):
            pytest.fail(reason)  # CI installs both: a skip there would hide a broken product
        pytest.skip(reason)
    return sync_playwright


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """An ASGI app on a free loopback port, in a thread, for the browser to reach."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class Product:
    """The sandbox, the connect service and the pipeline, wired as in production."""

    def __init__(self, sandbox, connect_url: str, service: ConnectService, data_dir: Path) -> None:
        self.sandbox, self.connect_url, self.service = sandbox, connect_url, service
        self.spool = service.spool
        self.warehouse = Warehouse(data_dir / "warehouse.duckdb")
        self.resources = {
            **LOCATION.resources,
            "mx": MxResource(
                base_url=sandbox.base_url,
                client_id=settings.SANDBOX_CLIENT_ID,
                api_key=settings.SANDBOX_API_KEY,
                per_member_interval=0.0,
            ),
            "warehouse": WarehouseResource(path=str(self.warehouse.path)),
        }
        self.cursor: str | None = None

    def api(self, path: str, body: dict) -> dict:
        response = requests.post(f"{self.connect_url}/v1{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_for_spooled(self, predicate: Callable[[dict], bool], timeout: float = 20) -> None:
        """Until an event the predicate likes is in the spool (MX's webhooks arrive asynchronously)."""
        deadline = time.monotonic() + timeout
        while not any(predicate(json.loads(e.body)) for e in self.spool.pending()):
            assert time.monotonic() < deadline, "the expected event never reached the spool"
            time.sleep(0.1)

    def sensor_tick_and_runs(self, **gate_config) -> None:
        """One connect_events tick, then each run it requested, in process."""
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(instance=instance, cursor=self.cursor, resources=self.resources)
            result = sensors.connect_events(context)
        assert isinstance(result, dg.SensorResult), result
        self.cursor = result.cursor
        for run in result.run_requests:
            self.run(run.run_config, **gate_config)

    def run(self, run_config: dict, **gate_config) -> None:
        ops = dict(run_config["ops"])
        if gate_config:
            ops["member_lifecycle"] = {"ops": {"status_gate": {"config": gate_config}}}
        ops["raw__mx_users"] = {"config": {"users_csv": "/nonexistent.csv"}}  # users come from the service
        outcome = dg.materialize(
            [*LOCATION.assets, *LOCATION.asset_checks], resources=self.resources, run_config={"ops": ops}
        )
        assert outcome.success

    def member_row(self, member_guid: str) -> tuple:
        with self.warehouse.connect() as con:
            return con.execute(
                """
                select s.connection_status, r.route,
                       (select count(*) from raw.mx_transactions as t where t.member_guid = s.guid)
                from raw.mx_member_status as s join ops.member_routes as r on r.member_guid = s.guid
                where s.guid = ?
                """,
                [member_guid],
            ).fetchone()

    def notification_link(self, member_guid: str, episode: int) -> tuple[str, str]:
        with self.warehouse.connect() as con:
            mode, link_id = con.execute(
                "select connect_mode, link_id from ops.reconnect_notifications where notification_id = ?",
                [f"{member_guid}:{episode}"],
            ).fetchone()
        return mode, reconnect_url(self.connect_url, self.service.links.signer, link_id)  # as the backend gets it


@pytest.fixture
def product(tmp_path, monkeypatch) -> Iterator[Product]:
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    spool = Spool(settings.spool_dir())
    receiver = WebhookReceiver(spool, HOOK_USER, HOOK_PASSWORD)
    holder: dict = {}

    async def app(scope, receive, send):  # the service needs its own URL, known only once it listens
        await holder["app"](scope, receive, send)

    with serving(app) as connect_url:
        sandbox_options = {"aggregation_seconds": 0.5, "webhook_url": f"{connect_url}/webhooks/mx",
                           "webhook_username": HOOK_USER, "webhook_password": HOOK_PASSWORD}  # fmt: skip
        with running_sandbox(seed=11, **sandbox_options) as sandbox:
            mx = MxClient(sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY)
            links = Links.at("e2e-link-secret", settings.link_store_path())  # the pipeline's store, as in production
            service = ConnectService(mx, spool, links, connect_url)
            holder["app"] = create_app(service, receiver)
            monkeypatch.setenv("MX_PIPELINE_LINK_SECRET", "e2e-link-secret")
            monkeypatch.setenv("MX_PIPELINE_CONNECT_URL", connect_url)
            yield Product(sandbox, connect_url, service, tmp_path)
            mx.close()


def test_connect_mfa_in_update_mode_then_reconnect_mode_in_a_real_browser(product):
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    user_guid = product.api("/users", {"user_id": "browser-user"})["user_guid"]
    widget_url = product.api("/users/browser-user/widget_urls", {"mode": "aggregation"})["widget_url"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page()

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        # 1. A new connection: pick MX Bank, sign in with the password that asks a security question.
        page.goto(widget_url)
        shot("01-search")
        page.click("#institution-mxbank")
        page.fill("#LOGIN", "mxuser")
        page.fill("#PASSWORD", "challenge")
        shot("02-credentials")
        page.click("#submit")
        page.wait_for_selector("#mfa-answer", timeout=20_000)
        shot("03-mfa-asked")
        page.close()  # the user walks away without answering

        # MX tells us (CONNECTION_STATUS webhook); the pipeline routes the member to MFA and notifies.
        product.wait_for_spooled(lambda e: e.get("connection_status") == "CHALLENGED")
        member_guid = next(json.loads(e.body)["member_guid"] for e in product.spool.pending() if "CHALLENGED" in e.body)
        product.sensor_tick_and_runs()
        assert product.member_row(member_guid)[:2] == ("CHALLENGED", "needs_mfa")
        mode, link = product.notification_link(member_guid, 1)
        assert mode == "update"

        # 2. The notification's link opens Connect on that member, straight at the question: no credentials.
        page = browser.new_page()
        page.goto(link)
        page.wait_for_selector("#mfa-answer")
        assert page.locator("#PASSWORD").count() == 0
        shot("04-update-mode-mfa")
        page.fill("#mfa-answer", "correct")
        page.click("#submit")
        page.wait_for_url(f"{product.connect_url}/connect/callback*", timeout=20_000)
        assert "All done" in page.content()
        shot("05-connected-callback")

        product.sensor_tick_and_runs()
        status, route, transactions = product.member_row(member_guid)
        assert (status, route) == ("CONNECTED", "ready") and transactions > 0

        # 3. The institution degrades the connection; past the grace, the user is asked for fresh credentials.
        requests.post(
            f"{product.sandbox.base_url}/_sandbox/members/{member_guid}/connection_status",
            json={"connection_status": "DEGRADED"},
            timeout=10,
        ).raise_for_status()
        # MX sends no webhook for DEGRADED: the scheduler's next re-read of the user's members finds it.
        product.run(scoped_run_config([user_guid]), degraded_grace_hours=0.0)
        assert product.member_row(member_guid)[:2] == ("DEGRADED", "degraded")
        mode, link = product.notification_link(member_guid, 2)
        assert mode == "reconnect"
        page.goto(link)
        page.wait_for_selector("#PASSWORD")
        shot("06-reconnect-mode-credentials")
        page.fill("#LOGIN", "mxuser")
        page.fill("#PASSWORD", "password")
        page.click("#submit")
        page.wait_for_url(f"{product.connect_url}/connect/callback*", timeout=20_000)
        shot("07-reconnected-callback")
        browser.close()

    product.sensor_tick_and_runs()
    status, route, after = product.member_row(member_guid)
    assert (status, route) == ("CONNECTED", "ready")
    assert after >= transactions  # reconnecting never deletes the member's history
