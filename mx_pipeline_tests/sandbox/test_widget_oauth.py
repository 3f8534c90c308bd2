"""MX Bank (OAuth) in the sandbox's Connect page: the bank's own sign-in page, and client_redirect_url used only at
the end of an OAuth flow in a WebView or with oauth_referral_source APP."""

import json
from urllib.parse import parse_qs, urlsplit

import requests

from mx_pipeline_tests.sandbox.widget_flows import Browser, delivery, event_types, member_connected, widget_url


def requested_sign_in(browser: Browser, opens_a_window: bool = True) -> dict:
    """Pick MX Bank (OAuth) and press its sign-in button: the ``oauthRequested`` metadata."""
    browser.post("institution", institution_code="mxbank_oauth")
    assert 'id="oauth-sign-in"' in browser.page.text and 'name="PASSWORD"' not in browser.page.text
    assert ('onclick="window.open(' in browser.page.text) == opens_a_window  # in a browser, as connect-widget does
    browser.post("oauth")
    (requested,) = [e for e in browser.delivered if e["type"] == "mx/connect/oauthRequested"]
    return requested["metadata"]


def test_the_catalogue_has_an_oauth_bank(mx):
    institution = mx.get("/institutions/mxbank_oauth").json()["institution"]
    assert (institution["name"], institution["supports_oauth"]) == ("MX Bank (OAuth)", True)


def test_in_a_browser_the_bank_s_approval_redirects_nowhere_and_connect_posts_member_connected(mx):
    user = mx.create_user()
    url = widget_url(mx, user, client_redirect_url="https://app.example/back")  # BROWSER: unused
    browser = Browser(url, Referer="https://app.example/")
    requested = requested_sign_in(browser)
    assert 'id="oauth-waiting"' in browser.page.text
    member = mx.member(user, requested["member_guid"])
    assert (member["connection_status"], member["is_oauth"]) == ("PENDING", True)

    bank = requests.get(requested["url"])
    assert 'id="authorize"' in bank.text
    answer = requests.post(requested["url"], data={"decision": "approve"}, allow_redirects=False)
    assert answer.status_code == 200 and 'id="oauth-success"' in answer.text

    page = browser.reload()
    assert 'id="connected"' in page.text
    assert member_connected(page)["metadata"]["member_guid"] == requested["member_guid"]
    assert mx.member(user, requested["member_guid"])["connection_status"] == "CONNECTED"


def test_in_a_webview_the_end_of_oauth_redirects_to_client_redirect_url_with_status_and_member_guid(mx):
    user = mx.create_user()
    url = widget_url(
        mx,
        user,
        is_mobile_webview=True,
        ui_message_webview_url_scheme="myapp",
        client_redirect_url="https://service.example/connect/callback?state=abc",
    )
    browser = Browser(url)
    requested = requested_sign_in(browser, opens_a_window=False)  # the app opens it in the system browser
    (navigation,) = [u for u in delivery(browser.page)["webview_urls"] if "oauthRequested" in u]
    assert navigation.startswith("myapp://connect/oauthRequested?metadata=")
    assert json.loads(parse_qs(urlsplit(navigation).query)["metadata"][0])["url"] == requested["url"]

    answer = requests.post(requested["url"], data={"decision": "approve"}, allow_redirects=False)
    assert answer.status_code == 303
    location = urlsplit(answer.headers["Location"])
    assert (location.netloc, location.path) == ("service.example", "/connect/callback")
    assert parse_qs(location.query) == {
        "state": ["abc"],
        "status": ["success"],
        "member_guid": [requested["member_guid"]],
    }
    page = browser.reload()
    assert any(u.startswith("myapp://connect/memberConnected?") for u in delivery(page)["webview_urls"])


def test_app_referral_without_client_redirect_url_returns_to_the_app_scheme(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, oauth_referral_source="APP", ui_message_webview_url_scheme="myapp"))
    requested = requested_sign_in(browser, opens_a_window=False)
    answer = requests.post(requested["url"], data={"decision": "approve"}, allow_redirects=False)
    assert answer.headers["Location"] == f"myapp://oauth_complete?status=success&member_guid={requested['member_guid']}"


def test_a_denial_shows_connect_s_oauth_error_and_the_sign_in_closes(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    requested = requested_sign_in(browser)
    assert requests.post(requested["url"], data={"decision": "deny"}).status_code == 200
    page = browser.reload()
    assert 'id="retry"' in page.text and "mx/connect/oauthError" in event_types(page)
    assert requests.post(requested["url"], data={"decision": "approve"}).status_code == 410
    assert requests.get(requested["url"]).status_code == 410
