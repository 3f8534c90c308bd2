"""Reconnect links: opaque, bound to their episode, 7 days unopened, 30 minutes once opened, refused in plain words."""

import base64
import binascii
import contextlib
import datetime as dt
import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from mx_pipeline.connect.link_store import ClosedWhy, LinkRequest
from mx_pipeline.connect.links import ConnectIntent, Links, reconnect_url
from mx_pipeline_tests.connect.conftest import LINK_SECRET, MX_URL, PUBLIC_URL, issue_link
from mx_pipeline_tests.connect.test_app import WIDGET, mx_mints_widget
from mx_pipeline_tests.mx import payloads as p

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
WHO = {"user_id": "end-user-1", "user_guid": p.USER_GUID}


@pytest.fixture
def clock() -> list[dt.datetime]:
    return [START]


@pytest.fixture
def links(tmp_path, clock):
    """The service's links on a clock the test moves (no test ever sleeps)."""
    return Links.at(LINK_SECRET, tmp_path / "links.sqlite", clock=lambda: clock[0])


def click(http, link: str):
    """The user opens the link and presses Continue (only the press opens it)."""
    return http.post(urlsplit(link).path)


def minted(mx_api) -> int:
    return len([c for c in mx_api.calls if c.request.url.endswith("/widget_urls")])


@pytest.mark.parametrize(
    ("why", "words"),
    [
        (ClosedWhy.RECOVERED, "Your bank connection is working again, so there is nothing to do"),
        (ClosedWhy.ENDED, "This bank connection has ended"),
        (ClosedWhy.RETIRED, "This bank connection no longer exists"),
    ],
)
def test_a_link_after_its_episode_closed_is_refused_with_a_friendly_page(http, mx_api, links, why, words):
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    links.store.close({(p.MEMBER_GUID, 1): why})
    response = click(http, link)
    assert response.status_code == 410 and words in response.text
    assert p.MEMBER_GUID not in response.text and p.USER_GUID not in response.text and "Traceback" not in response.text
    assert minted(mx_api) == 0  # Connect is never opened on a member that needs nothing


def test_closing_an_episode_leaves_the_next_episodes_link_working(http, mx_api, links):
    first = issue_link(links, p.MEMBER_GUID, episode=1, **WHO)
    links.store.close({(p.MEMBER_GUID, 1): ClosedWhy.RECOVERED})
    second = issue_link(links, p.MEMBER_GUID, episode=2, **WHO)
    mx_mints_widget(mx_api)
    assert (click(http, first).status_code, click(http, second).status_code) == (410, 303)


def test_a_link_reopened_within_30_minutes_works_and_after_that_it_is_refused_as_used(http, mx_api, links, clock):
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    mx_mints_widget(mx_api)
    assert click(http, link).headers["location"] == WIDGET  # opened at 9:00
    clock[0] = START + dt.timedelta(minutes=29)
    assert click(http, link).status_code == 303  # a reload: a fresh widget URL (MX's died at first use)
    clock[0] = START + dt.timedelta(minutes=30)
    response = click(http, link)
    assert response.status_code == 410 and "This link has already been used" in response.text
    assert minted(mx_api) == 2


def test_an_unopened_link_is_refused_after_7_days(http, mx_api, links, clock):
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    mx_mints_widget(mx_api)
    clock[0] = START + dt.timedelta(days=7)
    response = click(http, link)
    assert response.status_code == 410 and "This link has expired" in response.text
    assert minted(mx_api) == 0


def test_an_unopened_link_opens_on_its_last_day(http, mx_api, links, clock):
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    mx_mints_widget(mx_api)
    clock[0] = START + dt.timedelta(days=7) - dt.timedelta(seconds=1)
    assert click(http, link).status_code == 303


