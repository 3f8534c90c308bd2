"""A repeated event is a new event: events dedupe within a window longer than MX's retries, never forever.

A CONNECTION_STATUS body has no timestamp, so a member CHALLENGED again weeks later sends MX's very same bytes.
Inside the window (``DEDUPE_WINDOW``), and while no other event of the member came between, the same bytes are a
redelivery and are stored once; otherwise they are a second episode, and the user hears about it a second time.
"""

import contextlib
import datetime as dt
import json
import socket
import threading
import time
from collections.abc import Iterator

import dagster as dg
import duckdb
import pytest
import requests
import uvicorn

from mx_pipeline import settings
from mx_pipeline.connect.app import ConnectService, create_app
from mx_pipeline.connect.links import Links
from mx_pipeline.connect.spool import DEDUPE_WINDOW, Spool, SpooledEvent
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.defs.jobs import AFTER_REGISTRATION
from mx_pipeline.defs.lifecycle import sensors
from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource
from mx_pipeline.mx import MxClient
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse import Warehouse, migrate
from mx_pipeline.warehouse.member_events import store_spooled
from mx_pipeline_tests.connect.test_spool import Clock

from .conftest import CONNECT_URL, INGEST, Pipeline
from .test_sensors import status_webhook

HOOK_USER, HOOK_PASSWORD = "mx-hooks", "hook-password-2c9e"


def tick(resources: dict, cursor: str | None = None):
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        return sensors.connect_events(context)


# --- the warehouse side, through the sensor: a clocked spool, no MX ---------------------------------------


@pytest.fixture
def clocked(tmp_path, monkeypatch) -> tuple[Spool, Clock, dict]:
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    clock = Clock()
    monkeypatch.setattr(sensors, "spool_clock", clock)
    resources = {
        "warehouse": WarehouseResource(path=str(tmp_path / "wh.duckdb")),
        "refresh_policy": RefreshPolicyResource(),
    }
    return Spool(settings.spool_dir(), clock=clock), clock, resources


def stored_events(resources: dict) -> list[tuple]:
    with resources["warehouse"].open().connect() as con:
        return con.execute("select seq, event_key, connection_status from ops.member_events order by seq").fetchall()


def test_the_same_bytes_after_the_window_are_stored_again_and_resync_the_user(clocked):
    spool, clock, resources = clocked
    body = status_webhook("USR-1", "MBR-1")
    spool.append("mx_webhook", "same-bytes", body)
    first = tick(resources)
    clock.advance(hours=27)
    assert spool.append("mx_webhook", "same-bytes", body) is True
    [run] = tick(resources, first.cursor).run_requests
    assert run.run_key != first.run_requests[0].run_key
    assert stored_events(resources) == [(1, "same-bytes", "CHALLENGED"), (2, "same-bytes", "CHALLENGED")]


def test_a_redelivery_within_the_window_is_stored_once_even_when_the_spool_hands_it_over_twice(clocked, tmp_path):
    spool, clock, resources = clocked
    body = status_webhook("USR-1", "MBR-1")
    spool.append("mx_webhook", "same-bytes", body)
    first = tick(resources)
    clock.advance(hours=20)
    # The spool's marker is gone (a crash, a pruned directory): only the warehouse can tell it is a redelivery.
    other = Spool(tmp_path / "other", clock=clock)
    other.append("mx_webhook", "same-bytes", body)
    for event in other.pending():
        (spool.events / event.name).write_bytes((other.events / event.name).read_bytes())
    assert isinstance(tick(resources, first.cursor), dg.SkipReason)
    assert stored_events(resources) == [(1, "same-bytes", "CHALLENGED")]
    assert spool.pending() == []


def test_the_sensor_prunes_spool_markers_and_drained_files_past_the_window(clocked):
    spool, clock, resources = clocked
    spool.append("mx_webhook", "old", status_webhook("USR-1", "MBR-1"))
    tick(resources)
    assert len(list(spool.keys.iterdir())) == 1 and len(list(spool.drained.iterdir())) == 1
    clock.advance(hours=DEDUPE_WINDOW.total_seconds() / 3600 + 1)
    tick(resources, "1")
    assert list(spool.keys.iterdir()) == [] and list(spool.drained.iterdir()) == []


