"""Each MX operation the client implements: the request it sends and the record it returns.

Every exchange here is checked against MX's official spec by the ``mx_api`` fixture (request path, method,
query, headers and body; response status and body), so this module is also the client's contract test.
"""

import datetime as dt
import inspect
import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
import urllib3

from mx_pipeline.mx import Conflict, ConnectionStatus, MxClient, ServerError
from mx_pipeline.mx.client import USER_CREATE_ATTEMPTS
from mx_pipeline_tests.mx import payloads as p
from mx_pipeline_tests.mx.payloads import BASE_URL, MEMBER_GUID, MX_MEDIA_TYPE, USER_GUID

U, M = USER_GUID, MEMBER_GUID
MEMBER_PATH = f"/users/{U}/members/{M}"


def serve(mx_api, method, path, body=None, status=200, **query):
    matchers = [responses.matchers.query_param_matcher(query, strict_match=False)] if query else []
    kwargs = {"json": body} if body is not None else {}
    mx_api.add(
        method, BASE_URL + path, status=status, content_type=MX_MEDIA_TYPE, match=matchers, **kwargs
    )  # fmt: skip


def sent_json(mx_api, index=-1):
    return json.loads(mx_api.calls[index].request.body)


def sent_query(mx_api, index=-1):
    return {k: v[0] for k, v in parse_qs(urlsplit(mx_api.calls[index].request.url).query).items()}


# (client method, how to call it, what MX serves) -- one row per operation the client implements.
OPERATIONS = {
    "list_users": (lambda c: list(c.list_users()), "GET", "/users", p.listing("users", [p.user()])),
    "create_user": (lambda c: c.create_user(id="end-user-1"), "POST", "/users", {"user": p.user()}),
    "read_user": (lambda c: c.read_user(U), "GET", f"/users/{U}", {"user": p.user()}),
    "update_user": (lambda c: c.update_user(U, metadata="tier=gold"), "PUT", f"/users/{U}", {"user": p.user()}),
    "delete_user": (lambda c: c.delete_user(U), "DELETE", f"/users/{U}", None),
    "request_widget_url": (
        lambda c: c.request_widget_url(U, mode="aggregation"),
        "POST",
        f"/users/{U}/widget_urls",
        {
            "widget_url": {
                "type": "connect_widget",
                "url": "https://int-widgets.moneydesktop.com/md/connect/t",
                "user_id": "end-user-1",
            }
        },
    ),
    "list_institutions": (
        lambda c: list(c.list_institutions(name="mx")),
        "GET",
        "/institutions",
        p.listing("institutions", [p.institution()]),
    ),
    "read_institution": (
        lambda c: c.read_institution("mxbank"),
        "GET",
        "/institutions/mxbank",
        {"institution": p.institution()},
    ),
    "list_institution_credentials": (
        lambda c: c.list_institution_credentials("mxbank"),
        "GET",
        "/institutions/mxbank/credentials",
        p.listing("credentials", [p.credential("CRD-1", "LOGIN", "Username", 1)]),
    ),
    "list_members": (
        lambda c: list(c.list_members(U)),
        "GET",
        f"/users/{U}/members",
        p.listing("members", [p.member()]),
    ),
    "create_member": (
        lambda c: c.create_member(U, institution_code="mxbank", credentials={"CRD-1": "mxuser", "CRD-2": "pw"}),
        "POST",
        f"/users/{U}/members",
        {"member": p.member(status="CREATED", aggregating=True)},
    ),
    "read_member": (lambda c: c.read_member(U, M), "GET", MEMBER_PATH, {"member": p.member()}),
    "update_member": (
        lambda c: c.update_member(U, M, credentials={"CRD-2": "new-password"}),
        "PUT",
        MEMBER_PATH,
        {"member": p.member(status="UPDATED", aggregating=True)},
    ),
    "delete_member": (lambda c: c.delete_member(U, M), "DELETE", MEMBER_PATH, None),
    "read_member_status": (
        lambda c: c.read_member_status(U, M),
        "GET",
        MEMBER_PATH + "/status",
        {"member": p.member_status()},
    ),
    "aggregate_member": (
        lambda c: c.aggregate_member(U, M),
        "POST",
        MEMBER_PATH + "/aggregate",
        {"member": p.member(aggregating=True)},
    ),
    "check_balances": (
        lambda c: c.check_balances(U, M),
        "POST",
        MEMBER_PATH + "/check_balance",
        {"member": p.member(aggregating=True)},
    ),
    "list_member_challenges": (
        lambda c: c.list_member_challenges(U, M),
        "GET",
        MEMBER_PATH + "/challenges",
        p.listing("challenges", [p.challenge()]),
    ),
    "resume_aggregation": (
        lambda c: c.resume_aggregation(U, M, {"CRD-ce76d2e3-86bd-ec4a-ec52-eb53b5194bf5": "correct"}),
        "PUT",
        MEMBER_PATH + "/resume",
        {"member": p.member(status="RESUMED", aggregating=True)},
    ),
    "list_member_credentials": (
        lambda c: c.list_member_credentials(U, M),
        "GET",
        MEMBER_PATH + "/credentials",
        p.listing("credentials", [p.credential("CRD-1", "LOGIN", "Username", 1)]),
    ),
    "list_member_accounts": (
        lambda c: list(c.list_member_accounts(U, M)),
        "GET",
        MEMBER_PATH + "/accounts",
        p.listing("accounts", [p.account()]),
    ),
    "list_user_accounts": (
        lambda c: list(c.list_user_accounts(U)),
        "GET",
        f"/users/{U}/accounts",
        p.listing("accounts", [p.account()]),
    ),
    "list_member_transactions": (
        lambda c: list(c.list_member_transactions(U, M, from_date=dt.date(2026, 11, 1))),
        "GET",
        MEMBER_PATH + "/transactions",
        p.listing("transactions", [p.transaction()]),
    ),
    "list_member_transaction_pages": (
        lambda c: list(c.list_member_transaction_pages(U, M, from_date=dt.date(2026, 11, 1))),
        "GET",
        MEMBER_PATH + "/transactions",
        p.listing("transactions", [p.transaction()]),
    ),
    "list_default_categories": (
        lambda c: list(c.list_default_categories()),
        "GET",
        "/categories/default",
        p.listing(
            "categories", [p.category("CAT-7829f71c-2e8c-afa5-2f55-fa3634b89874", "Auto & Transport")], per_page=100
        ),
    ),
}
SUCCESS_STATUS = {"delete_user": 204, "delete_member": 204, "create_member": 202, "aggregate_member": 202,
                  "check_balances": 202, "resume_aggregation": 202}  # fmt: skip
