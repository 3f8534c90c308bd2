"""Notifications a product can act on: our user id on each, and a state that says what really became of it.

pending -> delivered (the backend answered 2xx) | logged (no backend: nobody was told) | dead (every attempt
failed; member_health shows it) | cancelled (its episode closed before it went out). A pending one is held while
its member asks nothing for now, and says what the latest read asks when it goes out.
"""

import datetime as dt
import json
from urllib.parse import urlsplit

import dagster as dg
import pytest
from starlette.testclient import TestClient

from mx_pipeline import demo, settings
from mx_pipeline.connect.app import ConnectService, create_app
from mx_pipeline.connect.links import Links
from mx_pipeline.connect.spool import Spool, SpooledEvent
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.defs.jobs import AFTER_REGISTRATION
from mx_pipeline.defs.lifecycle import sensors
from mx_pipeline.defs.resources import NotifierResource
from mx_pipeline.lifecycle.notifier import Notification
from mx_pipeline.lifecycle.routes import route_for
from mx_pipeline.warehouse.member_events import store_spooled
from mx_pipeline.warehouse.outbox import cancel_closed, lease_due, store_notifications

from .conftest import CONNECT_URL, INGEST, metadata_of
from .test_lifecycle import GRACE_OVER, _Backend


@pytest.fixture
def pipeline(pipeline):
    """On the sandbox's frozen clock: a job MX is running ends only when a test finishes it, never mid-run."""
    pipeline.sandbox.freeze_clock()
    return pipeline


def outbox(pipeline) -> dict[str, tuple]:
    rows = pipeline.query(
        "select member_guid, state, attempts, delivered_at is not null, state_reason from ops.reconnect_notifications"
    )
    return {member: tuple(rest) for member, *rest in rows}


def health_of(pipeline, member: str) -> str | None:
    [(state,)] = pipeline.query("select notification_state from marts.member_health where member_guid = ?", member)
    return state


def asking_members(pipeline) -> set[str]:
    return {pipeline.member_of["user-mfa"], pipeline.member_of["user-denied"]}


def test_a_notification_the_backend_accepted_with_2xx_is_delivered(pipeline):
    backend = _Backend(fail_first=0)
    with backend.serving() as url:
        result = pipeline.materialize(notifier=NotifierResource(url=url, retry_backoff_seconds=0.0))
    assert metadata_of(result)["ops.reconnect_notifications"]["delivered"] == 2
    assert {n["member_guid"] for n in backend.received} == asking_members(pipeline)
    assert {m: row[:3] for m, row in outbox(pipeline).items()} == {
        m: ("delivered", 1, True) for m in asking_members(pipeline)
    }
    assert health_of(pipeline, pipeline.member_of["user-mfa"]) == "delivered"
    assert health_of(pipeline, pipeline.member_of["user-ok-1"]) is None  # never asked anything


def test_without_a_backend_a_notification_is_logged_not_delivered_and_the_demo_says_so(pipeline, capsys):
    result = pipeline.materialize()  # the code location's default notifier: no MX_PIPELINE_NOTIFY_URL
    meta = metadata_of(result)["ops.reconnect_notifications"]
    assert (meta["delivered"], meta["logged"]) == (0, 2)
    assert {m: row[:3] for m, row in outbox(pipeline).items()} == {
        m: ("logged", 1, False) for m in asking_members(pipeline)
    }
    assert health_of(pipeline, pipeline.member_of["user-denied"]) == "logged"
    demo._print_summary(pipeline.warehouse)
    assert "2 logged (no product backend configured: logged only, nobody was told" in capsys.readouterr().out


def test_a_notification_out_of_attempts_is_dead_and_member_health_shows_it(pipeline):
    backend = _Backend(fail_first=10**6)  # the backend never accepts
    with backend.serving() as url:
        notifier = NotifierResource(url=url, max_attempts=2, retry_backoff_seconds=0.0)
        pipeline.materialize(notifier=notifier)
        assert {row[:2] for row in outbox(pipeline).values()} == {("pending", 1)}  # one try left each
        result = pipeline.materialize(notifier=notifier)
        pipeline.materialize(notifier=notifier)  # a dead notification is not tried again
    assert metadata_of(result)["ops.reconnect_notifications"]["dead"] == 2
    for member, (state, attempts, delivered, reason) in outbox(pipeline).items():
        assert (state, attempts, delivered) == ("dead", 2, False)
        assert reason.startswith("no attempts left: DeliveryFailed") and reason.endswith("HTTP 503")
        assert health_of(pipeline, member) == "dead"
    assert backend.received == []


