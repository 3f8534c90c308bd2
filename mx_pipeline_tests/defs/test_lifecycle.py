"""The status gate through the sandbox: every route lands where it should, and each user is told once."""

import contextlib
import json
from collections.abc import Iterator

import dagster as dg
import pytest

from mx_pipeline import settings
from mx_pipeline.connect.spool import Spool
from mx_pipeline.defs.lifecycle import sensors
from mx_pipeline.defs.resources import NotifierResource
from mx_pipeline.lifecycle.routes import route_for
from mx_pipeline_tests.local_http import QuietHandler, serving

from .conftest import CONNECT_URL, metadata_of

GRACE_OVER = {"member_lifecycle": {"ops": {"status_gate": {"config": {"degraded_grace_hours": 0.0}}}}}


@pytest.fixture
def pipeline(pipeline):
    """On the sandbox's frozen clock: a job MX is running ends only when a test finishes it, never mid-run."""
    pipeline.sandbox.freeze_clock()
    return pipeline


def routes(pipeline) -> dict[str, str]:
    return dict(pipeline.query("select member_guid, route from ops.member_routes"))


def notifications(pipeline) -> dict[str, tuple]:
    rows = pipeline.query(
        "select member_guid, notification_id, connect_mode, connection_status, link_id from ops.reconnect_notifications"
    )
    return {member: tuple(rest) for member, *rest in rows}


def test_each_member_is_routed_by_its_fresh_status_and_only_ready_members_are_fetched(pipeline):
    pipeline.admin(f"members/{pipeline.member_of['user-ok-2']}/connection_status", connection_status="DISABLED")
    result = pipeline.materialize()
    expected = {
        pipeline.member_of["user-ok-1"]: "ready",
        pipeline.member_of["user-ok-2"]: "degraded",
        pipeline.member_of["user-mfa"]: "needs_mfa",
        pipeline.member_of["user-denied"]: "needs_reconnect",
    }
    assert routes(pipeline) == expected
    fetched = {m for (m,) in pipeline.query("select distinct member_guid from raw.mx_accounts")}
    assert fetched == {pipeline.member_of["user-ok-1"]}
    by_route = metadata_of(result)["ops.member_routes"]["members_by_route"]
    assert by_route == {"ready": 1, "degraded": 1, "needs_mfa": 1, "needs_reconnect": 1}


def test_users_who_must_act_are_told_once_with_the_right_kind_of_connect(pipeline):
    pipeline.admin(f"members/{pipeline.member_of['user-ok-2']}/connection_status", connection_status="DISABLED")
    pipeline.materialize()
    told = notifications(pipeline)
    assert {m: (mode, status) for m, (_, mode, status, _) in told.items()} == {
        pipeline.member_of["user-mfa"]: ("update", "CHALLENGED"),  # MFA in Connect opened on the member
        pipeline.member_of["user-denied"]: ("reconnect", "DENIED"),  # fresh credentials
        pipeline.member_of["user-ok-2"]: ("reconnect", "DISABLED"),  # told at once: no grace for DISABLED
    }
    assert all(link_id for _, _, _, link_id in told.values())  # the link by id: its URL is made when it is sent
    pipeline.materialize()
    assert notifications(pipeline) == told  # still in trouble: nobody is told again


def test_a_degraded_member_is_given_a_grace_before_its_user_is_asked_to_reconnect(pipeline):
    member = pipeline.member_of["user-ok-1"]
    pipeline.admin(f"members/{member}/connection_status", connection_status="DEGRADED")
    pipeline.materialize()
    assert routes(pipeline)[member] == "degraded"
    assert member not in notifications(pipeline)  # our own burst may have caused it: back off first
    pipeline.materialize(ops=GRACE_OVER)  # still DEGRADED when the grace is over
    assert notifications(pipeline)[member][1:3] == ("reconnect", "DEGRADED")


@pytest.mark.parametrize("status", ["FAILED", "CLOSED", "PENDING", "DELAYED"])
def test_members_that_need_nothing_from_the_user_are_held_without_a_notification(pipeline, status):
    member = pipeline.member_of["user-ok-1"]
    pipeline.admin(f"members/{member}/connection_status", connection_status=status)
    pipeline.materialize()
    assert routes(pipeline)[member] == route_for(status).route.value
    assert member not in notifications(pipeline)
    assert not pipeline.query("select 1 from raw.mx_accounts where member_guid = ?", member)


