"""The connect service is exposed to the internet: what anyone who reaches it can and cannot do."""

import contextlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from starlette.testclient import TestClient

from mx_pipeline import dev, settings
from mx_pipeline.connect.app import MAX_API_BODY_BYTES, MAX_REQUEST_HEAD_BYTES, create_app
from mx_pipeline.connect.links import ConnectIntent
from mx_pipeline.connect.redirects import UnsafeRedirect, check_return_to
from mx_pipeline.connect.spool import Spool
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.settings import ConnectSettings
from mx_pipeline.warehouse import Warehouse
from mx_pipeline_tests.connect.conftest import MX_URL, WEBHOOK_PASSWORD, WEBHOOK_USER
from mx_pipeline_tests.connect.test_app import mx_knows_member, mx_knows_user, mx_mints_widget, widget_request_sent
from mx_pipeline_tests.connect.test_server import REPO
from mx_pipeline_tests.local_http import free_port
from mx_pipeline_tests.mx import payloads as p

V1_ROUTES = [
    ("/v1/users", {"user_id": "u-1"}),
    ("/v1/users/u-1/widget_urls", {"mode": "aggregation"}),
    ("/v1/users/u-1/members", {"member_guid": p.MEMBER_GUID}),
]


def connect_settings(host="127.0.0.1", public_url="http://127.0.0.1:8780", api_token=None) -> ConnectSettings:
    return ConnectSettings(
        public_url=public_url,
        host=host,
        port=8780,
        webhook_username="",
        webhook_password="",
        link_secret="s" * 32,
        api_token=api_token,
    )


# 1. No open /v1


@pytest.mark.parametrize(
    ("host", "public_url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8780"),
        ("::", "http://127.0.0.1:8780"),
        ("10.0.0.5", "http://10.0.0.5:8780"),
        ("127.0.0.1", "https://connect.example.com"),  # loopback behind a public reverse proxy is public too
    ],
)
def test_a_service_reachable_beyond_loopback_without_a_token_refuses_to_start(host, public_url):
    problem = connect_settings(host=host, public_url=public_url).exposure_problem()
    assert problem is not None and "MX_PIPELINE_API_TOKEN" in problem


def test_a_loopback_service_may_run_without_a_token_for_development():
    assert connect_settings().exposure_problem() is None


def test_a_public_service_with_a_long_token_starts():
    assert connect_settings(host="0.0.0.0", api_token="t" * 32).exposure_problem() is None


def test_a_short_token_is_refused_as_guessable():
    problem = connect_settings(host="0.0.0.0", api_token="short").exposure_problem()
    assert problem is not None and "at least" in problem


@pytest.mark.parametrize("route", V1_ROUTES, ids=lambda r: r[0])
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", "Bearer ", "Basic YmFja2VuZDp0b2tlbg==", "bearer backend-token-51c2x"],
    ids=["missing", "wrong", "empty", "basic", "longer"],
)
def test_every_v1_route_refuses_a_missing_or_wrong_token_and_calls_nobody(http, mx_api, spool, route, authorization):
    del http.headers["Authorization"]
    headers = {"Authorization": authorization} if authorization else {}
    response = http.post(route[0], json=route[1], headers=headers)
    assert response.status_code == 401
    assert len(mx_api.calls) == 0 and spool.pending() == []


def test_without_a_token_the_api_is_open_and_says_so_at_start(service, spool, caplog):
    service.api_token = None
    with caplog.at_level(logging.WARNING):
        app = create_app(service, WebhookReceiver(spool, WEBHOOK_USER, WEBHOOK_PASSWORD))
    assert any("MX_PIPELINE_API_TOKEN" in r.getMessage() and "open" in r.getMessage() for r in caplog.records)
    with TestClient(app) as client:
        assert client.post("/v1/users", json={}).status_code == 400  # reached the handler: no token asked


# 2. Bounded requests


@pytest.mark.parametrize("route", V1_ROUTES, ids=lambda r: r[0])
def test_an_oversized_v1_body_is_413_before_anything_is_called(http, mx_api, spool, route):
    padded = {**route[1], "padding": "x" * MAX_API_BODY_BYTES}
    response = http.post(route[0], json=padded)
    assert response.status_code == 413 and str(MAX_API_BODY_BYTES) in response.json()["error"]
    assert len(mx_api.calls) == 0 and spool.pending() == []


