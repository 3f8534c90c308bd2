"""MX's webhook deliveries: authenticated, spooled before the 204, never refused for their content."""

import json

import pytest

from mx_pipeline_tests.connect.conftest import WEBHOOK_PASSWORD, WEBHOOK_USER

CONNECTION_STATUS = {
    "action": "CHANGED",
    "connection_status": "CHALLENGED",
    "connection_status_id": 3,
    "connection_status_message": "To authenticate your connection to MX Bank, please answer the following challenge(s).",
    "member_guid": "MBR-1",
    "type": "CONNECTION_STATUS",
    "user_guid": "USR-1",
}


def deliver(http, body: bytes, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD), **headers):
    http.headers.pop("Authorization", None)
    return http.post("/webhooks/mx", content=body, auth=auth, headers={"Content-Type": "application/json", **headers})


def test_an_authenticated_delivery_is_spooled_and_answered_204(http, spool):
    response = deliver(http, json.dumps(CONNECTION_STATUS).encode())
    assert response.status_code == 204 and response.content == b""
    (event,) = spool.pending()
    assert event.kind == "mx_webhook" and json.loads(event.body) == CONNECTION_STATUS


@pytest.mark.parametrize("auth", [None, (WEBHOOK_USER, "wrong"), ("someone", WEBHOOK_PASSWORD)])
def test_wrong_or_missing_credentials_get_401_and_nothing_is_stored(http, spool, auth):
    assert deliver(http, b"{}", auth=auth).status_code == 401
    assert spool.pending() == []


def test_a_garbled_authorization_header_is_refused(http, spool):
    http.headers.pop("Authorization", None)
    response = http.post("/webhooks/mx", content=b"{}", headers={"Authorization": "Basic %%%not-base64"})
    assert response.status_code == 401 and spool.pending() == []


@pytest.mark.parametrize("body", [b"not json at all", b'{"type": null, "new_field": [1, 2]}', b""])
def test_unparsable_or_surprising_content_is_still_accepted_for_later_quarantine(http, spool, body):
    assert deliver(http, body).status_code == 204
    (event,) = spool.pending()
    assert event.body.encode("utf-8", errors="surrogateescape") == body


@pytest.mark.parametrize(
    "body",
    [b'{"member_guid": "MBR-\\ud800"}', b'{"member_guid": "MBR-\xff"}', b"[" * 2000 + b"]" * 2000],
    ids=["lone surrogate escape", "not UTF-8", "deep nesting"],
)
def test_a_body_python_cannot_read_is_still_spooled_exactly(http, spool, body):
    assert deliver(http, body).status_code == 204
    (event,) = spool.pending()
    assert event.raw == body


def test_a_redelivery_is_idempotent(http, spool):
    body = json.dumps(CONNECTION_STATUS).encode()
    assert [deliver(http, body).status_code for _ in range(3)] == [204, 204, 204]
    assert len(spool.pending()) == 1


def test_an_oversized_body_gets_413_and_is_not_stored(http, spool):
    assert deliver(http, b"x" * 5000).status_code == 413
    assert spool.pending() == []


def test_an_oversized_chunked_body_without_length_gets_413(http, spool):
    http.headers.pop("Authorization", None)
    response = http.post(
        "/webhooks/mx", content=iter([b"x" * 3000, b"y" * 3000]), auth=(WEBHOOK_USER, WEBHOOK_PASSWORD)
    )
    assert response.status_code == 413 and spool.pending() == []


def test_without_configured_credentials_every_delivery_is_refused(spool):
    from starlette.testclient import TestClient

    from mx_pipeline.connect.webhooks import WebhookReceiver

    receiver = WebhookReceiver(spool, "", "")
    from starlette.applications import Starlette
    from starlette.routing import Route

    with TestClient(Starlette(routes=[Route("/h", receiver.receive, methods=["POST"])])) as client:
        assert client.post("/h", content=b"{}", auth=("", "")).status_code == 401
    assert spool.pending() == []


def test_the_same_status_again_after_mx_stopped_retrying_is_a_new_event(tmp_path):
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from mx_pipeline.connect.spool import Spool
    from mx_pipeline.connect.webhooks import WebhookReceiver
    from mx_pipeline_tests.connect.test_spool import Clock

    clock = Clock()
    spool = Spool(tmp_path, clock=clock)
    receiver = WebhookReceiver(spool, WEBHOOK_USER, WEBHOOK_PASSWORD)
    body = json.dumps(CONNECTION_STATUS).encode()  # CONNECTION_STATUS carries no timestamp: the same bytes
    with TestClient(Starlette(routes=[Route("/h", receiver.receive, methods=["POST"])])) as client:
        client.post("/h", content=body, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD))
        clock.advance(hours=23)
        client.post("/h", content=body, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD))  # MX's last retry
        clock.advance(days=20)
        assert client.post("/h", content=body, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD)).status_code == 204
    assert len(spool.pending()) == 2  # the first episode once, and the second one weeks later


def test_challenged_again_after_connected_the_same_day_is_a_new_event(tmp_path):
    """Banks that ask for MFA on every aggregation: CHALLENGED, CONNECTED, CHALLENGED (the same bytes) in a day."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from mx_pipeline.connect.spool import Spool
    from mx_pipeline.connect.webhooks import WebhookReceiver
    from mx_pipeline_tests.connect.test_spool import Clock

    clock = Clock()
    spool = Spool(tmp_path, clock=clock)
    receiver = WebhookReceiver(spool, WEBHOOK_USER, WEBHOOK_PASSWORD)
    challenged = json.dumps(CONNECTION_STATUS).encode()
    connected = json.dumps({**CONNECTION_STATUS, "connection_status": "CONNECTED", "connection_status_id": 6}).encode()
    with TestClient(Starlette(routes=[Route("/h", receiver.receive, methods=["POST"])])) as client:
        for body, hours_later in [(challenged, 0), (connected, 1), (challenged, 20), (challenged, 1)]:
            clock.advance(hours=hours_later)
            assert client.post("/h", content=body, auth=(WEBHOOK_USER, WEBHOOK_PASSWORD)).status_code == 204
    statuses = [json.loads(e.body)["connection_status"] for e in spool.pending()]
    assert statuses == ["CHALLENGED", "CONNECTED", "CHALLENGED"]  # the last one was MX redelivering the third


def test_a_body_that_names_no_member_falls_back_to_the_window(http, spool):
    for body in (b"not json", b'["MBR-1"]', b'{"member_guid": 7}', b'{"type": "PING"}'):
        assert deliver(http, body).status_code == 204
        assert deliver(http, body).status_code == 204  # a redelivery
    assert len(spool.pending()) == 4


def test_challenged_again_after_the_user_came_back_from_connect_is_a_new_event(http, spool, links):
    from mx_pipeline.connect.links import ConnectIntent

    challenged = json.dumps(CONNECTION_STATUS).encode()
    assert deliver(http, challenged).status_code == 204
    state = links.callback_state(ConnectIntent("end-user-1", "USR-1", "update", "MBR-1"))
    params = {"state": state, "status": "CONNECTED", "member_guid": "MBR-1"}
    assert http.get("/connect/callback", params=params).status_code in (200, 303)
    assert deliver(http, challenged).status_code == 204  # the bank asks again
    assert [e.kind for e in spool.pending()] == ["mx_webhook", "connect_callback", "mx_webhook"]
