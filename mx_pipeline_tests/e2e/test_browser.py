"""End to end in a real headless Chromium: Connect embedded in a customer's page (the relay), MFA in update mode,
reconnect mode, and OAuth in a mobile WebView (the callback).

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
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
import requests
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

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
        return response.json() if response.content else {}

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
        ops["raw__mx_users"] = {"config": {"users_csv": ""}}  # no CSV: users come from the service
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
        page.click("#continue")  # the link's page: only the press opens it
        page.wait_for_selector("#mfa-answer")
        assert page.locator("#PASSWORD").count() == 0
        shot("04-update-mode-mfa")
        page.fill("#mfa-answer", "correct")
        page.click("#submit")
        # Opened on its own from a mail: no parent to post to and no redirect; MX's webhook tells us.
        page.wait_for_selector("#connected", timeout=20_000)
        shot("05-connected")
        product.wait_for_spooled(lambda e: e.get("type") == "AGGREGATION" and e.get("member_guid") == member_guid)

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
        page.click("#continue")  # the link's page: only the press opens it
        page.wait_for_selector("#PASSWORD")
        shot("06-reconnect-mode-credentials")
        page.fill("#LOGIN", "mxuser")
        page.fill("#PASSWORD", "password")
        page.click("#submit")
        page.wait_for_selector("#connected", timeout=20_000)
        shot("07-reconnected")
        browser.close()
    product.wait_for_spooled(lambda e: e.get("type") == "AGGREGATION" and e.get("member_guid") == member_guid)

    product.sensor_tick_and_runs()
    status, route, after = product.member_row(member_guid)
    assert (status, route) == ("CONNECTED", "ready")
    assert after >= transactions  # reconnecting never deletes the member's history


# An MX customer's web page (the documented browser integration, README "Connect"): Connect in an iframe; a
# listener that keeps only Connect's messages (data.mx, from the widget's origin) and hands memberConnected to
# the customer's backend, which relays it to our /v1/users/{user_id}/members with its bearer token.
HOST_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Example Bank App</title></head><body>
<h1>Link your bank</h1>
<script>
  var WIDGET_URL = __WIDGET_URL__;
  var MX_ORIGIN = new URL(WIDGET_URL).origin;
  window.mxMessages = [];
  window.relayed = [];
  window.addEventListener("message", function (event) {
    if (event.origin !== MX_ORIGIN || !event.data || !event.data.mx) { return; }
    window.mxMessages.push(event.data);
    if (event.data.type === "mx/connect/memberConnected") {
      fetch("/mx/member_connected", {method: "POST", headers: {"Content-Type": "application/json"},
                                     body: JSON.stringify({member_guid: event.data.metadata.member_guid})})
        .then(function (response) { window.relayed.push(response.status); });
    }
  });
  // Neither is Connect's: one from this page's own origin, one without data.mx.
  window.postMessage({mx: true, type: "mx/connect/memberConnected", metadata: {member_guid: "MBR-forged"}}, "*");
  window.postMessage({type: "mx/connect/memberConnected", metadata: {member_guid: "MBR-forged"}}, "*");
</script>
<iframe id="mx-connect" title="Connect your bank" width="460" height="640"></iframe>
<script>document.getElementById("mx-connect").src = WIDGET_URL;</script>
</body></html>"""


def customer_app(product: Product, user_id: str) -> Starlette:
    """The customer's web app on its own origin: the page above, and its backend's relay."""

    async def connect_page(request: Request) -> Response:
        body = {"mode": "aggregation"}
        widget = await run_in_threadpool(product.api, f"/users/{user_id}/widget_urls", body)
        return HTMLResponse(HOST_PAGE.replace("__WIDGET_URL__", json.dumps(widget["widget_url"])))

    async def member_connected(request: Request) -> Response:
        member_guid = (await request.json())["member_guid"]
        await run_in_threadpool(product.api, f"/users/{user_id}/members", {"member_guid": member_guid})
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/link-bank", connect_page),
            Route("/mx/member_connected", member_connected, methods=["POST"]),
        ]
    )


