"""The Connect page at a widget URL, driven through its form endpoints as a browser would post them."""

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

EVENTS = re.compile(r'<script type="application/json" id="mx-post-messages">(.*?)</script>', re.S)


def widget_url(mx, user, **options) -> str:
    body = {"widget_url": {"widget_type": "connect_widget", **options}}
    return mx.post(f"/users/{user}/widget_urls", json=body).json()["widget_url"]["url"]


def events(page: requests.Response) -> list[dict]:
    return json.loads(EVENTS.search(page.text).group(1))


def event_types(page):
    return [e["type"] for e in events(page)]


class Browser:
    """A person clicking through the page: follows redirects, remembers where the session lives."""

    def __init__(self, url: str) -> None:
        self.http = requests.Session()
        self.page = self.http.get(url)
        self.session_url = self.page.url

    def post(self, step: str, redirects: bool = True, **form) -> requests.Response:
        self.page = self.http.post(f"{self.session_url}/{step}", data=form, allow_redirects=redirects)
        return self.page

    def reload(self) -> requests.Response:
        self.page = self.http.get(self.session_url)
        return self.page


def connect(browser: Browser, password: str = "password") -> requests.Response:
    assert 'id="institution-mxbank"' in browser.page.text
    browser.post("institution", institution_code="mxbank")
    assert 'name="LOGIN"' in browser.page.text and 'name="PASSWORD"' in browser.page.text
    assert 'id="submit"' in browser.page.text
    return browser.post("credentials", LOGIN="mxuser", PASSWORD=password)


def test_aggregation_mode_connects_a_new_member_and_posts_member_connected(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, mode="aggregation", ui_message_version=4))
    assert events(browser.page)[0]["type"] == "mx/connect/loaded"
    page = connect(browser)
    assert 'id="connected"' in page.text
    connected = events(page)[-1]
    assert connected["mx"] is True and connected["type"] == "mx/connect/memberConnected"
    metadata = connected["metadata"]
    assert metadata["user_guid"] == user and metadata["session_guid"].startswith("SES-")
    members = mx.get(f"/users/{user}/members").json()["members"]
    assert [m["guid"] for m in members] == [metadata["member_guid"]]
    assert members[0]["connection_status"] == "CONNECTED"
    assert "window.parent.postMessage" in page.text


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
    assert events(browser.page)[0]["metadata"]["initial_step"] == "mfa"
    page = browser.post("mfa", **{"answer-0": "correct"})
    assert events(page)[-1]["metadata"]["member_guid"] == member
    assert mx.member(user, member)["connection_status"] == "CONNECTED"


def test_update_credentials_opens_the_member_s_credentials_form(mx):
    user = mx.create_user()
    member = mx.create_member(user, "UNAUTHORIZED")["guid"]
    browser = Browser(widget_url(mx, user, current_member_guid=member, update_credentials=True))
    assert 'name="PASSWORD"' in browser.page.text and 'id="back"' not in browser.page.text
    page = browser.post("credentials", LOGIN="mxuser", PASSWORD="password")
    assert events(page)[-1]["metadata"]["member_guid"] == member
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


def test_client_redirect_url_receives_the_member_guid(mx):
    user = mx.create_user()
    browser = Browser(widget_url(mx, user, client_redirect_url="https://app.example/connected?x=1"))
    browser.post("institution", institution_code="mxbank")
    browser.post("credentials", LOGIN="mxuser", PASSWORD="password", redirects=False)
    final = browser.http.get(browser.session_url, allow_redirects=False)
    assert final.status_code == 303
    location = urlsplit(final.headers["Location"])
    assert location.netloc == "app.example"
    query = parse_qs(location.query)
    assert query["x"] == ["1"] and query["member_guid"][0].startswith("MBR-")


def test_a_mobile_webview_is_sent_to_the_app_scheme_with_member_connected_metadata(mx):
    user = mx.create_user()
    url = widget_url(mx, user, is_mobile_webview=True, ui_message_webview_url_scheme="myapp")
    browser = Browser(url)
    browser.post("institution", institution_code="mxbank")
    browser.post("credentials", LOGIN="mxuser", PASSWORD="password", redirects=False)
    final = browser.http.get(browser.session_url, allow_redirects=False)
    location = final.headers["Location"]
    assert location.startswith("myapp://connect/memberConnected?metadata=")
    metadata = json.loads(parse_qs(urlsplit(location).query)["metadata"][0])
    assert metadata["user_guid"] == user and metadata["member_guid"].startswith("MBR-")


def test_the_page_shows_connecting_while_the_member_aggregates(start_sandbox):
    mx = start_sandbox(aggregation_seconds=30)
    user = mx.create_user()
    browser = Browser(widget_url(mx, user))
    page = connect(browser)
    assert 'id="connecting"' in page.text and 'http-equiv="refresh"' in page.text
    assert "mx/connect/memberStatusUpdate" in event_types(page)
    mx.admin("POST", "clock/advance", json={"seconds": 30})
    assert 'id="connected"' in browser.reload().text


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
    page = browser.http.get(browser.session_url, params={"q": "credit union"})
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
    selected = events(page)[0]
    assert selected["type"] == "mx/connect/selectedInstitution"
    assert selected["metadata"]["code"] == "mxbank" and selected["metadata"]["name"] == "MX Bank"
    assert event_types(page)[1:] == ["mx/connect/enterCredentials"]


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
    member = events(page)[-1]["metadata"]["member_guid"]
    status = mx.get(f"/users/{user}/members/{member}/status").json()["member"]
    assert status["connection_status"] == "CONNECTED" and status["is_being_aggregated"] is False
    assert mx.post(f"/users/{user}/members/{member}/aggregate").status_code == 202
    accounts = mx.get(f"/users/{user}/members/{member}/accounts").json()["accounts"]
    transactions = mx.get(f"/users/{user}/members/{member}/transactions", params={"records_per_page": 1000})
    assert accounts and transactions.json()["pagination"]["total_entries"] > 100
