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


NOT_UTF8 = b'{"type": "AGGREGATION", "user_guid": "USR-1", "member_guid": "MBR-\xff"}'.decode(
    "utf-8", "surrogateescape"
)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"type": "AGGREGATION", "completed_at": ' + "9" * 4400 + "}", "not JSON: Exceeds the limit (4300 digits)"),
        ("[" * 100_000 + "]" * 100_000, "not JSON: nested too deeply"),
        (json.dumps(AGGREGATION | {"completed_at": 10**20}), "AGGREGATION with completed_at out of range: 10"),
        (json.dumps(AGGREGATION | {"completed_at": -(10**12)}), "AGGREGATION with completed_at out of range: -10"),
        (json.dumps(AGGREGATION | {"completed_at": 253402300800}), "out of range: 253402300800"),  # year 10000
        (NOT_UTF8, "not UTF-8: 0xff at byte 66"),
        (json.dumps(CONNECTION_STATUS | {"member_guid": "MBR-\ud800"}), "member_guid that is not valid Unicode"),
        (json.dumps(CONNECTION_STATUS | {"user_guid": "\udfff"}), "user_guid that is not valid Unicode"),
        (json.dumps(CONNECTION_STATUS | {"connection_status": "\udc00"}), "connection_status that is not valid"),
        (json.dumps({"type": {"AGGREGATION": 1}}), "unhandled webhook type {'AGGREGATION': 1}"),
    ],
    ids=["huge integer", "deep nesting", "far future", "far past", "year 10000", "not UTF-8", "lone surrogates",
         "surrogate user", "surrogate status", "unhashable type"],
)  # fmt: skip
def test_bodies_python_or_the_warehouse_cannot_hold_are_rejected_not_raised(body, reason):
    result = parse_webhook(body)
    assert isinstance(result, Rejected) and reason in result.reason, result


def test_a_completed_at_that_is_not_a_unix_integer_is_no_time_rather_than_a_reason_to_refuse():
    for odd in (True, "2018-07-18", 1531947410.5, None):
        assert parse_webhook(json.dumps(AGGREGATION | {"completed_at": odd})).occurred_at is None


@pytest.mark.parametrize(
    "body",
    ['{"user_id": ' + "1" * 4400 + "}", "[" * 100_000 + "]" * 100_000, '{"user_guid": "USR-1", "member_guid": "\\ud800"}',
     '{"user_guid": "USR-1", "member_guid": "MBR-1", "user_id": {"not": "text"}}'],
    ids=["huge integer", "deep nesting", "lone surrogate", "user id not text"],
)  # fmt: skip
def test_a_connect_callback_that_cannot_be_held_is_rejected_not_raised(body):
    assert isinstance(parse_connect_callback(body), Rejected)


def test_a_connect_callback_carries_our_user_id():
    body = json.dumps({"user_id": "u1", "user_guid": "USR-1", "member_guid": "MBR-9", "mode": "aggregation"})
    assert parse_connect_callback(body) == MemberEvent("connect_callback", "USR-1", "MBR-9", user_id="u1")