def test_connect_embedded_in_a_customer_page_relays_member_connected_to_the_warehouse(product):
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    product.api("/users", {"user_id": "embedding-user"})
    with serving(customer_app(product, "embedding-user")) as app_url, sync_playwright() as playwright:
        assert urlsplit(app_url).netloc != urlsplit(product.sandbox.base_url).netloc  # another origin than MX's
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(f"{app_url}/link-bank")
        connect = page.frame_locator("#mx-connect")
        connect.locator("#institution-search").fill("MX")
        connect.locator("#institution-search").press("Enter")
        connect.locator("#institution-mxbank").click()
        connect.locator("#LOGIN").fill("mxuser")
        connect.locator("#PASSWORD").fill("password")
        connect.locator("#submit").click()
        page.wait_for_function("window.relayed.length === 1", timeout=20_000)
        connect.locator("#done").click()
        page.wait_for_function("window.mxMessages.some(m => m.type === 'mx/connect/connected/primaryAction')")
        page.screenshot(path=str(ARTIFACTS / "08-embedded-connected.png"), full_page=True)
        messages = page.evaluate("window.mxMessages")
        assert page.evaluate("window.relayed") == [204]
        browser.close()

    # The sequence a real MX widget sends; a status update only on a change while connecting (never the initial).
    updates = [m for m in messages if m["type"] == "mx/connect/memberStatusUpdate"]
    assert [u["metadata"]["connection_status"] for u in updates] in ([], [6])  # 6: CONNECTED, if polled before
    assert [m["type"].removeprefix("mx/") for m in messages if m not in updates] == [
        "load", "connect/loaded", "connect/institutionSearch", "connect/selectedInstitution", "connect/stepChange",
        "connect/enterCredentials", "connect/stepChange", "connect/memberConnected", "connect/stepChange",
        "connect/connected/primaryAction",
    ]  # fmt: skip
    steps = [
        (m["metadata"]["previous"], m["metadata"]["current"]) for m in messages if m["type"].endswith("stepChange")
    ]
    assert steps == [("search", "enterCreds"), ("enterCreds", "connecting"), ("connecting", "connected")]
    assert messages[0]["metadata"] == {} and messages[2]["metadata"]["query"] == "MX"
    member_guid = next(m["metadata"]["member_guid"] for m in messages if m["type"] == "mx/connect/memberConnected")
    assert all(m["metadata"].get("member_guid") != "MBR-forged" for m in messages)

    product.wait_for_spooled(lambda e: e.get("source") == "relay" and e.get("member_guid") == member_guid)
    product.sensor_tick_and_runs()
    assert product.member_row(member_guid)[:2] == ("CONNECTED", "ready")
    truth = {t.guid: Decimal(str(t.amount)) for t in product.sandbox.world.transactions_of_member(member_guid)}
    with product.warehouse.connect() as con:
        rows = con.execute("select guid, amount from raw.mx_transactions where member_guid = ?", [member_guid])
        assert dict(rows.fetchall()) == truth and truth


def test_oauth_in_a_mobile_webview_ends_at_our_callback(product):
    sync_playwright = _browser_or_skip()
    body = {"mode": "aggregation", "is_mobile_webview": True, "ui_message_webview_url_scheme": "exampleapp"}
    widget_url = product.api("/users/webview-user/widget_urls", body)["widget_url"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        webview = browser.new_page()
        app_urls: list[str] = []  # what the app's navigation delegate intercepts
        webview.on("request", lambda r: app_urls.append(r.url) if r.url.startswith("exampleapp://") else None)
        # The app's navigation delegate cancels navigations to its scheme (without this, headless Chromium treats
        # them as external-protocol launches and stops acting on clicks).
        webview.route("exampleapp://**", lambda route: route.abort())

        def intercepted(event: str) -> dict:
            """The metadata of the WebView's navigation for ``event`` (waits for it)."""
            prefix = f"exampleapp://connect/{event}?"
            if not any(u.startswith(prefix) for u in app_urls):
                webview.wait_for_event("request", lambda r: r.url.startswith(prefix), timeout=20_000)
            url = next(u for u in app_urls if u.startswith(prefix))
            return json.loads(parse_qs(urlsplit(url).query)["metadata"][0])

        def step(selector: str, then: str) -> None:
            """Tap a button, then let the next page try all its navigations (a person is slower than the script).
            The tap submits the button's form: headless Chromium drops a synthetic click's submission on a page
            whose app-scheme navigations were cancelled."""
            webview.locator(selector).evaluate("button => button.form.requestSubmit(button)")
            webview.wait_for_selector(then)
            webview.wait_for_function("window.mxSandboxDelivered === true")

        webview.goto(widget_url)
        step("#institution-mxbank_oauth", then="#oauth-sign-in")
        step("#oauth-sign-in", then="#oauth-waiting")
        requested = intercepted("oauthRequested")

        # The app opens the bank's page in the system browser; at the end of OAuth MX sends it to our callback.
        system_browser = browser.new_page()
        system_browser.goto(requested["url"])
        system_browser.click("#authorize")
        system_browser.wait_for_url(f"{product.connect_url}/connect/callback*", timeout=20_000)
        callback = parse_qs(urlsplit(system_browser.url).query)
        assert (callback["status"], callback["member_guid"]) == (["success"], [requested["member_guid"]])
        assert "All done" in system_browser.content()

        # (The WebView's own memberConnected navigation is pinned over HTTP in sandbox/test_widget_oauth.py:
        # headless Chromium stops a page's own navigations once its app-scheme navigations were cancelled.)
        browser.close()

    product.sensor_tick_and_runs()
    assert product.member_row(requested["member_guid"])[:2] == ("CONNECTED", "ready")