def test_a_notification_whose_member_recovered_before_delivery_is_cancelled_not_sent(pipeline):
    user_guid, member = pipeline.member("user-mfa")
    backend = _Backend(fail_first=8)  # down for the first run: both notifications stay pending
    with backend.serving() as url:
        notifier = NotifierResource(url=url, retry_backoff_seconds=0.0)
        pipeline.materialize(notifier=notifier)
        assert outbox(pipeline)[member][0] == "pending"
        # The user answered MFA on their own (say, in the bank's app) before we got through.
        challenges = pipeline.client.list_member_challenges(user_guid, member)
        pipeline.client.resume_aggregation(user_guid, member, {c.guid: "correct" for c in challenges})
        pipeline.admin(f"members/{member}/finish_aggregation")
        result = pipeline.materialize(notifier=notifier)
    assert outbox(pipeline)[member][:2] == ("cancelled", 1)
    assert outbox(pipeline)[member][3] == "the member recovered before it was sent"
    assert metadata_of(result)["ops.reconnect_notifications"]["cancelled"] == {
        f"{member}:1": "the member recovered before it was sent"
    }
    assert [n["member_guid"] for n in backend.received] == [pipeline.member_of["user-denied"]]  # never sent
    assert health_of(pipeline, member) == "cancelled"


def reenter_wrong_password(pipeline, user_guid: str, member: str) -> None:
    """The user tries their password again in Connect: MX runs a job, which ends DENIED once it finishes."""
    fields = {c.field_name: c.guid for c in pipeline.client.list_institution_credentials("mxbank")}
    credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: "UNAUTHORIZED"}
    pipeline.client.update_member(user_guid, member, credentials=credentials)


def test_a_pending_notification_is_held_while_mx_works_and_reaches_the_user_once_they_must_act_again(pipeline):
    user_guid, member = pipeline.member("user-denied")
    backend = _Backend(fail_first=8)  # down for the first run: both notifications stay pending
    with backend.serving() as url:
        notifier = NotifierResource(url=url, retry_backoff_seconds=0.0)
        pipeline.materialize(notifier=notifier)
        assert outbox(pipeline)[member][:2] == ("pending", 1)
        reenter_wrong_password(pipeline, user_guid, member)
        held = metadata_of(pipeline.materialize(notifier=notifier))["ops.reconnect_notifications"]
        assert pipeline.query("select route from ops.member_routes where member_guid = ?", member) == [("in_progress",)]
        # The episode is still open: not cancelled, and not sent while MX works (nor an attempt spent on it).
        assert outbox(pipeline)[member][:2] == ("pending", 1)
        assert held["held"] == [f"{member}:1"]
        assert member not in {n["member_guid"] for n in backend.received}
        pipeline.admin(f"members/{member}/finish_aggregation")  # the job ends DENIED again
        pipeline.materialize(notifier=notifier)
    assert outbox(pipeline)[member][:3] == ("delivered", 2, True)
    [sent] = [n for n in backend.received if n["member_guid"] == member]
    assert (sent["notification_id"], sent["connection_status"], sent["connect_mode"]) == (
        f"{member}:1",
        "DENIED",
        "reconnect",
    )


@pytest.mark.parametrize("status", ["FAILED", "DELAYED"])
def test_a_pending_notification_is_held_not_cancelled_while_the_member_asks_nothing_for_now(pipeline, status):
    member = pipeline.member_of["user-denied"]
    backend = _Backend(fail_first=8)
    with backend.serving() as url:
        notifier = NotifierResource(url=url, retry_backoff_seconds=0.0)
        pipeline.materialize(notifier=notifier)
        pipeline.admin(f"members/{member}/connection_status", connection_status=status)  # the bank's side, say
        pipeline.materialize(notifier=notifier)
        assert outbox(pipeline)[member][:2] == ("pending", 1)
        pipeline.admin(f"members/{member}/connection_status", connection_status="DENIED")
        pipeline.materialize(notifier=notifier)
    assert outbox(pipeline)[member][:2] == ("delivered", 2)


def test_a_pending_notification_is_cancelled_when_the_connection_ends_at_mx_and_a_new_trouble_is_told_anew(pipeline):
    member = pipeline.member_of["user-denied"]
    backend = _Backend(fail_first=8)
    with backend.serving() as url:
        notifier = NotifierResource(url=url, retry_backoff_seconds=0.0)
        pipeline.materialize(notifier=notifier)
        pipeline.admin(f"members/{member}/connection_status", connection_status="CLOSED")  # nothing left to fix
        pipeline.materialize(notifier=notifier)
        assert outbox(pipeline)[member][:2] == ("cancelled", 1)
        pipeline.admin(f"members/{member}/connection_status", connection_status="DENIED")  # a new episode
        pipeline.materialize(notifier=notifier)
    states = pipeline.query(
        "select notification_id, state, state_reason from ops.reconnect_notifications where member_guid = ?"
        " order by notification_id",
        member,
    )
    assert states == [
        (f"{member}:1", "cancelled", "the connection ended at MX before it was sent"),
        (f"{member}:2", "delivered", None),
    ]
    assert [n["notification_id"] for n in backend.received if n["member_guid"] == member] == [f"{member}:2"]