def test_an_oversized_body_without_a_declared_length_is_413_too(http, mx_api):
    chunks = (b"x" * 4096 for _ in range(MAX_API_BODY_BYTES // 4096 + 2))  # streamed: no Content-Length
    response = http.post("/v1/users", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and len(mx_api.calls) == 0


OVERSIZED_HEADS = [
    ("/healthz", {"Idempotency-Key": "k" * MAX_REQUEST_HEAD_BYTES}),
    ("/reconnect/" + "t" * MAX_REQUEST_HEAD_BYTES, {}),
    ("/connect/callback?state=" + "s" * MAX_REQUEST_HEAD_BYTES, {}),
]


@pytest.mark.parametrize(("path", "headers"), OVERSIZED_HEADS, ids=["header", "path", "query-string"])
def test_a_request_head_over_the_cap_is_431_before_any_route_runs(http, mx_api, spool, path, headers):
    response = http.get(path, headers=headers)
    assert response.status_code == 431 and str(MAX_REQUEST_HEAD_BYTES) in response.text
    assert len(mx_api.calls) == 0 and spool.pending() == []


def test_a_relay_under_the_head_cap_still_works(http, mx_api, spool):
    mx_knows_user(mx_api)
    mx_knows_member(mx_api)
    key = "k" * (MAX_REQUEST_HEAD_BYTES // 2)
    response = http.post(
        "/v1/users/end-user-1/members", json={"member_guid": p.MEMBER_GUID}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 204


def test_the_real_server_never_buffers_a_huge_request_head(tmp_path):
    """The HTTP server reads the head before any route (or our cap) sees it: it refuses a huge one itself, so the
    answer comes from the server (or the connection is cut), never from the app after buffering megabytes."""
    with running_serve(tmp_path) as base:
        try:
            huge = {"X-Padding": "p" * 4 * 1024 * 1024}
            answer = requests.get(f"{base}/healthz", headers=huge, timeout=60)
            refused_by = "server" if answer.text == "Invalid HTTP request received." else f"app: {answer.status_code}"
        except requests.ConnectionError:  # cut off while still sending
            refused_by = "server"
        assert refused_by == "server"
        assert requests.get(f"{base}/healthz", timeout=30).ok


# 4. Safe redirects


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "http://app.example.com/done",  # plain http off loopback
        "//evil.example/done",
        "/relative/done",
        "https://app.example.com@evil.example/",
        "https://app.example.com/\r\nSet-Cookie: a=b",
        "myapp://done",  # an app scheme needs the allowlist
    ],
)
def test_an_unsafe_client_redirect_url_is_refused_before_mx_is_asked(http, mx_api, url):
    mx_knows_user(mx_api)
    response = http.post("/v1/users/end-user-1/widget_urls", json={"client_redirect_url": url})
    assert response.status_code == 400 and "client_redirect_url" in response.json()["error"]
    assert not [c for c in mx_api.calls if c.request.url.endswith("/widget_urls")]


@pytest.mark.parametrize("url", ["https://app.example.com/done?x=1", "http://127.0.0.1:3000/done", "http://[::1]/d"])
def test_https_and_loopback_http_return_addresses_are_accepted(url):
    assert check_return_to(url) == url


def test_with_an_allowlist_only_its_origins_are_accepted():
    allowed = ("https://app.example.com", "myapp://callback")
    assert check_return_to("myapp://callback/done", allowed) == "myapp://callback/done"
    assert check_return_to("https://APP.example.com/x", allowed) == "https://APP.example.com/x"
    for foreign in ("https://other.example.com/x", "https://app.example.com.evil.example/", "myapp://elsewhere"):
        with pytest.raises(UnsafeRedirect, match="MX_PIPELINE_REDIRECT_ORIGINS"):
            check_return_to(foreign, allowed)


@pytest.mark.parametrize("scheme", ["javascript", "https", "my app", "x" * 40, ""])
def test_an_unsafe_webview_scheme_is_refused(http, mx_api, scheme):
    mx_knows_user(mx_api)
    body = {"is_mobile_webview": True, "ui_message_webview_url_scheme": scheme}
    response = http.post("/v1/users/end-user-1/widget_urls", json=body)
    assert response.status_code == 400 and "ui_message_webview_url_scheme" in response.json()["error"]


# 5. Errors that help without leaking


@pytest.mark.parametrize("mode", ["update", "reconnect"])
def test_an_unknown_member_names_the_callers_input_not_our_upstream_path(http, mx_api, mode):
    mx_knows_user(mx_api)
    mx_api.add("GET", f"{MX_URL}/users/{p.USER_GUID}/members/MBR-nope", status=404, json={"error": {}})
    response = http.post("/v1/users/end-user-1/widget_urls", json={"mode": mode, "member_guid": "MBR-nope"})
    assert response.status_code == 404
    assert response.json() == {"error": "member_guid 'MBR-nope' is not a connection of user_id 'end-user-1'"}
    assert not [c for c in mx_api.calls if c.request.url.endswith("/widget_urls")]


def test_a_known_member_opens_connect_on_it(http, mx_api):
    mx_knows_user(mx_api)
    mx_knows_member(mx_api)
    mx_mints_widget(mx_api)
    response = http.post("/v1/users/end-user-1/widget_urls", json={"mode": "update", "member_guid": p.MEMBER_GUID})
    assert response.status_code == 200 and widget_request_sent(mx_api)["current_member_guid"] == p.MEMBER_GUID


def test_relaying_a_member_mx_does_not_know_is_404_and_records_nothing(http, mx_api, spool):
    mx_knows_user(mx_api)
    mx_api.add("GET", f"{MX_URL}/users/{p.USER_GUID}/members/MBR-nope", status=404, json={"error": {}})
    response = http.post("/v1/users/end-user-1/members", json={"member_guid": "MBR-nope"})
    assert response.status_code == 404
    assert response.json() == {"error": "member_guid 'MBR-nope' is not a connection of user_id 'end-user-1'"}
    assert [e.kind for e in spool.pending()] == ["user_registered"]


# 6. Files only we can read


@pytest.fixture
def restored_umask():
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_is_created_private_and_an_open_one_is_closed(tmp_path, monkeypatch):
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path / "fresh" / "data"))
    assert mode_of(settings.data_dir()) == 0o700
    opened = tmp_path / "opened"
    opened.mkdir(mode=0o755)
    opened.chmod(0o755)
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(opened))
    assert mode_of(settings.data_dir()) == 0o700


