"""The pipeline's side of reconnect links: issued per episode in the shared link store, kept in the outbox by id,
sent as a URL rebuilt from the id, closed with their episode; and a check that the connect service shares them."""

import contextlib
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import dagster as dg
import pytest

from mx_pipeline import settings
from mx_pipeline.connect.link_store import ClosedLink
from mx_pipeline.connect.links import Links
from mx_pipeline.defs.lifecycle.checks import connect_service_opens_our_links
from mx_pipeline.defs.resources import ConnectLinksResource, NotifierResource
from mx_pipeline_tests.local_http import QuietHandler, serving

from .conftest import CONNECT_URL


@pytest.fixture(autouse=True)
def link_secret(monkeypatch):
    monkeypatch.setenv("MX_PIPELINE_LINK_SECRET", "pipeline-link-secret-0123456789")


@pytest.fixture
def pipeline(pipeline):
    pipeline.sandbox.freeze_clock()
    return pipeline


class Backend:
    """A product backend that keeps every POST it gets, and answers 503 to the first ``fail_first``."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first, self.posted = fail_first, []

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        backend = self

        class Handler(QuietHandler):
            def do_POST(self):
                backend.posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                backend.fail_first -= 1
                self.send_response(503 if backend.fail_first >= 0 else 204)
                self.end_headers()

        with serving(Handler, path="/notifications") as url:
            yield url


def links_of(pipeline) -> Links:
    return Links.at(settings.ConnectSettings.from_env().link_secret, pipeline.link_store_path)


def token_of(url: str) -> str:
    return urlsplit(url).path.rsplit("/", 1)[-1]


def test_the_warehouse_holds_the_link_id_and_never_the_url_or_its_token(pipeline):
    backend = Backend()
    with backend.serving() as url:
        pipeline.materialize(notifier=NotifierResource(url=url, retry_backoff_seconds=0.0))
    member = pipeline.member_of["user-mfa"]
    [sent] = [n for n in backend.posted if n["member_guid"] == member]
    assert sent["reconnect_url"].startswith(f"{CONNECT_URL}/reconnect/") and "link_id" not in sent
    link = links_of(pipeline).open_reconnect(token_of(sent["reconnect_url"]))
    assert (link.member_guid, link.episode, link.connect_mode) == (member, 1, "update")
    assert pipeline.query("select link_id from ops.reconnect_notifications where member_guid = ?", member) == [
        (link.link_id,)
    ]
    everything = str(pipeline.query("select * from ops.reconnect_notifications"))
    assert token_of(sent["reconnect_url"]) not in everything and "/reconnect/" not in everything


def test_a_pending_notification_resent_in_a_later_run_carries_the_same_url(pipeline):
    backend = Backend(fail_first=8)  # both notifications, each POSTed 4 times in the first run
    with backend.serving() as url:
        notifier = NotifierResource(url=url, retry_backoff_seconds=0.0)
        pipeline.materialize(notifier=notifier)
        pipeline.materialize(notifier=notifier)
    member = pipeline.member_of["user-denied"]
    urls = [n["reconnect_url"] for n in backend.posted if n["member_guid"] == member]
    assert len(urls) == 5 and len(set(urls)) == 1  # four failed attempts, then the one that went through
    assert pipeline.query("select state from ops.reconnect_notifications where member_guid = ?", member) == [
        ("delivered",)
    ]


def test_a_link_is_refused_once_its_member_is_healthy_again(pipeline):
    backend = Backend()
    with backend.serving() as url:
        pipeline.materialize(notifier=NotifierResource(url=url, retry_backoff_seconds=0.0))
    member = pipeline.member_of["user-mfa"]
    [sent] = [n for n in backend.posted if n["member_guid"] == member]
    user_guid, _ = pipeline.member("user-mfa")
    challenges = pipeline.client.list_member_challenges(user_guid, member)
    pipeline.client.resume_aggregation(user_guid, member, {c.guid: "correct" for c in challenges})
    pipeline.admin(f"members/{member}/finish_aggregation")
    result = pipeline.materialize()  # a healthy read: the episode closes, and its link with it
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", member) == [("ready",)]
    with pytest.raises(ClosedLink, match="working again"):
        links_of(pipeline).open_reconnect(token_of(sent["reconnect_url"]))
    gate_meta = next(
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key.path[-1] == "member_routes"
    )
    assert gate_meta["reconnect_links_closed"].value == 1


def test_a_link_is_refused_once_its_member_is_retired(pipeline):
    """The member is deleted at MX while its user has the link: the run that retires it closes the link."""
    pipeline.materialize()
    member = pipeline.member_of["user-denied"]
    [(link_id,)] = pipeline.query("select link_id from ops.reconnect_notifications where member_guid = ?", member)
    token = links_of(pipeline).signer.token("reconnect", link_id)
    user_guid, _ = pipeline.member("user-denied")
    pipeline.client.delete_member(user_guid, member)
    pipeline.materialize()
    assert pipeline.query("select removed_at is not null from raw.mx_members where guid = ?", member) == [(True,)]
    with pytest.raises(ClosedLink, match="no longer exists"):
        links_of(pipeline).open_reconnect(token)


# --- the connect service opens our links: same link secret, same link store ------------------------------------


@contextlib.contextmanager
def connect_service_answering(health: dict) -> Iterator[str]:
    class Handler(QuietHandler):
        def do_GET(self):
            body = json.dumps(health).encode()
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    with serving(Handler) as url:
        yield url


def check(public_url: str, store_path) -> dg.AssetCheckResult:
    return connect_service_opens_our_links(ConnectLinksResource(public_url=public_url, store_path=str(store_path)))


def test_the_link_check_warns_when_the_connect_service_uses_another_secret_and_store(tmp_path):
    ours = ConnectLinksResource(store_path=str(tmp_path / "links.sqlite")).links().identity
    with connect_service_answering({"ok": True, "link_key_id": "zzzzzzzz", "link_store_id": "0123"}) as url:
        result = check(url, tmp_path / "links.sqlite")
    assert (result.passed, result.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert result.description == (
        "the link secret (MX_PIPELINE_LINK_SECRET, or .link_secret in the data directory) differs: the pipeline's "
        f"link_key_id is {ours['link_key_id']!r}, the connect service's is 'zzzzzzzz'; the link store (links.sqlite "
        f"in MX_PIPELINE_DATA_DIR) differs: the pipeline's link_store_id is {ours['link_store_id']!r}, the connect "
        "service's is '0123'"
    )


def test_the_link_check_passes_when_the_connect_service_shares_secret_and_store(tmp_path):
    ours = ConnectLinksResource(store_path=str(tmp_path / "links.sqlite")).links().identity
    with connect_service_answering({"ok": True, **ours}) as url:
        result = check(url, tmp_path / "links.sqlite")
    assert result.passed and "same link secret and link store" in result.description


def test_the_link_check_says_an_unreachable_connect_service_without_failing(tmp_path):
    with connect_service_answering({}) as url:
        pass  # the port is free again: nothing listens there
    result = check(url, tmp_path / "links.sqlite")
    assert result.passed and "not reachable" in result.description and url in result.description