def test_a_link_whose_notification_waited_lives_7_days_from_when_it_went_out(http, mx_api, links, clock):
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    (link_id,) = links.store.issue([LinkRequest(p.MEMBER_GUID, 1, "end-user-1", p.USER_GUID, "reconnect")]).values()
    clock[0] = START + dt.timedelta(days=5)  # the product backend was down; the notification goes out now
    links.store.sent([link_id])
    clock[0] = START + dt.timedelta(days=11)
    mx_mints_widget(mx_api)
    assert click(http, link).status_code == 303


def test_the_token_holds_no_user_id_member_guid_or_user_guid_not_even_decoded(links):
    link = issue_link(links, p.MEMBER_GUID, user_id="end-user-1", user_guid=p.USER_GUID)
    token = urlsplit(link).path.rsplit("/", 1)[-1]
    readable = [token]
    for part in token.split("."):
        for pad in ("", "=", "=="):
            with contextlib.suppress(binascii.Error, ValueError):
                readable.append(base64.urlsafe_b64decode(part + pad).decode("latin-1"))
    for identifier in ("end-user-1", p.USER_GUID, p.MEMBER_GUID, "USR-", "MBR-", "reconnect"):
        assert not [text for text in readable if identifier in text], identifier


def test_the_same_episode_always_gets_the_same_link_and_url(links, tmp_path):
    first = issue_link(links, p.MEMBER_GUID, mode="update", **WHO)
    again = issue_link(links, p.MEMBER_GUID, mode="reconnect", **WHO)  # a later read asks for new credentials
    elsewhere = Links.at(LINK_SECRET, tmp_path / "links.sqlite")  # another process: the pipeline, a later run
    (link_id,) = elsewhere.store.issue([LinkRequest(p.MEMBER_GUID, 1, "end-user-1", p.USER_GUID, "x")]).values()
    assert first == again == reconnect_url(PUBLIC_URL, elsewhere.signer, link_id)
    assert first != issue_link(links, p.MEMBER_GUID, episode=2, **WHO)


def test_an_unopened_link_opens_connect_in_the_mode_the_latest_read_asks(http, mx_api, links):
    issue_link(links, p.MEMBER_GUID, mode="update", **WHO)
    link = issue_link(links, p.MEMBER_GUID, mode="reconnect", **WHO)
    mx_mints_widget(mx_api)
    click(http, link)
    [call] = [c for c in mx_api.calls if c.request.url.endswith("/widget_urls")]
    assert b'"update_credentials": true' in call.request.body


@pytest.mark.parametrize(
    "path",
    ["/reconnect/not-a-token", "/reconnect/a.b.c", "/reconnect/" + "x" * 300],
)
def test_a_made_up_link_is_refused_as_not_valid(http, mx_api, path):
    response = http.get(path)
    assert response.status_code == 400 and "This link is not valid" in response.text
    assert minted(mx_api) == 0


def test_a_link_signed_with_another_secret_is_refused_and_the_cause_is_logged_once(http, mx_api, tmp_path, caplog):
    theirs = Links.at("another-secret-entirely-000", tmp_path / "links.sqlite")  # same store, other secret
    links = [issue_link(theirs, f"MBR-{n}", **WHO) for n in range(2)]
    with caplog.at_level(logging.DEBUG):
        pages = [click(http, link) for link in links]
    assert [r.status_code for r in pages] == [410, 410]
    assert all("We could not open this link" in r.text for r in pages)
    [said] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "MX_PIPELINE_LINK_SECRET or MX_PIPELINE_DATA_DIR" in said.getMessage()
    assert "another link secret" in said.getMessage()
    ours = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("mx_pipeline"))
    assert not [link for link in links if urlsplit(link).path.rsplit("/", 1)[-1] in ours]  # (the test client's may)
    assert minted(mx_api) == 0


def test_a_link_from_another_store_is_refused_and_the_cause_is_logged_once(http, mx_api, tmp_path, caplog):
    theirs = Links.at(LINK_SECRET, tmp_path / "elsewhere" / "links.sqlite")  # same secret, other data directory
    links = [issue_link(theirs, f"MBR-{n}", **WHO) for n in range(2)]
    with caplog.at_level(logging.DEBUG):
        pages = [click(http, link) for link in links]
    assert [r.status_code for r in pages] == [410, 410]
    [said] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "unknown to this store" in said.getMessage() and "MX_PIPELINE_DATA_DIR" in said.getMessage()