# Helpers built on the operations above rather than MX operations of their own.
COMPOSITES = {"ensure_user", "from_settings", "close"}


def test_every_public_client_method_is_exercised_against_the_spec():
    public = {name for name, _ in inspect.getmembers(MxClient, inspect.isfunction) if not name.startswith("_")}
    assert public - COMPOSITES == set(OPERATIONS)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_operation_round_trips_within_the_spec(mx_api, client, operation):
    call, method, path, body = OPERATIONS[operation]
    serve(mx_api, method, path, body, status=SUCCESS_STATUS.get(operation, 200))
    result = call(client)
    assert len(mx_api.calls) == 1
    request = mx_api.calls[0].request
    assert request.method == method
    assert request.headers["Accept"] == MX_MEDIA_TYPE
    assert request.headers["Authorization"].startswith("Basic ")
    if body is None:
        assert result is None
    else:
        assert result is not None


def test_list_requests_the_largest_page_the_endpoint_allows(mx_api, client):
    serve(mx_api, "GET", MEMBER_PATH + "/transactions", p.listing("transactions", []))
    serve(mx_api, "GET", "/categories/default", p.listing("categories", [], per_page=100))
    list(client.list_member_transactions(U, M))
    list(client.list_default_categories())
    assert sent_query(mx_api, 0)["records_per_page"] == "1000"  # recordsPerPageMax1000
    assert sent_query(mx_api, 1)["records_per_page"] == "100"  # recordsPerPage (10-100)


def test_transaction_filters_are_sent_as_iso_dates(mx_api, client):
    serve(mx_api, "GET", MEMBER_PATH + "/transactions", p.listing("transactions", []))
    list(
        client.list_member_transactions(
            U, M, from_date=dt.date(2026, 8, 1), to_date=dt.date(2026, 11, 30),
            from_updated_at=dt.datetime(2026, 11, 20, 23, 59, tzinfo=dt.UTC),
        )
    )  # fmt: skip
    query = sent_query(mx_api)
    assert query["from_date"] == "2026-08-01"
    assert query["to_date"] == "2026-11-30"
    assert query["from_updated_at"] == "2026-11-20"
    assert "to_updated_at" not in query