def test_the_migration_keeps_every_event_and_the_sequence(tmp_path, monkeypatch):
    path = tmp_path / "wh.duckdb"
    before = tmp_path / "before_0011"
    before.mkdir()
    for script in sorted(migrate.MIGRATIONS.glob("*.sql")):
        if script.stem < "0011":
            (before / script.name).write_text(script.read_text())
    with monkeypatch.context() as patch:
        patch.setattr(migrate, "MIGRATIONS", before)
        with duckdb.connect(str(path)) as con:
            migrate.apply_migrations(con)
            con.execute(
                """
                insert into ops.member_events (event_key, seq, kind, source, user_guid, member_guid, received_at)
                select 'k' || i, nextval('ops.member_event_seq'), 'mx_webhook', 'CONNECTION_STATUS', 'USR-1',
                       'MBR-1', timestamptz '2026-11-01 00:00:00+00'
                from range(3) as t(i)
                """
            )
    with Warehouse(path).connect() as con:  # applies 0011 and later
        assert con.execute("select seq, event_key from ops.member_events order by seq").fetchall() == [
            (1, "k0"),
            (2, "k1"),
            (3, "k2"),
        ]
        assert con.execute("select nextval('ops.member_event_seq')").fetchone() == (4,)
        pk = "select count(*) from duckdb_constraints() where table_name = 'member_events' and constraint_type = 'PRIMARY KEY'"
        assert con.execute(pk).fetchone() == (0,)


# --- end to end: MX (the sandbox) -> the connect service -> spool -> sensor -> sync run -> route -> notification


@contextlib.contextmanager
def serving(app) -> Iterator[tuple[str, threading.Thread]]:
    """``app`` on a loopback port chosen before it starts, so the sandbox can be told where to send webhooks."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", lambda: (thread.start(), _until(lambda: server.started))
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(timeout=10)
        sock.close()


def _until(condition, timeout: float = 60.0):  # generous: webhooks cross threads on a loaded machine
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)
    return result


class _LateMx:
    """The connect service's MX client, known only once the sandbox (which needs our URL first) is up."""

    client: MxClient | None = None

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.fixture
def linked(tmp_path, monkeypatch) -> Iterator[tuple[Pipeline, Spool, Clock, str]]:
    """One user whose bank asks for MFA, connected at the sandbox, whose webhooks reach a real connect service."""
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    clock = Clock(start_ns=time.time_ns())
    monkeypatch.setattr(sensors, "spool_clock", clock)
    spool = Spool(settings.spool_dir(), clock=clock)
    mx = _LateMx()
    service = ConnectService(mx, spool, Links.at("test-link-secret-0123456789", tmp_path / "links.sqlite"), CONNECT_URL)
    app = create_app(service, WebhookReceiver(spool, HOOK_USER, HOOK_PASSWORD))
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("id\nuser-mfa\n")
    with serving(app) as (connect_url, start):
        webhook_url = f"{connect_url}/webhooks/mx"
        with running_sandbox(seed=7, webhook_url=webhook_url, webhook_username=HOOK_USER,
                             webhook_password=HOOK_PASSWORD) as sandbox:  # fmt: skip
            mx.client = MxClient(sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY)
            start()
            fields = {c.field_name: c.guid for c in mx.client.list_institution_credentials("mxbank")}
            user = mx.client.ensure_user(id="user-mfa")
            credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: "challenge"}
            member = mx.client.create_member(user.guid, institution_code="mxbank", credentials=credentials).guid
            requests.post(f"{sandbox.base_url}/_sandbox/aggregations/finish", timeout=10).raise_for_status()
            warehouse = Warehouse(tmp_path / "warehouse.duckdb")
            yield Pipeline(sandbox, mx.client, warehouse, users_csv, {"user-mfa": member}), spool, clock, webhook_url
            mx.client.close()