def test_healthz_names_the_link_key_and_the_store_and_nothing_secret(http, links, tmp_path):
    health = http.get("/healthz").json()
    assert health == {"ok": True, "link_key_id": links.signer.key_id, "link_store_id": links.store.store_id}
    assert LINK_SECRET not in str(health) and str(tmp_path) not in str(health)
    assert health["link_store_id"] == Links.at(LINK_SECRET, tmp_path / "links.sqlite").store.store_id  # kept
    assert health["link_key_id"] != Links.at("another-secret", tmp_path / "other.sqlite").signer.key_id


def test_the_link_store_is_readable_by_us_only(links):
    assert links.store.path.stat().st_mode & 0o777 == 0o600


# --- the state carried through Connect's redirect --------------------------------------------------------------


def test_the_callback_state_is_opaque_and_lasts_an_hour(http, mx_api, links, clock, spool):
    state = links.callback_state(ConnectIntent("end-user-1", p.USER_GUID, "update", p.MEMBER_GUID, "https://app"))
    assert not [i for i in ("end-user-1", p.USER_GUID, p.MEMBER_GUID, "https") if i in state]
    clock[0] = START + dt.timedelta(minutes=59)
    back = http.get("/connect/callback", params={"state": state, "member_guid": p.MEMBER_GUID})
    assert back.status_code == 303 and parse_qs(urlsplit(back.headers["location"]).query)["member_guid"]
    clock[0] = START + dt.timedelta(hours=1)
    late = http.get("/connect/callback", params={"state": state, "member_guid": p.MEMBER_GUID})
    assert late.status_code == 400 and "timed out" in late.text
    assert len(spool.pending()) == 1  # the late return recorded nothing


def test_a_reconnect_token_is_no_callback_state(http, links, spool):
    token = urlsplit(issue_link(links, p.MEMBER_GUID, **WHO)).path.rsplit("/", 1)[-1]
    response = http.get("/connect/callback", params={"state": token, "member_guid": p.MEMBER_GUID})
    assert response.status_code == 400 and spool.pending() == []


def test_a_link_to_a_member_mx_no_longer_has_says_so_before_the_pipeline_closes_it(http, mx_api, links):
    """Deleted at MX (the pipeline retires it at its next read): the user is told plainly, not sent to a 502."""
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    mx_api.add("POST", f"{MX_URL}/users/{p.USER_GUID}/widget_urls", status=404, json={"error": {"message": "nope"}})
    response = click(http, link)
    assert response.status_code == 410 and "This bank connection no longer exists" in response.text
    assert p.MEMBER_GUID not in response.text and "/users/" not in response.text


def test_fetching_a_link_as_mail_scanners_and_previews_do_neither_opens_it_nor_calls_mx(http, mx_api, links, clock):
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    path = urlsplit(link).path
    for _ in range(3):
        page = http.get(path)
        assert page.status_code == 200 and 'id="continue"' in page.text and 'method="post"' in page.text
        assert http.head(path).status_code == 200
    assert minted(mx_api) == 0
    clock[0] = START + dt.timedelta(days=6)  # the user reads the mail days later: still unopened
    mx_mints_widget(mx_api)
    assert click(http, link).headers["location"] == WIDGET


def test_fetching_a_link_that_no_longer_works_says_so_at_once(http, links):
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    links.store.close({(p.MEMBER_GUID, 1): ClosedWhy.RECOVERED})
    page = http.get(urlsplit(link).path)
    assert page.status_code == 410 and 'id="continue"' not in page.text


def test_a_link_page_is_never_cached_nor_sent_on_as_a_referer(http, mx_api, links):
    link = issue_link(links, p.MEMBER_GUID, **WHO)
    mx_mints_widget(mx_api)
    for response in (http.get(urlsplit(link).path), click(http, link)):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
