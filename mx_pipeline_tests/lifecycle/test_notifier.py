"""Notifications reach the product backend, retried when it stumbles, refused when it says no."""

import json
import logging
from datetime import UTC, datetime

import pytest
import requests
import responses

from mx_pipeline.lifecycle.notifier import (
    DeliveryFailed,
    HttpNotifier,
    LogNotifier,
    Notification,
    NotificationState,
    deliver_within,
)

BACKEND = "https://backend.example.com/mx/notifications"
LINK_URL = "https://connect.example.com/reconnect/{}".format


def notification(**changes) -> Notification:
    fields = dict(
        notification_id="MBR-1:1",
        user_id="end-user-1",
        user_guid="USR-1",
        member_guid="MBR-1",
        institution="MX Bank",
        connection_status="CHALLENGED",
        route="needs_mfa",
        reason="Your bank is asking a security question before we can sync.",
        connect_mode="update",
        link_id="link-id-1",
        created_at=datetime(2026, 11, 25, 9, tzinfo=UTC),
    )
    return Notification(**(fields | changes))


@pytest.fixture
def backend():
    with responses.RequestsMock() as mock:
        yield mock


def test_a_notification_is_posted_as_json_with_an_idempotency_key(backend):
    backend.add("POST", BACKEND, status=202)
    HttpNotifier(BACKEND, link_url=LINK_URL, token="t0k3n").deliver(notification())
    sent = backend.calls[0].request
    assert json.loads(sent.body) == notification().as_json(LINK_URL("link-id-1"))
    assert json.loads(sent.body)["reconnect_url"] == "https://connect.example.com/reconnect/link-id-1"
    assert "link_id" not in json.loads(sent.body)  # the backend gets the URL (to e-mail), not our store's id
    assert sent.headers["Idempotency-Key"] == "MBR-1:1"
    assert sent.headers["Authorization"] == "Bearer t0k3n"


def test_a_stumbling_backend_is_retried_with_backoff(backend):
    backend.add("POST", BACKEND, status=503)
    backend.add("POST", BACKEND, body=requests.ConnectionError("reset"))
    backend.add("POST", BACKEND, status=200)
    slept = []
    HttpNotifier(BACKEND, link_url=LINK_URL, sleep=slept.append).deliver(notification())
    assert slept == [0.5, 1.0] and len(backend.calls) == 3


def test_a_backend_refusal_is_not_retried(backend):
    backend.add("POST", BACKEND, status=422)
    with pytest.raises(DeliveryFailed, match="HTTP 422"):
        HttpNotifier(BACKEND, link_url=LINK_URL, sleep=lambda s: None).deliver(notification())
    assert len(backend.calls) == 1


def test_delivery_gives_up_after_the_last_attempt(backend):
    for _ in range(4):
        backend.add("POST", BACKEND, status=500)
    with pytest.raises(DeliveryFailed, match="HTTP 500"):
        HttpNotifier(BACKEND, link_url=LINK_URL, sleep=lambda s: None).deliver(notification())


def test_the_log_notifier_names_people_by_guid_only(caplog):
    caplog.set_level(logging.INFO)
    LogNotifier().deliver(notification())
    assert "USR-1" in caplog.text and "MBR-1" in caplog.text
    assert "end-user-1" not in caplog.text
    assert "link-id-1" not in caplog.text and "/reconnect/" not in caplog.text  # a link is a credential


def test_a_2xx_from_the_backend_is_delivered(backend):
    backend.add("POST", BACKEND, status=204)
    assert HttpNotifier(BACKEND, link_url=LINK_URL).deliver(notification()) is NotificationState.DELIVERED


def test_without_a_backend_a_notification_is_only_logged_and_says_so(caplog):
    caplog.set_level(logging.INFO)
    assert LogNotifier().deliver(notification()) is NotificationState.LOGGED  # nobody was told: not "delivered"


# --- a run's delivery is bounded: a time budget, and a known longest single delivery --------------------------


class SlowNotifier:
    """Each delivery takes ``seconds`` of the fake clock; the third one fails."""

    longest_delivery_seconds = 4.0

    def __init__(self, clock: list[float]) -> None:
        self.clock, self.sent = clock, []

    def deliver(self, n: Notification) -> NotificationState:
        self.clock[0] += 4.0
        self.sent.append(n.notification_id)
        if len(self.sent) == 3:
            raise DeliveryFailed(f"notification {n.notification_id} not delivered: HTTP 503")
        return NotificationState.DELIVERED


def test_a_run_starts_no_delivery_once_its_time_budget_is_spent_and_says_what_became_of_each():
    clock = [0.0]
    notifier = SlowNotifier(clock)
    batch = [notification(notification_id=f"MBR-{i}:1") for i in range(6)]
    results = list(deliver_within(batch, notifier, budget_seconds=10.0, clock=lambda: clock[0]))
    assert notifier.sent == ["MBR-0:1", "MBR-1:1", "MBR-2:1"]  # started at 0, 4 and 8 s; none at 12 s
    assert [(n.notification_id, outcome, error) for n, outcome, error in results] == [
        ("MBR-0:1", NotificationState.DELIVERED, None),
        ("MBR-1:1", NotificationState.DELIVERED, None),
        ("MBR-2:1", None, "DeliveryFailed: notification MBR-2:1 not delivered: HTTP 503"),
    ]


def test_the_longest_single_delivery_is_known_so_a_lease_can_outlive_it():
    assert (
        HttpNotifier(BACKEND, link_url=LINK_URL, attempts=4, backoff=0.5, timeout=10).longest_delivery_seconds
        == 40 + 0.5 + 1 + 2
    )
    assert LogNotifier().longest_delivery_seconds == 0


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirecting_backend_is_not_followed_with_the_users_link(backend, status):
    """A redirect would carry the reconnect URL (a credential) to wherever it points."""
    backend.add("POST", BACKEND, status=status, headers={"Location": "https://elsewhere.example/collect"})
    with pytest.raises(DeliveryFailed, match=f"HTTP {status}.*MX_PIPELINE_NOTIFY_URL"):
        HttpNotifier(BACKEND, link_url=LINK_URL, sleep=lambda s: None).deliver(notification())
    assert [c.request.url for c in backend.calls] == [BACKEND]