def test_transactions_keep_money_exact_and_mx_names(mx_api, client):
    raw = p.transaction(amount=0.1)
    mx_api.add("GET", BASE_URL + MEMBER_PATH + "/transactions", content_type=MX_MEDIA_TYPE,
               body=json.dumps(p.listing("transactions", [raw])).replace("0.1", "0.10"))  # fmt: skip
    (txn,) = client.list_member_transactions(U, M)
    assert txn.amount == Decimal("0.10") and str(txn.amount) == "0.10"
    assert txn.type == "DEBIT" and txn.status == "POSTED"
    assert txn.date == dt.date(2026, 11, 20)
    assert txn.posted_at == dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
    assert txn.original_description == "WHOLEFDS MKT 10234 AUSTIN TX"
    assert txn.payload["merchant_category_code"] == 5411


def test_create_member_sends_credentials_as_guid_value_pairs(mx_api, client):
    serve(mx_api, "POST", f"/users/{U}/members", {"member": p.member(status="CREATED")}, status=202)
    member = client.create_member(U, institution_code="mxbank", credentials={"CRD-1": "mxuser", "CRD-2": "challenge"})
    assert sent_json(mx_api) == {
        "member": {
            "institution_code": "mxbank",
            "credentials": [{"guid": "CRD-1", "value": "mxuser"}, {"guid": "CRD-2", "value": "challenge"}],
        }
    }
    assert member.status is ConnectionStatus.CREATED


def test_widget_url_for_update_mode_opens_the_member_without_new_credentials(mx_api, client):
    body = {"widget_url": {"type": "connect_widget", "url": "https://w/connect/abc", "user_id": "end-user-1"}}
    serve(mx_api, "POST", f"/users/{U}/widget_urls", body)
    widget = client.request_widget_url(
        U, mode="aggregation", current_member_guid=M, is_mobile_webview=True,
        client_redirect_url="https://app.example.com/mx/done", ui_message_webview_url_scheme="myapp",
    )  # fmt: skip
    assert widget.url == "https://w/connect/abc"
    assert sent_json(mx_api) == {
        "widget_url": {
            "widget_type": "connect_widget",
            "mode": "aggregation",
            "current_member_guid": M,
            "is_mobile_webview": True,
            "client_redirect_url": "https://app.example.com/mx/done",
            "ui_message_webview_url_scheme": "myapp",
            "ui_message_version": 4,
        }
    }


def test_widget_url_for_reconnect_mode_asks_for_fresh_credentials(mx_api, client):
    body = {"widget_url": {"type": "connect_widget", "url": "https://w/connect/def", "user_id": None}}
    serve(mx_api, "POST", f"/users/{U}/widget_urls", body)
    client.request_widget_url(U, current_member_guid=M, update_credentials=True, language="fr-CA")
    assert sent_json(mx_api)["widget_url"]["update_credentials"] is True
    assert mx_api.calls[0].request.headers["Accept-Language"] == "fr-CA"


def test_resume_sends_answers_keyed_by_challenge_guid(mx_api, client):
    serve(mx_api, "PUT", MEMBER_PATH + "/resume", {"member": p.member(status="RESUMED")}, status=202)
    client.resume_aggregation(U, M, {"CRD-1": "correct"})
    assert sent_json(mx_api) == {"member": {"challenges": [{"guid": "CRD-1", "value": "correct"}]}}


def test_challenges_of_a_member_that_is_not_challenged_are_empty(mx_api, client):
    serve(mx_api, "GET", MEMBER_PATH + "/challenges", status=204)
    assert client.list_member_challenges(U, M) == []


def test_member_status_reports_challenged_with_its_questions(mx_api, client):
    serve(mx_api, "GET", MEMBER_PATH + "/status", {"member": p.member_status("CHALLENGED", challenges=[p.challenge()])})
    status = client.read_member_status(U, M)
    assert status.status is ConnectionStatus.CHALLENGED
    assert not status.is_done_aggregating
    assert status.challenges[0]["label"] == "What city were you born in?"


def test_a_status_mx_adds_later_is_kept_verbatim_and_never_crashes(mx_api, client):
    serve(mx_api, "GET", MEMBER_PATH, {"member": p.member(status="SOMETHING_NEW")})
    member = client.read_member(U, M)
    assert member.connection_status == "SOMETHING_NEW"
    assert member.status is None


