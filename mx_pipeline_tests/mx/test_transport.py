"""Retries, backoff, Retry-After, typed errors, malformed bodies and the per-call record."""

import logging

import pytest
import requests
import urllib3

from mx_pipeline.mx import (
    AuthError,
    BadRequest,
    ConnectionFailed,
    MalformedResponse,
    MxClient,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
)
from mx_pipeline_tests.mx import payloads as p
from mx_pipeline_tests.mx.conftest import API_KEY, CLIENT_ID
from mx_pipeline_tests.mx.payloads import BASE_URL, MEMBER_GUID, MX_MEDIA_TYPE, USER_GUID

MEMBER_URL = f"{BASE_URL}/users/{USER_GUID}/members/{MEMBER_GUID}"
AGGREGATE_URL = MEMBER_URL + "/aggregate"
MEMBERS_URL = f"{BASE_URL}/users/{USER_GUID}/members"
ERROR = {"error": {"message": "Something went wrong"}}


def member_ok():
    return {"json": {"member": p.member()}, "content_type": MX_MEDIA_TYPE}


def test_429_is_retried_after_the_seconds_mx_asks_for(mx_api, client, sleeps):
    mx_api.add("GET", MEMBER_URL, status=429, json=ERROR, headers={"Retry-After": "7"})
    mx_api.add("GET", MEMBER_URL, **member_ok())
    assert client.read_member(USER_GUID, MEMBER_GUID).guid == MEMBER_GUID
    assert sleeps == [7.0]


