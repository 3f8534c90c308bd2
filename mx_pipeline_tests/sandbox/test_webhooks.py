"""Webhooks go to the configured URL in MX's payload shapes, with HTTP Basic auth, retried on failure."""

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

GENEROUS = 60  # seconds: a bound only ever reached when something is wrong, never a measure of speed


class Receiver:
    """A tiny local webhook endpoint; ``fail_first`` answers 500 that many times before accepting; ``hold`` keeps
    each delivery waiting until ``release`` is set."""

    def __init__(self, fail_first: int = 0, hold: bool = False) -> None:
        self.received: list[tuple[str, dict]] = []
        self.fail_first = fail_first
        self.holding, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.holding.set()
                receiver.release.wait(GENEROUS)
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(500)
                else:
                    receiver.received.append((self.headers.get("Authorization", ""), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mx/webhooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int) -> list[dict]:
        deadline = time.monotonic() + GENEROUS
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return [body for _, body in self.received]


@pytest.fixture
def receiver():
    receivers = []

    def make(fail_first=0, hold=False):
        receivers.append(Receiver(fail_first, hold))
        return receivers[-1]

    yield make
    for r in receivers:
        r.release.set()
        r.server.shutdown()


def webhook_options(receiver):
    return {
        "webhook_url": receiver.url,
        "webhook_username": "hook-user",
        "webhook_password": "hook-pass",
        "webhook_retry_delays_real_seconds": (0.05, 0.05, 0.05),
    }


def test_a_challenged_member_fires_connection_status_with_basic_auth(start_sandbox, receiver):
    hooks = receiver()
    mx = start_sandbox(**webhook_options(hooks))
    user = mx.create_user()
    member = mx.create_member(user, "challenge")["guid"]
    mx.member(user, member)
    (payload,) = hooks.wait_for(1)
    assert payload == {
        "action": "CHANGED",
        "connection_status": "CHALLENGED",
        "connection_status_id": 3,
        "connection_status_message": payload["connection_status_message"],
        "member_guid": member,
        "type": "CONNECTION_STATUS",
        "user_guid": user,
    }
    assert hooks.received[0][0] == "Basic " + base64.b64encode(b"hook-user:hook-pass").decode()


def test_a_completed_aggregation_fires_member_data_updated_with_unix_times(start_sandbox, receiver):
    hooks = receiver()
    mx = start_sandbox(**webhook_options(hooks))
    user, member = mx.connected_member()
    (payload,) = hooks.wait_for(1)
    assert payload["type"] == "AGGREGATION" and payload["action"] == "member_data_updated"
    assert payload["member_guid"] == member and payload["user_guid"] == user and payload["user_id"] == "user-1"
    assert isinstance(payload["completed_at"], int) and payload["completed_on"] == "2026-11-25"
    assert payload["transactions_created_count"] == mx.admin("GET", "truth")["transactions"]
    assert payload["is_background"] is False and payload["job_guid"].startswith("JOB-")


def test_only_end_user_actionable_statuses_fire_connection_status(start_sandbox, receiver):
    hooks = receiver()
    mx = start_sandbox(**webhook_options(hooks))
    user = mx.create_user()
    for password in ("DEGRADED", "DISABLED", "BAD_REQUEST", "UNAUTHORIZED", "LOCKED"):
        mx.member(user, mx.create_member(user, password)["guid"])
    with mx.sandbox.world.lock:  # every job has ended (the last read ticked): all the sandbox will ever send
        emitted = [p["connection_status"] for p in mx.sandbox.world.outbox if p["type"] == "CONNECTION_STATUS"]
    assert sorted(emitted) == ["DENIED", "LOCKED"]
    assert sorted(p["connection_status"] for p in hooks.wait_for(2)) == ["DENIED", "LOCKED"]


def test_failed_deliveries_are_retried_until_accepted(start_sandbox, receiver):
    hooks = receiver(fail_first=2)
    mx = start_sandbox(**webhook_options(hooks))
    mx.connected_member()
    assert len(hooks.wait_for(1)) == 1
    deadline = time.monotonic() + GENEROUS
    while len(mx.sandbox.webhooks.attempts) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # the receiver has the body before the sender has logged the answer
    attempts = mx.sandbox.webhooks.attempts
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]


def test_retries_are_bounded(start_sandbox, receiver):
    hooks = receiver(fail_first=100)
    mx = start_sandbox(**webhook_options(hooks))
    mx.connected_member()
    deadline = time.monotonic() + GENEROUS
    while not mx.sandbox.webhooks.abandoned and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(mx.sandbox.webhooks.abandoned) == 1
    assert len(mx.sandbox.webhooks.attempts) == 4  # the first try and three retries


def test_a_receiver_that_hangs_never_slows_the_api(start_sandbox, receiver):
    hooks = receiver(hold=True)
    mx = start_sandbox(**webhook_options(hooks), webhook_timeout_real_seconds=GENEROUS)
    user, member = mx.connected_member()
    assert hooks.holding.wait(GENEROUS)  # the AGGREGATION webhook is stuck at the receiver ...
    assert mx.member(user, member)["connection_status"] == "CONNECTED"  # ... and the API answers meanwhile
    assert mx.sandbox.webhooks.attempts == []  # ... while that delivery has still not ended
    hooks.release.set()
    assert len(hooks.wait_for(1)) == 1


def test_an_unreachable_receiver_is_recorded_not_fatal(start_sandbox):
    mx = start_sandbox(webhook_url="http://127.0.0.1:9/unreachable", webhook_retry_delays_real_seconds=(0.01,))
    mx.connected_member()
    assert mx.admin("GET", "webhooks")["emitted"]