def test_an_episode_closes_only_on_a_healthy_read_and_the_next_one_is_told_again(pipeline):
    member = pipeline.member_of["user-mfa"]
    user_guid, _ = pipeline.member("user-mfa")
    pipeline.materialize()
    assert notifications(pipeline)[member][0] == f"{member}:1"
    challenges = pipeline.client.list_member_challenges(user_guid, member)
    pipeline.client.resume_aggregation(user_guid, member, {c.guid: "correct" for c in challenges})
    pipeline.materialize()  # answered, but the job is still running: not healthy yet
    assert routes(pipeline)[member] == "in_progress"
    assert pipeline.query("select closed_at is null from ops.notification_episodes where member_guid = ?", member) == [
        (True,)
    ]
    pipeline.admin(f"members/{member}/finish_aggregation")
    pipeline.materialize()
    assert routes(pipeline)[member] == "ready"
    (transactions,) = pipeline.query("select count(*) from raw.mx_transactions where member_guid = ?", member)[0]
    assert transactions > 0  # data flows again once the member is healthy
    pipeline.admin(f"members/{member}/connection_status", connection_status="CHALLENGED")  # not sequential
    pipeline.materialize()
    episodes = pipeline.query(
        "select number, notified_at is not null, closed_at is not null from ops.notification_episodes"
        " where member_guid = ? order by number",
        member,
    )
    assert episodes == [(1, True, True), (2, True, False)]
    assert notifications(pipeline)[member][0] == f"{member}:2"
    assert pipeline.query("select count(*) from raw.mx_transactions where member_guid = ?", member) == [
        (transactions,)
    ]  # falling back into trouble never deletes the member's history


def test_a_notification_the_backend_refused_stays_in_the_outbox_and_is_delivered_later(pipeline):
    backend = _Backend(fail_first=8)  # two notifications, each POSTed 4 times in a run by the HttpNotifier
    with backend.serving() as url:
        notifier = NotifierResource(url=url, retry_backoff_seconds=0.0)
        first = metadata_of(pipeline.materialize(notifier=notifier))["ops.reconnect_notifications"]
        assert first["delivered"] == 0 and len(first["failed"]) == 2
        undelivered = pipeline.query(
            "select attempts, last_error from ops.reconnect_notifications where delivered_at is null"
        )
        assert len(undelivered) == 2
        assert all(attempts == 1 and error.endswith("not delivered: HTTP 503") for attempts, error in undelivered)
        second = metadata_of(pipeline.materialize(notifier=notifier))["ops.reconnect_notifications"]
    assert second["delivered"] == 2
    assert {n["member_guid"] for n in backend.received} == {
        pipeline.member_of["user-mfa"],
        pipeline.member_of["user-denied"],
    }
    body = next(n for n in backend.received if n["member_guid"] == pipeline.member_of["user-mfa"])
    assert body["connect_mode"] == "update" and body["reason"]
    assert body["reconnect_url"].startswith(f"{CONNECT_URL}/reconnect/")  # never a short-lived widget URL
    assert not pipeline.query("select 1 from ops.reconnect_notifications where delivered_at is null")


class _Backend:
    """A product backend on loopback that answers 503 a few times, then accepts and keeps what it got."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.received: list[dict] = []

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        backend = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if backend.fail_first > 0:
                    backend.fail_first -= 1
                    self.send_response(503)
                else:
                    backend.received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

        with serving(Handler, path="/notifications") as url:
            yield url


def test_a_connect_callback_alone_never_clears_a_member_only_a_fresh_healthy_read_does(pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    user_guid, member = pipeline.member("user-mfa")
    pipeline.materialize()

    def connect_callback_then_sensor_run(status: str) -> None:
        event = {"user_id": "user-mfa", "user_guid": user_guid, "member_guid": member, "mode": "update",
                 "status": status, "source": "redirect"}  # fmt: skip
        Spool(settings.spool_dir()).append("connect_callback", f"{member}:{status}", json.dumps(event))
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(instance=instance, resources=pipeline.resources())
            [run] = sensors.connect_events(context).run_requests
        pipeline.materialize(ops=run.run_config["ops"])

    # The user came back from Connect, but MX still says CHALLENGED: the member stays on the MFA route.
    connect_callback_then_sensor_run("CHALLENGED")
    assert routes(pipeline)[member] == "needs_mfa"
    challenges = pipeline.client.list_member_challenges(user_guid, member)
    pipeline.client.resume_aggregation(user_guid, member, {c.guid: "correct" for c in challenges})
    pipeline.admin(f"members/{member}/finish_aggregation")
    connect_callback_then_sensor_run("CONNECTED")
    assert routes(pipeline)[member] == "ready"
    assert pipeline.query(
        "select closed_at is not null from ops.notification_episodes where member_guid = ?", member
    ) == [(True,)]
    assert pipeline.query("select count(*) > 0 from raw.mx_transactions where member_guid = ?", member) == [(True,)]
