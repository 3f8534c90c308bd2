"""Spooled webhooks and callbacks become member events, or a reason for quarantine: never lost, never a crash."""

import json
from datetime import UTC, datetime

import pytest

from mx_pipeline.lifecycle.events import MemberEvent, Rejected, parse_connect_callback, parse_webhook

CONNECTION_STATUS = {
    "action": "CHANGED",
    "connection_status": "CHALLENGED",
    "connection_status_id": 3,
    "connection_status_message": "To authenticate your connection to MX Bank, please answer the following challenge(s).",
    "member_guid": "MBR-1",
    "type": "CONNECTION_STATUS",
    "user_guid": "USR-1",
}
AGGREGATION = {
    "action": "member_data_updated",
    "completed_at": 1531947410,
    "completed_on": "2018-07-18",
    "is_background": True,
    "job_guid": "JOB-1",
    "member_guid": "MBR-1",
    "transactions_created_count": 3,
    "transactions_updated_count": 2,
    "type": "AGGREGATION",
    "user_guid": "USR-1",
    "user_id": "end-user-1",
}


def test_a_connection_status_webhook_names_the_member_and_status():
    assert parse_webhook(json.dumps(CONNECTION_STATUS)) == MemberEvent(
        "CONNECTION_STATUS", "USR-1", "MBR-1", connection_status="CHALLENGED"
    )


def test_an_aggregation_webhook_carries_mx_s_unix_completion_time():
    event = parse_webhook(json.dumps(AGGREGATION))
    assert event.source == "AGGREGATION" and event.member_guid == "MBR-1"
    assert event.occurred_at == datetime(2018, 7, 18, 20, 56, 50, tzinfo=UTC)


def test_new_fields_and_nulls_mx_may_add_are_tolerated():
    payload = CONNECTION_STATUS | {"connection_status_message": None, "brand_new": {"x": [1]}}
    assert isinstance(parse_webhook(json.dumps(payload)), MemberEvent)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps(CONNECTION_STATUS | {"connection_status": None}), "without a connection_status"),
        (json.dumps(CONNECTION_STATUS | {"member_guid": None}), "without a member_guid"),
        (json.dumps(AGGREGATION | {"user_guid": 7}), "without a user_guid"),
        (json.dumps({"type": "MEMBER_STATUS_UPDATED", "member_guid": "MBR-1"}), "unhandled webhook type"),
    ],
)
def test_what_cannot_be_acted_on_is_rejected_with_its_reason(body, reason):
    result = parse_webhook(body)
    assert isinstance(result, Rejected) and reason in result.reason


def test_a_connect_callback_carries_our_user_id():
    body = json.dumps({"user_id": "u1", "user_guid": "USR-1", "member_guid": "MBR-9", "mode": "aggregation"})
    assert parse_connect_callback(body) == MemberEvent("connect_callback", "USR-1", "MBR-9", user_id="u1")