def status_webhooks(spool: Spool, member: str) -> list:
    return [
        e
        for e in spool.pending()
        if e.kind == "mx_webhook" and json.loads(e.body).get("type") == "CONNECTION_STATUS"
        and json.loads(e.body)["member_guid"] == member
    ]  # fmt: skip


def sensor_runs(pipeline: Pipeline, cursor: str | None) -> str | None:
    """One sensor tick, then each sync run it asked for (the sync_members selection, as the job would); the cursor."""
    result = tick(pipeline.resources(), cursor)
    if isinstance(result, dg.SkipReason):
        return cursor
    for run in result.run_requests:
        dg.materialize(
            INGEST,
            selection=AFTER_REGISTRATION,
            resources=pipeline.resources(),
            run_config=run.run_config,
            tags={**run.tags, "dagster/run_key": run.run_key},
        )
    return result.cursor


def told(pipeline: Pipeline, member: str) -> list[tuple]:
    return pipeline.query(
        "select notification_id, connection_status from ops.reconnect_notifications where member_guid = ?"
        " order by created_at",
        member,
    )


def _told_of_the_first_challenge(pipeline: Pipeline, spool, member: str):
    """MX's CHALLENGED webhook as the member connected, the first full ingest, the sensor's run: the user is told
    once. Returns the webhook and the sensor's cursor."""
    [first_webhook] = _until(lambda: status_webhooks(spool, member))
    pipeline.materialize()  # the first full ingest registers the user
    cursor = sensor_runs(pipeline, None)
    assert told(pipeline, member) == [(f"{member}:1", "CHALLENGED")]
    return first_webhook, cursor


def test_a_second_challenge_weeks_later_reaches_the_user_a_second_time(linked):
    pipeline, spool, clock, webhook_url = linked
    user_guid, member = pipeline.member("user-mfa")
    first_webhook, cursor = _told_of_the_first_challenge(pipeline, spool, member)

    # Our 204 was lost: MX redelivers the same bytes an hour later. Stored once; the user is not told again.
    clock.advance(hours=1)
    answer = requests.post(webhook_url, data=first_webhook.body.encode(), auth=(HOOK_USER, HOOK_PASSWORD), timeout=10)
    assert answer.status_code == 204
    cursor = sensor_runs(pipeline, cursor)
    assert pipeline.query("select count(*) from ops.member_events where member_guid = ?", member) == [(1,)]

    # The user answers; the member recovers and the episode closes.
    challenges = pipeline.client.list_member_challenges(user_guid, member)
    pipeline.client.resume_aggregation(user_guid, member, {c.guid: "correct" for c in challenges})
    pipeline.admin(f"members/{member}/finish_aggregation")
    pipeline.materialize()
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", member) == [("ready",)]

    # Weeks later the bank challenges again: MX sends exactly the same bytes as the first time.
    clock.advance(days=30)
    pipeline.admin(f"members/{member}/connection_status", connection_status="CHALLENGED")
    [second_webhook] = _until(lambda: status_webhooks(spool, member))
    assert second_webhook.body == first_webhook.body and second_webhook.key == first_webhook.key
    sensor_runs(pipeline, cursor)
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", member) == [("needs_mfa",)]
    assert told(pipeline, member) == [(f"{member}:1", "CHALLENGED"), (f"{member}:2", "CHALLENGED")]
    received = pipeline.query(
        "select received_at from ops.member_events where member_guid = ? and source = 'CONNECTION_STATUS' order by seq",
        member,
    )
    assert len(received) == 2 and received[1][0] - received[0][0] > dt.timedelta(days=30)


# --- the warehouse side on its own: the spool's markers may be gone, the warehouse still tells news from copies


def spooled(key: str, body: str, received: dt.datetime) -> SpooledEvent:
    ns = int(received.timestamp() * 10**9)
    return SpooledEvent(f"{ns:020d}-{key}.json", key, "mx_webhook", ns, body, {})


