"""The connect service under uvicorn stays responsive while its blocking work hangs: MX slow to mint a widget URL,
or the spool's lock held by the sensor pruning. Nothing here times anything: the stalls are held on events the
test releases, and each assertion is about what finished while they were held (deadlines are only generous
bounds for a loaded machine)."""

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import uvicorn

from mx_pipeline.connect.app import ConnectService, create_app
from mx_pipeline.connect.links import Links
from mx_pipeline.connect.spool import Spool
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.mx import MxClient, RetryPolicy
from mx_pipeline_tests.local_http import QuietHandler, serving
from mx_pipeline_tests.mx import payloads as p

HOOK_AUTH = ("mx-hooks", "hook-password")
WIDGET = "https://int-widgets.moneydesktop.com/md/connect/slow"
GENEROUS = 60  # seconds: only ever reached when something is wrong
WEBHOOKS = 5


class SlowMx:
    """MX on loopback: users answer at once; each widget URL request is held until the test releases it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._changed = threading.Condition()
        self.held = 0  # widget URL requests MX is holding right now
        self.most_held = 0

    def wait_until_holding(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.held >= count, timeout=GENEROUS), f"MX never held {count}"

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        mx = self

        class Handler(QuietHandler):
            def do_GET(self):
                user_id = parse_qs(urlsplit(self.path).query)["id"][0]
                self._answer(p.listing("users", [p.user(id=user_id)]))

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with mx._changed:
                    mx.held += 1
                    mx.most_held = max(mx.most_held, mx.held)
                    mx._changed.notify_all()
                mx.release.wait(GENEROUS)
                with mx._changed:
                    mx.held -= 1
                self._answer({"widget_url": {"type": "connect_widget", "url": WIDGET, "user_id": "end-user-1"}})

            def _answer(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.mx.api.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        with serving(Handler, on_close=self.release.set) as url:
            yield url


@contextlib.contextmanager
def connect_service(mx_url: str, spool: Spool, mx: SlowMx, **app_options) -> Iterator[str]:
    """The connect app served by uvicorn on a free loopback port, as ``mx-pipeline serve`` serves it."""
    client = MxClient(mx_url, "client-id", "api-key", retry=RetryPolicy(max_attempts=1))
    links = Links.at("test-link-secret-0123456789", spool.root.parent / "links.sqlite")
    service = ConnectService(client, spool, links, "https://connect.example.com")
    app = create_app(service, WebhookReceiver(spool, *HOOK_AUTH), **app_options)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert _eventually(lambda: server.started), "the connect service never started"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        mx.release.set()  # a held request must end before the server can
        server.should_exit = True
        thread.join(GENEROUS)
        sock.close()
        client.close()


def _eventually(condition) -> bool:
    deadline = time.monotonic() + GENEROUS
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class ObservedSpool(Spool):
    """The real spool, telling the test when a write has begun (and so may be waiting for the spool's lock)."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.writing = threading.Event()

    def append(self, *args, **kwargs) -> bool:
        self.writing.set()
        return super().append(*args, **kwargs)


@pytest.fixture
def slow_mx() -> Iterator[tuple[SlowMx, str]]:
    mx = SlowMx()
    with mx.serving() as url:
        yield mx, url


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def widget_url(pool: ThreadPoolExecutor, service: str, user_id: str) -> Future:
    return pool.submit(requests.post, f"{service}/v1/users/{user_id}/widget_urls", json={}, timeout=GENEROUS)


def webhooks(pool: ThreadPoolExecutor, service: str, count: int = WEBHOOKS) -> list[Future]:
    def deliver(n: int) -> requests.Response:
        body = {"type": "CONNECTION_STATUS", "action": "CHANGED", "connection_status": "CHALLENGED",
                "user_guid": p.USER_GUID, "member_guid": f"MBR-{n}"}  # fmt: skip
        return requests.post(f"{service}/webhooks/mx", json=body, auth=HOOK_AUTH, timeout=GENEROUS)

    return [pool.submit(deliver, n) for n in range(count)]


def test_webhooks_are_answered_while_an_mx_call_is_still_held(slow_mx, pool, tmp_path):
    mx, mx_url = slow_mx
    spool = Spool(tmp_path / "spool")
    with connect_service(mx_url, spool, mx) as service:
        minting = widget_url(pool, service, "end-user-1")
        mx.wait_until_holding(1)
        delivered = webhooks(pool, service)
        _, late = wait(delivered, timeout=GENEROUS)
        assert not late, "webhooks waited behind the MX call"
        assert not minting.done() and mx.held == 1  # every webhook was answered while MX still held the call
        assert [d.result().status_code for d in delivered] == [204] * WEBHOOKS
        mx.release.set()
        assert minting.result().json()["widget_url"] == WIDGET
    spooled = sorted(json.loads(e.body)["member_guid"] for e in spool.pending() if e.kind == "mx_webhook")
    assert spooled == [f"MBR-{n}" for n in range(WEBHOOKS)]


def test_a_slow_mx_takes_only_its_own_threads_never_the_webhooks(slow_mx, pool, tmp_path):
    mx, mx_url = slow_mx
    with connect_service(mx_url, Spool(tmp_path / "spool"), mx, mx_threads=2) as service:
        minting = [widget_url(pool, service, f"end-user-{n}") for n in range(6)]
        mx.wait_until_holding(2)
        delivered = webhooks(pool, service)
        _, late = wait(delivered, timeout=GENEROUS)
        assert not late, "webhooks starved behind MX calls"
        assert [d.result().status_code for d in delivered] == [204] * WEBHOOKS
        assert not any(m.done() for m in minting) and mx.most_held == 2  # the rest wait their turn, unanswered
        mx.release.set()
        assert [m.result().json()["widget_url"] for m in minting] == [WIDGET] * 6
    assert mx.most_held == 2


def test_a_webhook_waiting_for_the_spool_lock_never_stalls_the_rest_of_the_service(slow_mx, pool, tmp_path):
    mx, mx_url = slow_mx
    spool = ObservedSpool(tmp_path / "spool")
    with connect_service(mx_url, spool, mx) as service:
        fd = os.open(spool.root / ".lock", os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the webhook sensor does while it prunes the spool
        try:
            [waiting] = webhooks(pool, service, count=1)
            assert spool.writing.wait(GENEROUS)
            health = pool.submit(requests.get, f"{service}/healthz", timeout=GENEROUS)
            assert not wait([health], timeout=GENEROUS).not_done, "the service stalled behind the spool's lock"
            assert health.result().json()["ok"] is True and not waiting.done()
        finally:
            os.close(fd)
        assert waiting.result().status_code == 204
    [event] = spool.pending()
    assert json.loads(event.body)["member_guid"] == "MBR-0"