def test_a_link_secret_others_can_read_is_made_private_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MX_PIPELINE_LINK_SECRET", raising=False)
    first = settings.ConnectSettings.from_env().link_secret
    secret_file = tmp_path / ".link_secret"
    assert mode_of(secret_file) == 0o600
    secret_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="mx_pipeline.settings"):
        assert settings.ConnectSettings.from_env().link_secret == first
    assert mode_of(secret_file) == 0o600
    assert any(".link_secret was readable by others" in r.getMessage() for r in caplog.records)
    assert first not in caplog.text


def test_everything_a_process_writes_under_the_data_directory_is_its_owners_alone(
    tmp_path, monkeypatch, restored_umask
):
    os.umask(0o022)  # a typical login shell's
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path / "data"))
    settings.keep_files_private()
    data = settings.data_dir()
    Spool(settings.spool_dir()).append("mx_webhook", "k1", "{}", member="MBR-1")
    with Warehouse(data / "warehouse.duckdb").connect() as con:
        con.execute("create table if not exists ops.scratch (x int)")
    settings.ConnectSettings.from_env()  # the link secret
    everything = [data, *data.rglob("*")]
    assert len(everything) > 8
    assert {str(p.relative_to(tmp_path)): oct(mode_of(p)) for p in everything if mode_of(p) & 0o077} == {}


def test_make_dev_installs_the_dagster_instance_config_private_too(tmp_path, restored_umask):
    os.umask(0o022)
    settings.keep_files_private()
    home = tmp_path / "dagster_home"
    home.mkdir()
    dev._install_instance_config(home)
    assert oct(mode_of(home / "dagster.yaml")) == oct(0o600)