def test_the_same_bytes_after_another_event_of_the_member_are_stored_again_within_the_window(tmp_path):
    t0 = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
    challenged, connected = status_webhook("USR-1", "MBR-1"), status_webhook("USR-1", "MBR-1", "CONNECTED")
    other_member = status_webhook("USR-1", "MBR-2", "CONNECTED")
    with Warehouse(tmp_path / "wh.duckdb").connect() as con:
        first = [spooled("challenged", challenged, t0), spooled("connected", connected, t0 + dt.timedelta(hours=1))]
        assert store_spooled(con, first, run_id="test", now=t0).stored == 2
        later = [
            spooled("other-member", other_member, t0 + dt.timedelta(hours=2)),
            spooled("challenged", challenged, t0 + dt.timedelta(hours=21)),  # the bank asks again: a new episode
            spooled("challenged", challenged, t0 + dt.timedelta(hours=22)),  # MX redelivering it: a copy
        ]
        assert store_spooled(con, later, run_id="test", now=t0).stored == 2
        rows = con.execute(
            "select event_key, member_guid, connection_status, received_at from ops.member_events order by seq"
        ).fetchall()
    assert rows == [
        ("challenged", "MBR-1", "CHALLENGED", t0),
        ("connected", "MBR-1", "CONNECTED", t0 + dt.timedelta(hours=1)),
        ("other-member", "MBR-2", "CONNECTED", t0 + dt.timedelta(hours=2)),
        ("challenged", "MBR-1", "CHALLENGED", t0 + dt.timedelta(hours=21)),
    ]


def test_an_event_of_the_member_received_at_the_same_instant_as_the_copy_counts_as_between(tmp_path):
    """Which came first is unknown: when in doubt an event is news (an extra re-read, never a lost challenge)."""
    t0 = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
    challenged, aggregated = (
        status_webhook("USR-1", "MBR-1"),
        json.dumps(
            {"type": "AGGREGATION", "user_guid": "USR-1", "member_guid": "MBR-1", "completed_at": 1_793_606_400}
        ),
    )
    with Warehouse(tmp_path / "wh.duckdb").connect() as con:
        batch = [
            spooled("challenged", challenged, t0),
            spooled("aggregated", aggregated, t0),
            spooled("challenged", challenged, t0 + dt.timedelta(hours=1)),
        ]
        assert store_spooled(con, batch, run_id="test", now=t0).stored == 3


def test_a_copy_handed_over_again_after_another_members_event_is_still_a_copy(tmp_path):
    t0 = dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC)
    challenged = status_webhook("USR-1", "MBR-1")
    with Warehouse(tmp_path / "wh.duckdb").connect() as con:
        batch = [
            spooled("challenged", challenged, t0),
            spooled("other-member", status_webhook("USR-2", "MBR-2"), t0 + dt.timedelta(minutes=5)),
            spooled("challenged", challenged, t0 + dt.timedelta(hours=3)),
        ]
        assert store_spooled(con, batch, run_id="test", now=t0).stored == 2


def test_a_bank_that_challenges_on_every_aggregation_reaches_the_user_each_time(linked):
    pipeline, spool, clock, _ = linked
    user_guid, member = pipeline.member("user-mfa")
    first_webhook, cursor = _told_of_the_first_challenge(pipeline, spool, member)

    # The user answers; MX's AGGREGATION webhook (no CONNECTION_STATUS for CONNECTED) triggers the run that
    # closes the episode.
    challenges = pipeline.client.list_member_challenges(user_guid, member)
    pipeline.client.resume_aggregation(user_guid, member, {c.guid: "correct" for c in challenges})
    pipeline.admin(f"members/{member}/finish_aggregation")
    _until(lambda: [e for e in spool.pending() if e.kind == "mx_webhook" and '"AGGREGATION"' in e.body])
    cursor = sensor_runs(pipeline, cursor)
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", member) == [("ready",)]

    # An hour later the next aggregation is challenged again: MX sends the very same bytes as the first time.
    clock.advance(hours=1)
    pipeline.admin(f"members/{member}/connection_status", connection_status="CHALLENGED")
    [again] = _until(lambda: status_webhooks(spool, member))
    assert again.body == first_webhook.body
    sensor_runs(pipeline, cursor)
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", member) == [("needs_mfa",)]
    assert told(pipeline, member) == [(f"{member}:1", "CHALLENGED"), (f"{member}:2", "CHALLENGED")]