def test_a_pending_notification_says_what_the_latest_read_asks_when_it_goes_out(pipeline):
    member = pipeline.member_of["user-mfa"]
    backend = _Backend(fail_first=8)
    with backend.serving() as url:
        notifier = NotifierResource(url=url, retry_backoff_seconds=0.0)
        pipeline.materialize(notifier=notifier)  # CHALLENGED: an MFA answer, but the backend is down
        assert outbox(pipeline)[member][:2] == ("pending", 1)
        pipeline.admin(f"members/{member}/connection_status", connection_status="DENIED")  # same episode
        pipeline.materialize(notifier=notifier)
    [sent] = [n for n in backend.received if n["member_guid"] == member]
    assert (sent["notification_id"], sent["route"], sent["connection_status"], sent["connect_mode"]) == (
        f"{member}:1",
        "needs_reconnect",
        "DENIED",
        "reconnect",
    )
    assert sent["reason"] == route_for("DENIED").reason
    token = urlsplit(sent["reconnect_url"]).path.rsplit("/", 1)[-1]
    link = Links.at(settings.ConnectSettings.from_env().link_secret, pipeline.link_store_path).open_reconnect(token)
    assert (link.member_guid, link.connect_mode) == (member, "reconnect")  # fresh credentials, not an MFA answer
    assert pipeline.query(
        "select notification_id, state, connection_status, connect_mode, link_id"
        " from ops.reconnect_notifications where member_guid = ?",
        member,
    ) == [(f"{member}:1", "delivered", "DENIED", "reconnect", link.link_id)]  # still one per episode


def test_a_notification_already_delivered_keeps_what_it_said(pipeline):
    member = pipeline.member_of["user-mfa"]
    pipeline.materialize()  # no backend: logged
    pipeline.admin(f"members/{member}/connection_status", connection_status="DENIED")
    pipeline.materialize()
    assert pipeline.query(
        "select state, connection_status, connect_mode from ops.reconnect_notifications where member_guid = ?", member
    ) == [("logged", "CHALLENGED", "update")]


def test_a_pending_notification_waits_out_a_degraded_grace_then_asks_to_reconnect(pipeline):
    member = pipeline.member_of["user-denied"]
    backend = _Backend(fail_first=8)
    with backend.serving() as url:
        notifier = NotifierResource(url=url, retry_backoff_seconds=0.0)
        pipeline.materialize(notifier=notifier)  # DENIED, not delivered
        pipeline.admin(f"members/{member}/connection_status", connection_status="DEGRADED")
        held = metadata_of(pipeline.materialize(notifier=notifier))["ops.reconnect_notifications"]
        assert (outbox(pipeline)[member][:2], held["held"]) == (("pending", 1), [f"{member}:1"])
        pipeline.materialize(notifier=notifier, ops=GRACE_OVER)  # still DEGRADED when the grace is over
    [sent] = [n for n in backend.received if n["member_guid"] == member]
    assert (sent["connection_status"], sent["reason"]) == ("DEGRADED", route_for("DEGRADED").reason)
    assert outbox(pipeline)[member][:2] == ("delivered", 2)


# --- our user id on every notification -----------------------------------------------------------------------


def test_a_user_who_only_ever_got_a_widget_url_is_named_in_the_notification(pipeline, tmp_path, monkeypatch):
    """The product signs a user up and opens Connect; the user never comes back through our callback."""
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    pipeline.materialize()  # the pipeline has run before this user existed
    spool = Spool(settings.spool_dir())
    links = Links.at("test-link-secret-0123456789", settings.link_store_path())
    service = ConnectService(pipeline.client, spool, links, CONNECT_URL)
    with TestClient(create_app(service, WebhookReceiver(spool, "u", "p"))) as connect:
        answer = connect.post("/v1/users/user-widget/widget_urls", json={"mode": "aggregation"})
        assert answer.status_code == 200
    user = next(u for u in pipeline.client.list_users() if u.id == "user-widget")
    fields = {c.field_name: c.guid for c in pipeline.client.list_institution_credentials("mxbank")}
    credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: "challenge"}  # in the widget, at MX
    member = pipeline.client.create_member(user.guid, institution_code="mxbank", credentials=credentials).guid
    pipeline.admin("aggregations/finish")
    webhook = {"action": "CHANGED", "connection_status": "CHALLENGED", "member_guid": member,
               "type": "CONNECTION_STATUS", "user_guid": user.guid}  # fmt: skip
    spool.append("mx_webhook", "challenge", json.dumps(webhook))  # MX's webhook; no callback ever comes
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=pipeline.resources())
        runs = sensors.connect_events(context).run_requests
    for run in runs:  # the sync_members job: registration is not part of it
        dg.materialize(INGEST, selection=AFTER_REGISTRATION, resources=pipeline.resources(), run_config=run.run_config)
    assert pipeline.query(
        "select user_id, user_guid from ops.reconnect_notifications where member_guid = ?", member
    ) == [("user-widget", user.guid)]