def test_retry_after_as_an_http_date_is_honoured(mx_api, client, sleeps):
    mx_api.add("GET", MEMBER_URL, status=429, json=ERROR, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    mx_api.add("GET", MEMBER_URL, **member_ok())
    client.read_member(USER_GUID, MEMBER_GUID)
    assert sleeps == [0.0]  # a date in the past: retry at once


def test_429_without_retry_after_backs_off_exponentially_up_to_the_cap(mx_api, client, sleeps):
    for _ in range(4):
        mx_api.add("GET", MEMBER_URL, status=429, json=ERROR)
    with pytest.raises(RateLimited) as raised:
        client.read_member(USER_GUID, MEMBER_GUID)
    assert len(mx_api.calls) == 4  # max_attempts
    assert sleeps == [0.5, 1.0, 2.0]  # base 0.5 doubling; jitter pinned to its ceiling
    assert raised.value.status == 429 and "after 4 attempts" in str(raised.value)


def test_a_retry_after_longer_than_the_budget_is_handed_back_not_slept(mx_api, client, sleeps):
    mx_api.add("POST", AGGREGATE_URL, status=429, json=ERROR, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited) as raised:
        client.aggregate_member(USER_GUID, MEMBER_GUID)
    assert raised.value.retry_after == 3600.0
    assert sleeps == [] and len(mx_api.calls) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_on_reads_are_retried(mx_api, client, sleeps, status):
    mx_api.add("GET", MEMBER_URL, status=status, json=ERROR)
    mx_api.add("GET", MEMBER_URL, **member_ok())
    client.read_member(USER_GUID, MEMBER_GUID)
    assert len(mx_api.calls) == 2


def test_server_error_on_create_member_is_not_repeated(mx_api, client, sleeps):
    # The member may have been created before MX failed; a blind repeat could connect it twice.
    mx_api.add("POST", MEMBERS_URL, status=500, json=ERROR)
    with pytest.raises(ServerError, match="Something went wrong"):
        client.create_member(USER_GUID, institution_code="mxbank", credentials={"CRD-1": "x"})
    assert len(mx_api.calls) == 1


def test_server_error_on_aggregate_is_repeated_because_a_repeat_joins_the_running_job(mx_api, client, sleeps):
    mx_api.add("POST", AGGREGATE_URL, status=503, json=ERROR)
    mx_api.add("POST", AGGREGATE_URL, status=202, **member_ok())
    assert client.aggregate_member(USER_GUID, MEMBER_GUID).is_being_aggregated is False
    assert len(mx_api.calls) == 2


def test_persistent_server_errors_raise_after_the_cap(mx_api, client, sleeps):
    for _ in range(4):
        mx_api.add("GET", MEMBER_URL, status=500, json=ERROR)
    with pytest.raises(ServerError):
        client.read_member(USER_GUID, MEMBER_GUID)
    assert len(mx_api.calls) == 4


def _refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: urllib3's MaxRetryError around a NewConnectionError."""
    refused = urllib3.exceptions.NewConnectionError(None, "Connection refused")
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/users", reason=refused))


def test_a_refused_connection_is_retried_even_for_creates(mx_api, client, sleeps):
    mx_api.add("POST", MEMBERS_URL, body=_refused())
    mx_api.add("POST", MEMBERS_URL, status=202, **member_ok())
    client.create_member(USER_GUID, institution_code="mxbank", credentials={"CRD-1": "x"})
    assert len(mx_api.calls) == 2


def test_a_connection_dropped_after_sending_a_create_is_not_repeated(mx_api, client, sleeps):
    dropped = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    mx_api.add("POST", MEMBERS_URL, body=requests.ConnectionError(dropped))
    with pytest.raises(ConnectionFailed):
        client.create_member(USER_GUID, institution_code="mxbank", credentials={"CRD-1": "x"})
    assert len(mx_api.calls) == 1  # MX may have created the member: a repeat would 409 or double it


def test_read_timeouts_are_retried_only_for_idempotent_requests(mx_api, client, sleeps):
    mx_api.add("GET", MEMBER_URL, body=requests.ReadTimeout("slow"))
    mx_api.add("GET", MEMBER_URL, **member_ok())
    client.read_member(USER_GUID, MEMBER_GUID)
    mx_api.add("POST", MEMBERS_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(ConnectionFailed, match="ReadTimeout"):
        client.create_member(USER_GUID, institution_code="mxbank", credentials={"CRD-1": "x"})
    assert len(mx_api.calls) == 3


def test_mfa_answers_and_new_credentials_are_never_sent_twice(mx_api, client, sleeps):
    mx_api.add("PUT", f"{MEMBER_URL}/resume", status=503, json=ERROR)
    with pytest.raises(ServerError):
        client.resume_aggregation(USER_GUID, MEMBER_GUID, {"CRD-1": "answer"})
    mx_api.add("PUT", MEMBER_URL, status=503, json=ERROR)
    with pytest.raises(ServerError):
        client.update_member(USER_GUID, MEMBER_GUID, credentials={"CRD-1": "new-password"})
    assert len(mx_api.calls) == 2


def test_unreachable_mx_raises_connection_failed_after_the_cap(mx_api, client, sleeps):
    for _ in range(4):
        mx_api.add("GET", MEMBER_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(ConnectionFailed, match="after 4 attempt"):
        client.read_member(USER_GUID, MEMBER_GUID)


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequest), (401, AuthError), (403, AuthError), (404, NotFound), (406, BadRequest), (422, BadRequest)],
)
def test_client_errors_raise_typed_at_once(mx_api, client, sleeps, status, error):
    mx_api.add("GET", MEMBER_URL, status=status, json={"error": {"message": "nope"}})
    with pytest.raises(error) as raised:
        client.read_member(USER_GUID, MEMBER_GUID)
    assert len(mx_api.calls) == 1 and sleeps == []
    assert raised.value.status == status
    assert raised.value.path == f"/users/{USER_GUID}/members/{MEMBER_GUID}"
    assert raised.value.mx_message == "nope"


def test_once_mx_refuses_our_credentials_the_client_sends_nothing_more(mx_api, client, sleeps):
    mx_api.add("GET", MEMBER_URL, status=401, json={"error": {"message": "nope"}})
    mx_api.add("GET", MEMBERS_URL, json=p.listing("members", [p.member()]), content_type=MX_MEDIA_TYPE)
    with pytest.raises(AuthError):
        client.read_member(USER_GUID, MEMBER_GUID)
    with pytest.raises(AuthError, match="not sent: MX refused our credentials earlier") as again:
        list(client.list_members(USER_GUID))
    assert len(mx_api.calls) == 1  # threads reading other members beside the refused one ask MX nothing more
    assert again.value.status == 401 and "MX_CLIENT_ID" in str(again.value)


