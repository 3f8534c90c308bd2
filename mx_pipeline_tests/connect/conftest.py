import pytest
import responses
from starlette.testclient import TestClient

from mx_pipeline.connect.app import ConnectService, create_app
from mx_pipeline.connect.links import LinkSigner
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


@pytest.fixture
def signer():
    return LinkSigner("test-link-secret-0123456789")


@pytest.fixture
def mx_api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        # TestClient talks to the app in-process; only MX's host is mocked.
        mock.add_passthru("http://testserver")
        yield mock


@pytest.fixture
def service(spool, signer, mx_api):
    mx = MxClient(MX_URL, "client-id", "api-key", retry=RetryPolicy(max_attempts=1))
    return ConnectService(mx, spool, signer, PUBLIC_URL, api_token=API_TOKEN)


@pytest.fixture
def http(service, spool):
    app = create_app(service, WebhookReceiver(spool, WEBHOOK_USER, WEBHOOK_PASSWORD, max_bytes=4096))
    with TestClient(app, follow_redirects=False) as client:
        client.headers["Authorization"] = f"Bearer {API_TOKEN}"
        yield client