def registration(user_id: str, user_guid: str, at: dt.datetime) -> SpooledEvent:
    body = json.dumps({"user_id": user_id, "user_guid": user_guid})
    ns = int(at.timestamp() * 1e9)
    return SpooledEvent(f"{ns:020d}-x.json", f"{user_id}:{user_guid}", "user_registered", ns, body, {})


@pytest.fixture
def con(tmp_path):
    from mx_pipeline.warehouse import Warehouse

    with Warehouse(tmp_path / "wh.duckdb").connect() as connection:
        yield connection


def test_a_user_registered_again_under_a_new_mx_guid_takes_it_and_is_no_longer_retired(con):
    day = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    store_spooled(con, [registration("end-user-1", "USR-old", day)], run_id="t", now=day)
    con.execute("update ops.end_users set retired_at = ? where id = 'end-user-1'", [day + dt.timedelta(days=3)])
    later = day + dt.timedelta(days=10)  # deleted at MX, retired here, then signed up again: a new MX user
    store_spooled(con, [registration("end-user-1", "USR-new", later)], run_id="t", now=later)
    assert con.execute("select mx_user_guid, retired_at, registered_at from ops.end_users").fetchall() == [
        ("USR-new", None, later)
    ]


def test_an_older_registration_arriving_late_never_replaces_a_newer_one(con):
    day = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    newer, older = (
        registration("end-user-1", "USR-new", day),
        registration("end-user-1", "USR-old", day - dt.timedelta(hours=1)),
    )
    store_spooled(con, [newer], run_id="t", now=day)
    store_spooled(con, [older], run_id="t", now=day)
    assert con.execute("select mx_user_guid from ops.end_users").fetchall() == [("USR-new",)]


# --- the outbox's rules, straight on the warehouse ----------------------------------------------------------


def _notification(member: str, status: str, at: dt.datetime) -> Notification:
    rule = route_for(status)
    return Notification(f"{member}:1", "end-user-1", "USR-1", member, "mxbank", status, rule.route.value,
                        rule.reason, rule.connect_mode.value, f"https://connect.example/reconnect/{member}", at)  # fmt: skip


def test_the_outbox_sends_only_members_asking_now_holds_the_rest_and_cancels_only_closed_episodes(con):
    day = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
    members = {"MBR-asking": None, "MBR-mid-job": None, "MBR-recovered": day, "MBR-retired": day}  # closed_at
    con.executemany(
        "insert into ops.notification_episodes values (?, 1, ?, 'needs_reconnect', ?, ?)",
        [(member, day, day, closed) for member, closed in members.items()],
    )
    con.execute(
        "insert into raw.mx_members (guid, user_guid, payload, run_id, fetched_at, removed_at)"
        " values ('MBR-retired', 'USR-1', '{}', 't', ?, ?)",
        [day, day],
    )
    assert store_notifications(con, [_notification(m, "DENIED", day) for m in members], now=day) == 4
    later = day + dt.timedelta(hours=1)
    assert cancel_closed(con, now=later) == {
        "MBR-recovered:1": "the member recovered before it was sent",
        "MBR-retired:1": "the member was retired before it was sent",
    }
    leased = lease_due(con, {"MBR-asking", "MBR-recovered"}, lease="run-1", now=later, until=later, limit=50)
    assert [n.notification_id for n in leased.notifications] == ["MBR-asking:1"]
    assert leased.held == ["MBR-mid-job:1"]  # its episode is open: kept for a read that asks
    # A new read asks something else of the mid-job member: its one notification now says so; the rest stay.
    assert store_notifications(con, [_notification(m, "CHALLENGED", later) for m in members], now=later) == 0
    rows = con.execute(
        "select member_guid, state, connection_status, connect_mode, created_at from ops.reconnect_notifications"
        " order by 1"
    ).fetchall()
    assert rows == [
        ("MBR-asking", "pending", "CHALLENGED", "update", day),
        ("MBR-mid-job", "pending", "CHALLENGED", "update", day),
        ("MBR-recovered", "cancelled", "DENIED", "reconnect", day),
        ("MBR-retired", "cancelled", "DENIED", "reconnect", day),
    ]