def test_a_403_refuses_one_request_not_the_credentials(mx_api, client, sleeps):
    mx_api.add("GET", MEMBER_URL, status=403, json={"error": {"message": "not enabled"}})
    mx_api.add("GET", MEMBERS_URL, json=p.listing("members", [p.member()]), content_type=MX_MEDIA_TYPE)
    with pytest.raises(AuthError):
        client.read_member(USER_GUID, MEMBER_GUID)
    assert [m.guid for m in client.list_members(USER_GUID)] == [MEMBER_GUID]


GARBLED_BODIES = {
    "truncated": b'{"member": {"guid": "MBR-1"',
    "not JSON": b"<html>Bad gateway</html>",
    "not an object": b'["member"]',
    "not UTF-8": b'{"member": "\xff\xfe"}',
    "empty": b"",  # every read MX answers has an envelope: an empty 200 is a body lost on the way
}


@pytest.mark.off_contract
@pytest.mark.parametrize("body", GARBLED_BODIES.values(), ids=GARBLED_BODIES.keys())
def test_a_garbled_200_on_a_read_is_retried_like_a_5xx(mx_api, client, sleeps, body):
    mx_api.add("GET", MEMBER_URL, body=body, content_type=MX_MEDIA_TYPE)
    mx_api.add("GET", MEMBER_URL, **member_ok())
    assert client.read_member(USER_GUID, MEMBER_GUID).guid == MEMBER_GUID
    assert len(mx_api.calls) == 2
    assert sleeps == [0.5]  # the same backoff as a 5xx


@pytest.mark.off_contract
@pytest.mark.parametrize("body", GARBLED_BODIES.values(), ids=GARBLED_BODIES.keys())
def test_a_body_still_garbled_after_the_retries_raises_malformed_response(mx_api, client, sleeps, body):
    mx_api.add("GET", MEMBER_URL, body=body, content_type=MX_MEDIA_TYPE)  # served on every attempt
    with pytest.raises(MalformedResponse, match="after 4 attempts") as raised:
        client.read_member(USER_GUID, MEMBER_GUID)
    assert len(mx_api.calls) == 4  # max_attempts, as for a 5xx
    assert sleeps == [0.5, 1.0, 2.0]
    assert raised.value.status == 200


@pytest.mark.off_contract
def test_a_read_answered_with_json_but_no_envelope_is_not_retried(mx_api, client, sleeps):
    mx_api.add("GET", MEMBER_URL, body=b"{}", content_type=MX_MEDIA_TYPE)
    with pytest.raises(MalformedResponse, match="envelope"):
        client.read_member(USER_GUID, MEMBER_GUID)
    assert len(mx_api.calls) == 1


@pytest.mark.off_contract
def test_a_garbled_answer_to_a_create_is_not_repeated(mx_api, client, sleeps):
    # MX did create the member: only the answer was lost. A repeat could connect it twice.
    mx_api.add("POST", MEMBERS_URL, status=202, body=GARBLED_BODIES["truncated"], content_type=MX_MEDIA_TYPE)
    with pytest.raises(MalformedResponse, match="not valid JSON"):
        client.create_member(USER_GUID, institution_code="mxbank", credentials={"CRD-1": "x"})
    assert len(mx_api.calls) == 1 and sleeps == []


@pytest.mark.off_contract
def test_each_garbled_attempt_is_recorded_with_why(mx_api, sleeps):
    calls = []
    with MxClient(BASE_URL, CLIENT_ID, API_KEY, observers=[calls.append], sleep=sleeps.append) as mx:
        mx_api.add("GET", MEMBER_URL, body=GARBLED_BODIES["truncated"], content_type=MX_MEDIA_TYPE)
        mx_api.add("GET", MEMBER_URL, body=GARBLED_BODIES["not an object"], content_type=MX_MEDIA_TYPE)
        mx_api.add("GET", MEMBER_URL, **member_ok())
        mx.read_member(USER_GUID, MEMBER_GUID)
    assert [(c.status, c.attempt, c.error) for c in calls] == [
        (200, 1, f"MalformedResponse: HTTP 200 body is not valid JSON ({len(GARBLED_BODIES['truncated'])} bytes)"),
        (200, 2, "MalformedResponse: expected a JSON object, got list"),
        (200, 3, None),
    ]


