"""The connect service's API: users, widget URLs per mode, reconnect links and the Connect callback."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from mx_pipeline.connect.links import ConnectIntent
from mx_pipeline_tests.connect.conftest import MX_URL, PUBLIC_URL, issue_link
from mx_pipeline_tests.contract import assert_matches_spec
from mx_pipeline_tests.mx import payloads as p

MX_TYPE = "application/vnd.mx.api.v1+json"
WIDGET = "https://int-widgets.moneydesktop.com/md/connect/abc123"


def mx_knows_user(mx_api, user_id="end-user-1", guid=p.USER_GUID):
    mx_api.add("GET", f"{MX_URL}/users", json=p.listing("users", [p.user(guid=guid, id=user_id)]), content_type=MX_TYPE)


def mx_knows_member(mx_api, member_guid=p.MEMBER_GUID, user_guid=p.USER_GUID):
    url = f"{MX_URL}/users/{user_guid}/members/{member_guid}"
    mx_api.add("GET", url, json={"member": p.member(guid=member_guid)}, content_type=MX_TYPE)


def mx_mints_widget(mx_api, user_guid=p.USER_GUID):
    body = {"widget_url": {"type": "connect_widget", "url": WIDGET, "user_id": "end-user-1"}}
    mx_api.add("POST", f"{MX_URL}/users/{user_guid}/widget_urls", json=body, content_type=MX_TYPE)


def widget_request_sent(mx_api) -> dict:
    (call,) = [c for c in mx_api.calls if c.request.url.endswith("/widget_urls")]
    assert_matches_spec(call.response)
    return json.loads(call.request.body)["widget_url"]


def test_registering_a_user_creates_it_at_mx_once_and_spools_it(http, mx_api, spool):
    mx_api.add("GET", f"{MX_URL}/users", json=p.listing("users", [], total_pages=0), content_type=MX_TYPE)
    mx_api.add("POST", f"{MX_URL}/users", json={"user": p.user(guid="USR-new", id="u-9")}, content_type=MX_TYPE)
    response = http.post("/v1/users", json={"user_id": "u-9"})
    assert response.json() == {"user_id": "u-9", "user_guid": "USR-new"}
    (event,) = spool.pending()
    assert event.kind == "user_registered" and json.loads(event.body)["user_guid"] == "USR-new"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("aggregation", {"mode": "aggregation"}),
        ("update", {"mode": "aggregation", "current_member_guid": p.MEMBER_GUID}),
        ("reconnect", {"mode": "aggregation", "current_member_guid": p.MEMBER_GUID, "update_credentials": True}),
    ],
)
def test_each_connect_mode_opens_the_widget_the_mx_way(http, mx_api, mode, expected):
    mx_knows_user(mx_api)
    mx_knows_member(mx_api)
    mx_mints_widget(mx_api)
    response = http.post("/v1/users/end-user-1/widget_urls", json={"mode": mode, "member_guid": p.MEMBER_GUID})
    assert response.status_code == 200
    assert response.json() == {"widget_url": WIDGET, "mode": mode, "expires_in_seconds": 600}
    sent = widget_request_sent(mx_api)
    assert {k: sent[k] for k in expected} == expected
    assert sent["widget_type"] == "connect_widget" and sent["ui_message_version"] == 4
    if mode == "aggregation":
        assert "current_member_guid" not in sent and "update_credentials" not in sent
    if mode == "update":
        assert "update_credentials" not in sent  # MX asks that it be used sparingly


def test_mobile_webview_options_reach_mx(http, mx_api):
    mx_knows_user(mx_api)
    mx_mints_widget(mx_api)
    http.post(
        "/v1/users/end-user-1/widget_urls",
        json={
            "is_mobile_webview": True,
            "ui_message_webview_url_scheme": "myapp",
            "client_redirect_url": "https://app.example.com/done",
        },
    )
    sent = widget_request_sent(mx_api)
    assert sent["is_mobile_webview"] is True and sent["ui_message_webview_url_scheme"] == "myapp"
    assert sent["client_redirect_url"].startswith(f"{PUBLIC_URL}/connect/callback?state=")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"mode": "update"}, "needs the member_guid"),
        ({"mode": "verification"}, "mode must be one of"),
        ({"mode": {"mode": "update"}}, "mode must be one of"),
        ({"mode": ["update"]}, "mode must be one of"),
    ],
)
def test_bad_widget_requests_get_400_with_the_reason(http, mx_api, body, reason):
    mx_knows_user(mx_api)
    response = http.post("/v1/users/end-user-1/widget_urls", json=body)
    assert response.status_code == 400 and reason in response.json()["error"]


def test_the_api_requires_the_backend_token(http):
    http.headers["Authorization"] = "Bearer wrong"
    assert http.post("/v1/users", json={"user_id": "u"}).status_code == 401


def test_a_reconnect_link_mints_a_fresh_widget_url_at_click_time(http, mx_api, links):
    link = issue_link(links, p.MEMBER_GUID, user_guid=p.USER_GUID)
    assert link.startswith(f"{PUBLIC_URL}/reconnect/")
    assert not [c for c in mx_api.calls]  # nothing minted until the click
    mx_mints_widget(mx_api)
    response = http.post(urlsplit(link).path)  # the user presses Continue on the link's page
    assert response.status_code == 303 and response.headers["location"] == WIDGET
    assert widget_request_sent(mx_api)["update_credentials"] is True


def test_a_tampered_reconnect_link_is_refused_without_calling_mx(http, mx_api, links):
    link = issue_link(links, p.MEMBER_GUID, user_guid=p.USER_GUID)
    response = http.get(urlsplit(link).path[:-3] + "xyz")
    assert response.status_code == 400 and "not valid" in response.text
    assert len(mx_api.calls) == 0


def test_the_connect_callback_records_the_member_and_returns_the_user(http, spool, links):
    state = links.callback_state(ConnectIntent("end-user-1", p.USER_GUID, "aggregation", None, "https://app/done"))
    response = http.get("/connect/callback", params={"state": state, "status": "success", "member_guid": "MBR-9"})
    assert response.status_code == 303
    back = urlsplit(response.headers["location"])
    assert back.netloc == "app" and parse_qs(back.query) == {"member_guid": ["MBR-9"], "status": ["success"]}
    (event,) = spool.pending()
    assert json.loads(event.body) == {
        "user_id": "end-user-1",
        "user_guid": p.USER_GUID,
        "member_guid": "MBR-9",
        "mode": "aggregation",
        "status": "success",
        "source": "redirect",
    }


def test_a_callback_with_forged_state_records_nothing(http, spool):
    assert http.get("/connect/callback", params={"state": "forged", "member_guid": "MBR-9"}).status_code == 400
    assert spool.pending() == []


def test_the_postmessage_relay_records_the_member(http, mx_api, spool):
    mx_knows_user(mx_api)
    mx_knows_member(mx_api, "MBR-5")
    assert http.post("/v1/users/end-user-1/members", json={"member_guid": "MBR-5"}).status_code == 204
    [event] = spooled(spool, "connect_callback")
    assert json.loads(event.body)["member_guid"] == "MBR-5"


def spooled(spool, kind: str) -> list:
    return [e for e in spool.pending() if e.kind == kind]


def test_a_callback_reloaded_in_the_browser_is_one_event_but_a_new_connect_session_is_another(http, spool, links):
    def come_back_from_connect(state: str) -> None:
        params = {"state": state, "status": "CHALLENGED", "member_guid": "MBR-9"}
        assert http.get("/connect/callback", params=params).status_code in (200, 303)

    session = links.callback_state(ConnectIntent("end-user-1", p.USER_GUID, "update", "MBR-9"))
    come_back_from_connect(session)
    come_back_from_connect(session)  # the same redirect, reloaded
    assert len(spooled(spool, "connect_callback")) == 1
    # Another Connect session has its own state (a new random id), even for the very same intent.
    later_session = links.callback_state(ConnectIntent("end-user-1", p.USER_GUID, "update", "MBR-9"))
    come_back_from_connect(later_session)  # same member, same status, yet the user came back again
    assert len(spooled(spool, "connect_callback")) == 2


def test_each_relay_is_an_event_unless_the_backend_repeats_its_idempotency_key(http, mx_api, spool):
    mx_knows_user(mx_api)
    mx_knows_member(mx_api, "MBR-5")
    for _ in range(2):
        http.post("/v1/users/end-user-1/members", json={"member_guid": "MBR-5"})
    assert len(spooled(spool, "connect_callback")) == 2  # the user connected twice: two re-reads
    for _ in range(2):
        http.post("/v1/users/end-user-1/members", json={"member_guid": "MBR-5"}, headers={"Idempotency-Key": "k1"})
    assert len(spooled(spool, "connect_callback")) == 3  # a retried POST is one


def test_minting_a_widget_url_records_which_mx_user_is_ours(http, mx_api, spool):
    mx_knows_user(mx_api)
    mx_mints_widget(mx_api)
    http.post("/v1/users/end-user-1/widget_urls", json={})
    http.post("/v1/users/end-user-1/widget_urls", json={})
    [event] = spooled(spool, "user_registered")  # once per user and MX guid, not once per URL
    assert json.loads(event.body) == {"user_id": "end-user-1", "user_guid": p.USER_GUID}


def test_a_user_registered_again_under_a_new_mx_guid_is_a_new_registration(http, mx_api, spool):
    mx_knows_user(mx_api, guid="USR-old")
    http.post("/v1/users", json={"user_id": "end-user-1"})
    mx_api.replace("GET", f"{MX_URL}/users", json=p.listing("users", [p.user(guid="USR-new", id="end-user-1")]),
                   content_type=MX_TYPE)  # fmt: skip
    http.post("/v1/users", json={"user_id": "end-user-1"})
    assert [json.loads(e.body)["user_guid"] for e in spooled(spool, "user_registered")] == ["USR-old", "USR-new"]


def test_mx_being_down_is_a_502_not_a_crash(http, mx_api):
    mx_api.add("GET", f"{MX_URL}/users", status=503, json={"error": {"message": "maintenance"}})
    response = http.post("/v1/users", json={"user_id": "u"})
    assert response.status_code == 502 and "try again" in response.json()["error"]


def test_mx_refusing_our_credentials_is_a_503_that_says_retrying_will_not_help(http, mx_api, caplog):
    mx_api.add("GET", f"{MX_URL}/users", status=401, json={"error": {"message": "Unauthorized"}})
    response = http.post("/v1/users", json={"user_id": "u"})
    assert response.status_code == 503
    assert "retrying will not help" in response.json()["error"] and "MX_API_KEY" in response.json()["error"]
    assert any(r.levelname == "ERROR" and "MX_API_KEY" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("mode", ["verification", {"mode": "reconnect"}, 7])
def test_a_relay_with_a_mode_we_do_not_have_gets_400_and_records_nothing(http, mx_api, spool, mode):
    mx_knows_user(mx_api)
    mx_knows_member(mx_api, "MBR-5")
    response = http.post("/v1/users/end-user-1/members", json={"member_guid": "MBR-5", "mode": mode})
    assert response.status_code == 400 and "mode must be one of" in response.json()["error"]
    assert spooled(spool, "connect_callback") == [] and len(mx_api.calls) == 0


@pytest.mark.parametrize("member_guid", [5, ["MBR-5"], {"guid": "MBR-5"}, ""])
def test_a_widget_request_with_a_member_guid_that_is_not_text_gets_400(http, mx_api, member_guid):
    mx_knows_user(mx_api)
    response = http.post("/v1/users/end-user-1/widget_urls", json={"mode": "update", "member_guid": member_guid})
    assert response.status_code == 400 and "member_guid" in response.json()["error"]
    assert len(mx_api.calls) == 0
