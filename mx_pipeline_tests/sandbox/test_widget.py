"""The Connect page at a widget URL, driven through its form endpoints as a browser would post them."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from mx_pipeline_tests.sandbox.widget_flows import (
    Browser,
    connect,
    delivery,
    event_types,
    events,
    member_connected,
    widget_url,
)


def test_aggregation_mode_connects_a_new_member_and_posts_member_connected(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, mode="aggregation", ui_message_version=4))
    assert event_types(browser.page) == ["mx/load", "mx/connect/loaded"]
    page = connect(browser)
    assert 'id="connected"' in page.text
    connected = member_connected(page)
    assert connected["mx"] is True and connected["type"] == "mx/connect/memberConnected"
    metadata = connected["metadata"]
    assert metadata["user_guid"] == user and metadata["session_guid"].startswith("SES-")
    members = mx.get(f"/users/{user}/members").json()["members"]
    assert [m["guid"] for m in members] == [metadata["member_guid"]]
    assert members[0]["connection_status"] == "CONNECTED"
    assert "window.parent.postMessage(e, d.target_origin)" in page.text


def test_the_page_walks_through_mfa_when_the_bank_challenges(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    page = connect(browser, "challenge")
    assert 'id="mfa-answer"' in page.text
    page = browser.post("mfa", **{"answer-0": "correct"})
    assert "mx/connect/memberConnected" in event_types(page)


def test_option_challenges_are_radio_buttons(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    page = connect(browser, "options")
    assert 'id="mfa-option-correct"' in page.text
    assert "mx/connect/memberConnected" in event_types(browser.post("mfa", **{"answer-0": "correct"}))


def test_a_wrong_password_returns_to_the_credentials_form_and_a_retry_fixes_the_same_member(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    page = connect(browser, "UNAUTHORIZED")
    assert 'id="error"' in page.text and 'name="PASSWORD"' in page.text
    page = browser.post("credentials", LOGIN="mxuser", PASSWORD="password")
    assert 'id="connected"' in page.text
    assert len(mx.get(f"/users/{user}/members").json()["members"]) == 1


def test_current_member_guid_opens_a_challenged_member_straight_on_its_mfa(mx):
    user, member = mx.connected_member()
    mx.admin("POST", f"members/{member}/connection_status", json={"connection_status": "CHALLENGED"})
    browser = Browser(widget_url(mx, user, current_member_guid=member))
    assert 'id="mfa-answer"' in browser.page.text and "institution-mxbank" not in browser.page.text
    assert events(browser.page)[1]["metadata"]["initial_step"] == "mfa"
    page = browser.post("mfa", **{"answer-0": "correct"})
    assert member_connected(page)["metadata"]["member_guid"] == member
    assert mx.member(user, member)["connection_status"] == "CONNECTED"


def test_update_credentials_opens_the_member_s_credentials_form(mx):
    user = mx.create_user()
    member = mx.create_member(user, "UNAUTHORIZED")["guid"]
    browser = Browser(widget_url(mx, user, current_member_guid=member, update_credentials=True))
    assert 'name="PASSWORD"' in browser.page.text and 'id="back"' not in browser.page.text
    page = browser.post("credentials", LOGIN="mxuser", PASSWORD="password")
    assert member_connected(page)["metadata"]["member_guid"] == member
    assert [m["guid"] for m in mx.get(f"/users/{user}/members").json()["members"]] == [member]
    assert mx.member(user, member)["connection_status"] == "CONNECTED"


def test_a_denied_member_opens_on_its_credentials_form_even_without_update_credentials(mx):
    user = mx.create_user()
    member = mx.create_member(user, "UNAUTHORIZED")["guid"]
    mx.member(user, member)
    browser = Browser(widget_url(mx, user, current_member_guid=member))
    assert 'name="PASSWORD"' in browser.page.text


def test_a_rejected_member_is_re_run_and_lands_on_a_fresh_challenge(mx):
    user = mx.create_user()
    member = mx.create_member(user, "challenge")["guid"]
    challenges = mx.get(f"/users/{user}/members/{member}/challenges").json()["challenges"]
    mx.put(
        f"/users/{user}/members/{member}/resume",
        json={"member": {"challenges": [{"guid": challenges[0]["guid"], "value": "no"}]}},
    )
    assert mx.member(user, member)["connection_status"] == "REJECTED"
    browser = Browser(widget_url(mx, user, current_member_guid=member))
    browser.reload()
    assert 'id="mfa-answer"' in browser.page.text


def test_a_locked_member_shows_the_error_with_try_again(mx):
    user = mx.create_user()
    member = mx.create_member(user, "LOCKED")["guid"]
    browser = Browser(widget_url(mx, user, current_member_guid=member))
    assert 'id="error"' in browser.page.text and 'id="retry"' in browser.page.text


def test_a_connection_without_oauth_never_redirects_to_client_redirect_url(mx):
    # MX uses client_redirect_url only at the end of an OAuth flow; the host learns the rest from the events.
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, client_redirect_url="https://app.example/connected?x=1"))
    browser.post("institution", institution_code="mxbank")
    browser.post("credentials", LOGIN="mxuser", PASSWORD="password", redirects=False)
    final = browser.http.get(browser.session_url, allow_redirects=False)
    assert final.status_code == 200 and 'id="connected"' in final.text
    assert "app.example" not in final.text
    assert "mx/connect/memberConnected" in event_types(final)


def test_a_mobile_webview_gets_each_event_as_a_navigation_to_the_app_scheme(mx):
    user = mx.create_user()
    url = widget_url(mx, user, is_mobile_webview=True, ui_message_webview_url_scheme="myapp")
    browser = Browser(url)
    assert [u.split("?")[0] for u in delivery(browser.page)["webview_urls"]] == [
        "myapp://load",
        "myapp://connect/loaded",
    ]
    browser.post("institution", institution_code="mxbank")
    page = browser.post("credentials", LOGIN="mxuser", PASSWORD="password")
    assert page.status_code == 200 and delivery(page)["target_origin"] is None
    urls = delivery(page)["webview_urls"]
    connected = next(u for u in urls if u.startswith("myapp://connect/memberConnected?metadata="))
    metadata = json.loads(parse_qs(urlsplit(connected).query)["metadata"][0])
    assert metadata == {
        "user_guid": user,
        "session_guid": metadata["session_guid"],
        "member_guid": metadata["member_guid"],
    }
    assert metadata["member_guid"].startswith("MBR-") and metadata["session_guid"].startswith("SES-")


def test_the_page_shows_connecting_while_the_member_aggregates(start_sandbox):
    mx = start_sandbox(aggregation_seconds=30)
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    page = connect(browser)
    assert 'id="connecting"' in page.text and 'http-equiv="refresh"' in page.text
    assert "mx/connect/memberStatusUpdate" not in event_types(page)  # MX posts changes, not the initial status
    assert 'id="connecting"' in browser.reload().text and event_types(browser.page) == []
    mx.admin("POST", "clock/advance", json={"seconds": 30})
    page = browser.reload()
    assert 'id="connected"' in page.text
    update, connected, step = events(page)
    assert update["type"] == "mx/connect/memberStatusUpdate"
    assert update["metadata"]["connection_status"] == 6  # CONNECTED's id
    assert connected["type"] == "mx/connect/memberConnected"
    assert step["metadata"] == {**step["metadata"], "previous": "connecting", "current": "connected"}


def test_verification_mode_connects_without_transactions(mx):
    user = mx.create_user()
    connect(Browser(widget_url(mx, user, mode="verification")))
    assert mx.get(f"/users/{user}/accounts").json()["accounts"]
    assert mx.get(f"/users/{user}/transactions").json()["transactions"] == []


def test_current_institution_code_skips_the_search(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, current_institution_code="mxbank"))
    assert 'name="LOGIN"' in browser.page.text


def test_the_search_filters_institutions(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    page = browser.reload(q="credit union")
    assert "institution-sandboxcu" in page.text and "institution-mxbank" not in page.text


def test_a_widget_url_works_once(mx):
    user = mx.create_user()
    url = widget_url(mx, user)
    assert requests.get(url).status_code == 200
    assert requests.get(url).status_code == 410


@pytest.mark.parametrize(("seconds", "status"), [(599, 200), (600, 410)])
def test_a_widget_url_expires_after_ten_minutes(mx, seconds, status):
    user = mx.create_user()
    url = widget_url(mx, user)
    mx.admin("POST", "clock/advance", json={"seconds": seconds})
    assert requests.get(url).status_code == status


def test_a_widget_url_for_an_unknown_member_is_refused(mx):
    user = mx.create_user()
    body = {"widget_url": {"widget_type": "connect_widget", "current_member_guid": "MBR-nope"}}
    assert mx.post(f"/users/{user}/widget_urls", json=body).status_code == 404


def test_events_raised_by_a_form_post_are_posted_by_the_next_page(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    page = browser.post("institution", institution_code="mxbank")
    selected, step = events(page)
    assert selected["type"] == "mx/connect/selectedInstitution"
    assert selected["metadata"]["code"] == "mxbank" and selected["metadata"]["name"] == "MX Bank"
    assert step["type"] == "mx/connect/stepChange"
    assert (step["metadata"]["previous"], step["metadata"]["current"]) == ("search", "enterCreds")


def test_member_connected_is_posted_once_per_session(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    assert "mx/connect/memberConnected" in event_types(connect(browser))
    assert "mx/connect/memberConnected" not in event_types(browser.reload())


def test_done_posts_the_primary_action_event(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    connect(browser)
    assert event_types(browser.post("done")) == ["mx/connect/connected/primaryAction"]


def test_disable_institution_search_hides_the_way_back(mx):
    user = mx.create_user()
    url = widget_url(mx, user, current_institution_code="mxbank", disable_institution_search=True)
    page = Browser(url).page
    assert 'name="LOGIN"' in page.text and 'id="back"' not in page.text


def test_the_whole_product_flow_through_the_page_and_the_api(mx):
    user = mx.create_user()
    page = connect(Browser(widget_url(mx, user)))
    member = member_connected(page)["metadata"]["member_guid"]
    status = mx.get(f"/users/{user}/members/{member}/status").json()["member"]
    assert status["connection_status"] == "CONNECTED" and status["is_being_aggregated"] is False
    assert mx.post(f"/users/{user}/members/{member}/aggregate").status_code == 202
    accounts = mx.get(f"/users/{user}/members/{member}/accounts").json()["accounts"]
    transactions = mx.get(f"/users/{user}/members/{member}/transactions", params={"records_per_page": 1000})
    assert accounts and transactions.json()["pagination"]["total_entries"] > 100