@pytest.mark.off_contract
@pytest.mark.parametrize("body", [{"user": p.user()}, [], {"members": []}])
def test_a_body_without_the_expected_envelope_raises_malformed_response(mx_api, client, body):
    mx_api.add("GET", MEMBER_URL, json=body, content_type=MX_MEDIA_TYPE)
    with pytest.raises(MalformedResponse):
        client.read_member(USER_GUID, MEMBER_GUID)


def test_every_attempt_is_observed_without_secrets_or_bodies(mx_api, sleeps):
    calls = []
    with MxClient(BASE_URL, CLIENT_ID, API_KEY, observers=[calls.append], sleep=sleeps.append) as mx:
        mx_api.add("GET", MEMBER_URL, status=503, json=ERROR, headers={"X-Request-Id": "req-1"})
        mx_api.add("GET", MEMBER_URL, **member_ok())
        mx.read_member(USER_GUID, MEMBER_GUID)
    assert [(c.status, c.attempt, c.request_id) for c in calls] == [(503, 1, "req-1"), (200, 2, None)]
    first = calls[0]
    assert first.path_template == "/users/{user_guid}/members/{member_guid}"
    assert (first.user_guid, first.member_guid, first.method) == (USER_GUID, MEMBER_GUID, "GET")
    assert first.latency_ms >= 0 and first.started_at.tzinfo is not None
    assert API_KEY not in repr(calls) and CLIENT_ID not in repr(calls)


def test_a_failing_observer_never_breaks_the_call(mx_api, sleeps, caplog):
    def broken(call):
        raise RuntimeError("call log unavailable")

    with MxClient(BASE_URL, CLIENT_ID, API_KEY, observers=[broken]) as mx:
        mx_api.add("GET", MEMBER_URL, **member_ok())
        assert mx.read_member(USER_GUID, MEMBER_GUID).guid == MEMBER_GUID
    assert "observer failed" in caplog.text


def test_the_api_key_never_reaches_logs_or_errors(mx_api, client, caplog):
    caplog.set_level(logging.DEBUG)
    # MX echoing a credential back in an error message is the worst case: it must still be redacted.
    mx_api.add("GET", MEMBER_URL, status=503, json={"error": {"message": f"bad key {API_KEY}"}})
    mx_api.add("GET", MEMBER_URL, status=401, json={"error": {"message": f"invalid {CLIENT_ID}:{API_KEY}"}})
    with pytest.raises(AuthError) as raised:
        client.read_member(USER_GUID, MEMBER_GUID)
    logging.getLogger("mx_pipeline.mx").warning("Authorization: Basic %s", "dGVzdDpzZWNyZXQtc2VjcmV0")
    texts = [str(raised.value), repr(raised.value), raised.value.mx_message, caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert API_KEY not in text and CLIENT_ID not in text
    assert "dGVzdDpzZWNyZXQtc2VjcmV0" not in caplog.text
    assert "[REDACTED]" in raised.value.mx_message
    assert caplog.records, "the retry and the call were logged"


def test_requests_are_sent_with_basic_auth_and_mx_accept_header(mx_api, client):
    mx_api.add("GET", MEMBER_URL, **member_ok())
    client.read_member(USER_GUID, MEMBER_GUID)
    sent = mx_api.calls[0].request
    assert sent.headers["Accept"] == "application/vnd.mx.api.v1+json"
    assert sent.headers["Authorization"] == requests.auth._basic_auth_str(CLIENT_ID, API_KEY)


def test_explicit_timeouts_are_passed_to_every_request(mx_api):
    with MxClient(BASE_URL, CLIENT_ID, API_KEY, timeout=(2.0, 9.0), retry=RetryPolicy(max_attempts=1)) as mx:
        mx_api.add("GET", MEMBER_URL, **member_ok())
        mx.read_member(USER_GUID, MEMBER_GUID)
    assert mx_api.calls[0].request.req_kwargs["timeout"] == (2.0, 9.0)


def test_guids_are_escaped_into_the_path(mx_api, client):
    mx_api.add("GET", f"{BASE_URL}/users/USR-a%2Fb", json={"user": p.user(guid="USR-a/b")}, content_type=MX_MEDIA_TYPE)
    assert client.read_user("USR-a/b").guid == "USR-a/b"