def test_ensure_user_finds_before_it_creates(mx_api, client):
    serve(mx_api, "GET", "/users", p.listing("users", [p.user()]), id="end-user-1")
    user = client.ensure_user(id="end-user-1")
    assert user.guid == USER_GUID
    assert [c.request.method for c in mx_api.calls] == ["GET"]


def test_ensure_user_creates_when_absent(mx_api, client):
    serve(mx_api, "GET", "/users", p.listing("users", [], total_pages=0), id="end-user-2")
    serve(mx_api, "POST", "/users", {"user": p.user(guid="USR-new", id="end-user-2")})
    assert client.ensure_user(id="end-user-2").guid == "USR-new"
    assert sent_json(mx_api) == {"user": {"id": "end-user-2"}}


def test_ensure_user_survives_a_concurrent_create(mx_api, client):
    absent, present = p.listing("users", [], total_pages=0), p.listing("users", [p.user(id="end-user-3")])
    serve(mx_api, "GET", "/users", absent, id="end-user-3")
    serve(mx_api, "POST", "/users", {"error": {"message": "User already exists"}}, status=409)
    serve(mx_api, "GET", "/users", present, id="end-user-3")
    assert client.ensure_user(id="end-user-3").id == "end-user-3"


def _dropped() -> requests.ConnectionError:
    """The request reached MX, then the connection died before the answer: MX may have acted on it."""
    return requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()))


LOST_ANSWERS = {
    "5xx": {"status": 500, "json": {"error": {"message": "Internal error"}}},
    "dropped connection": {"body": _dropped()},
    "garbled 200": {"status": 200, "body": b'{"user": {"guid": "US', "content_type": MX_MEDIA_TYPE},
}


@pytest.mark.off_contract  # the garbled answer is not MX's shape, by design
@pytest.mark.parametrize("answer", LOST_ANSWERS.values(), ids=LOST_ANSWERS.keys())
def test_ensure_user_finds_the_user_mx_created_when_the_create_answer_is_lost(mx_api, client, answer):
    absent, present = p.listing("users", [], total_pages=0), p.listing("users", [p.user(id="end-user-4")])
    serve(mx_api, "GET", "/users", absent, id="end-user-4")
    mx_api.add("POST", BASE_URL + "/users", **answer)
    serve(mx_api, "GET", "/users", present, id="end-user-4")

    assert client.ensure_user(id="end-user-4").guid == USER_GUID
    assert [c.request.method for c in mx_api.calls] == ["GET", "POST", "GET"]  # looked up, never created twice


def test_ensure_user_creates_again_only_when_the_user_truly_is_absent(mx_api, client, sleeps):
    absent = p.listing("users", [], total_pages=0)
    serve(mx_api, "GET", "/users", absent, id="end-user-5")
    serve(mx_api, "POST", "/users", {"error": {"message": "Service unavailable"}}, status=503)
    serve(mx_api, "GET", "/users", absent, id="end-user-5")
    serve(mx_api, "POST", "/users", {"user": p.user(guid="USR-second", id="end-user-5")})

    assert client.ensure_user(id="end-user-5").guid == "USR-second"
    assert [c.request.method for c in mx_api.calls] == ["GET", "POST", "GET", "POST"]
    assert sleeps == [0.5]  # the transport's backoff before the second create


def test_ensure_user_gives_up_after_a_bounded_number_of_creates(mx_api, client, sleeps):
    serve(mx_api, "GET", "/users", p.listing("users", [], total_pages=0), id="end-user-6")
    serve(mx_api, "POST", "/users", {"error": {"message": "Internal error"}}, status=500)  # on every attempt
    with pytest.raises(ServerError):
        client.ensure_user(id="end-user-6")
    methods = [c.request.method for c in mx_api.calls]
    assert methods == ["GET", "POST"] * USER_CREATE_ATTEMPTS + ["GET"]  # the last create is looked up too


def test_conflict_on_create_member_is_typed(mx_api, client):
    serve(mx_api, "POST", f"/users/{U}/members", {"error": {"message": "Member already exists"}}, status=409)
    with pytest.raises(Conflict, match="Member already exists"):
        client.create_member(U, institution_code="mxbank", credentials={"CRD-1": "mxuser"})