# The real process: refusing to start, and what its log keeps


def serve_command(tmp_path, **env) -> tuple[list[str], dict]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MX_")}
    environment = clean | {"MX_PIPELINE_DATA_DIR": str(tmp_path / "data"), "MX_BASE_URL": "http://127.0.0.1:9"} | env
    return [str(Path(sys.executable).with_name("mx-pipeline")), "serve"], environment


def test_serve_on_a_public_address_without_a_token_exits_with_one_line_that_says_what_to_set(tmp_path):
    command, env = serve_command(tmp_path, MX_PIPELINE_CONNECT_HOST="0.0.0.0", MX_PIPELINE_CONNECT_PORT="1")
    finished = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode != 0
    [line] = finished.stderr.strip().splitlines()
    assert line.startswith("mx-pipeline serve: MX_PIPELINE_API_TOKEN is not set")


def test_no_credential_reaches_the_services_log_after_links_callbacks_and_api_calls(tmp_path):
    port, api_token = free_port(), "api-token-" + "7" * 30
    command, env = serve_command(tmp_path, MX_PIPELINE_CONNECT_PORT=str(port), MX_PIPELINE_API_TOKEN=api_token)
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as sink:
        service = subprocess.Popen(command, env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_listening(f"{base}/healthz")
            link_token, state = "LINKTOKEN-d41d8cd98f00b204e980", "STATETOKEN-0cc175b9c0f1b6a831c3"
            requests.get(f"{base}/reconnect/{link_token}", timeout=30, allow_redirects=False)
            requests.get(f"{base}/connect/callback", params={"state": state, "member_guid": "MBR-1"}, timeout=30)
            headers = {"Authorization": f"Bearer {api_token}"}
            requests.post(f"{base}/v1/users", json={"user_id": "u-1"}, headers=headers, timeout=60)
        finally:
            service.terminate()
            service.wait(timeout=60)
    log_text = log_file.read_text()
    assert '"GET /reconnect/<token> HTTP/1.1"' in log_text and '"GET /connect/callback HTTP/1.1"' in log_text
    for secret in (link_token, state, api_token):
        assert secret not in log_text


@contextlib.contextmanager
def running_serve(tmp_path, **env) -> Iterator[str]:
    """``mx-pipeline serve`` on a free loopback port (no token: development), its base URL until the block ends."""
    port = free_port()
    command, environment = serve_command(tmp_path, MX_PIPELINE_CONNECT_PORT=str(port), **env)
    service = subprocess.Popen(command, env=environment, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        service.terminate()
        service.wait(timeout=60)


def wait_until_listening(url: str) -> None:
    deadline = time.monotonic() + 120  # generous: a loaded machine starts a process slowly
    while True:
        try:
            requests.get(url, timeout=30)
            return
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "mx-pipeline serve never listened"
            time.sleep(0.1)


def test_the_callback_redirects_only_to_a_return_address_still_allowed(service, spool, links):
    """The session began under a wider policy (or before this check): the callback re-checks before it redirects."""
    webhooks = WebhookReceiver(spool, WEBHOOK_USER, WEBHOOK_PASSWORD)
    app = create_app(service, webhooks, redirect_origins=("https://app.example.com",))
    allowed = links.callback_state(ConnectIntent("u-1", p.USER_GUID, "aggregation", None, "https://app.example.com/d"))
    foreign = links.callback_state(ConnectIntent("u-1", p.USER_GUID, "aggregation", None, "javascript:alert(1)"))
    with TestClient(app, follow_redirects=False) as client:
        followed = client.get("/connect/callback", params={"state": allowed, "member_guid": "MBR-1"})
        refused = client.get("/connect/callback", params={"state": foreign, "member_guid": "MBR-2"})
    assert followed.status_code == 303 and followed.headers["location"].startswith("https://app.example.com/d?")
    assert refused.status_code == 200 and "location" not in refused.headers and "All done" in refused.text
    assert [json.loads(e.body)["member_guid"] for e in spool.pending()] == ["MBR-1", "MBR-2"]  # both recorded
