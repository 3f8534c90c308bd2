import pytest
import responses
from starlette.testclient import TestClient

from mx_pipeline.connect.app import ConnectService, create_app
from mx_pipeline.connect.link_store import LinkRequest
from mx_pipeline.connect.links import Links, reconnect_url
from mx_pipeline.connect.spool import Spool
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.mx import MxClient, RetryPolicy

MX_URL = "https://int-api.mx.com"
PUBLIC_URL = "https://connect.example.com"
WEBHOOK_USER, WEBHOOK_PASSWORD = "mx-hooks", "hook-password-7f3a"
API_TOKEN = "backend-token-51c2"


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


LINK_SECRET = "test-link-secret-0123456789"


@pytest.fixture
def links(tmp_path):
    return Links.at(LINK_SECRET, tmp_path / "links.sqlite")


def issue_link(links: Links, member_guid: str, episode: int = 1, mode: str = "reconnect", **who) -> str:
    """The reconnect URL the pipeline would send for this episode (``who``: user_id, user_guid)."""
    who = {"user_id": "end-user-1", "user_guid": "USR-1"} | who
    request = LinkRequest(member_guid, episode, who["user_id"], who["user_guid"], mode)
    (link_id,) = links.store.issue([request]).values()
    return reconnect_url(PUBLIC_URL, links.signer, link_id)


@pytest.fixture
def mx_api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        # TestClient talks to the app in-process; only MX's host is mocked.
        mock.add_passthru("http://testserver")
        yield mock


@pytest.fixture
def service(spool, links, mx_api):
    mx = MxClient(MX_URL, "client-id", "api-key", retry=RetryPolicy(max_attempts=1))
    return ConnectService(mx, spool, links, PUBLIC_URL, api_token=API_TOKEN)


@pytest.fixture
def http(service, spool):
    app = create_app(service, WebhookReceiver(spool, WEBHOOK_USER, WEBHOOK_PASSWORD, max_bytes=4096))
    with TestClient(app, follow_redirects=False) as client:
        client.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield client
