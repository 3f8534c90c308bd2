"""``refresh_batch`` against the sandbox, on the sandbox's clock: what each kind of ending is called."""

import datetime as dt

import pytest
import requests

from mx_pipeline import settings
from mx_pipeline.mx import MxClient, RateLimiter, RateLimits
from mx_pipeline.mx.records import MemberStatus
from mx_pipeline.refresh.aggregate import REREAD, RefreshTarget, classify, refresh_batch
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.sandbox.server import running_sandbox

AGGREGATION_SECONDS = 60
POLICY = RefreshPolicy(poll_first_seconds=10, poll_max_seconds=40, poll_timeout_seconds=600)


class Sandbox:
    """A frozen-clock sandbox whose time moves only when the refresh sleeps: no real waiting."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.client = MxClient(handle.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY)
        self.elapsed = 0.0

    def clock(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds
        self.handle.world.clock.advance(seconds)

    def connected_member(self, password: str = "password") -> RefreshTarget:
        user = self.client.ensure_user(id=f"user-{password}")
        fields = {c.field_name: c.guid for c in self.client.list_institution_credentials("mxbank")}
        credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: password}
        member = self.client.create_member(user.guid, institution_code="mxbank", credentials=credentials)
        self.admin(f"members/{member.guid}/finish_aggregation")
        status = self.client.read_member_status(user.guid, member.guid)
        return RefreshTarget(member.guid, user.guid, last_success=status.successfully_aggregated_at)

    def admin(self, path: str, **body) -> None:
        requests.post(f"{self.handle.base_url}/_sandbox/{path}", json=body, timeout=10).raise_for_status()

    def refresh(self, *targets: RefreshTarget, policy: RefreshPolicy = POLICY):
        return refresh_batch(self.client, targets, policy, clock=self.clock, sleep=self.sleep)


@pytest.fixture
def sandbox():
    options = {"freeze_clock": True, "aggregation_seconds": AGGREGATION_SECONDS, "start_time": "2026-11-25T12:00:00Z"}
    with running_sandbox(**options) as handle:
        box = Sandbox(handle)
        yield box
        box.client.close()


def test_an_aggregation_is_polled_with_back_off_until_it_finishes(sandbox):
    target = sandbox.connected_member()
    sandbox.sleep(3600)  # an hour later
    [attempt] = sandbox.refresh(target)
    assert (attempt.outcome, attempt.connection_status) == ("refreshed", "CONNECTED")
    assert attempt.api_calls == 1 + 3  # the request, then polls after 10 s, 20 s and 40 s (70 s >= 60 s)
    assert sandbox.elapsed == 3600 + 70


def test_members_of_one_batch_are_polled_together(sandbox):
    first, second = sandbox.connected_member(), sandbox.connected_member("password2")
    sandbox.sleep(3600)
    attempts = sandbox.refresh(first, second)
    assert [a.outcome for a in attempts] == ["refreshed", "refreshed"]
    assert sandbox.elapsed == 3600 + 70  # not twice as long


def test_an_aggregation_that_ends_challenged_needs_the_user(sandbox):
    target = sandbox.connected_member()
    sandbox.admin(f"members/{target.member_guid}/script", outcomes=["CHALLENGED"])
    [attempt] = sandbox.refresh(target)
    assert (attempt.outcome, attempt.connection_status) == ("needs_user", "CHALLENGED")


def test_another_job_type_running_is_a_conflict_not_a_failure(sandbox):
    target = sandbox.connected_member()
    sandbox.client.check_balances(target.user_guid, target.member_guid)  # a balance job: aggregate answers 409
    [attempt] = sandbox.refresh(target)
    assert attempt.outcome == "conflict" and "Conflict" in attempt.detail


def test_a_run_stops_waiting_at_its_timeout(sandbox):
    target = sandbox.connected_member()
    [attempt] = sandbox.refresh(target, policy=RefreshPolicy(poll_first_seconds=10, poll_timeout_seconds=30))
    assert attempt.outcome == "timed_out"
    assert sandbox.elapsed == 30


def test_a_degraded_member_is_only_re_read(sandbox):
    target = sandbox.connected_member()
    sandbox.admin(f"members/{target.member_guid}/connection_status", connection_status="DEGRADED")
    [attempt] = sandbox.refresh(RefreshTarget(target.member_guid, target.user_guid, REREAD))
    assert (attempt.outcome, attempt.connection_status, attempt.api_calls) == ("reread", "DEGRADED", 1)


def test_a_member_another_worker_asked_to_aggregate_within_the_interval_is_held_back_unasked(sandbox, postgres):
    budget_url = postgres.url(postgres.create_database())
    workers = [
        MxClient(sandbox.handle.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY,
                 limiter=RateLimiter.spending(RateLimits(), budget_url))
        for _ in range(2)
    ]  # fmt: skip
    target = sandbox.connected_member()
    sandbox.sleep(3600)

    def refresh(worker, **options):
        return refresh_batch(worker, [target], POLICY, clock=sandbox.clock, sleep=sandbox.sleep, **options)

    [first] = refresh(workers[0])
    [second] = refresh(workers[1])  # a minute later, on another worker
    [forced] = refresh(workers[1], throttle=False)  # the data team's override

    assert first.outcome == "refreshed"
    assert (second.outcome, second.api_calls) == ("throttled", 0) and "minimum interval" in second.detail
    assert forced.outcome != "throttled" and forced.api_calls >= 1
    for worker in workers:
        worker.close()


@pytest.mark.parametrize(
    ("status", "aggregating", "succeeded_hours_ago", "outcome"),
    [
        ("CONNECTED", False, 0, "refreshed"),
        ("CONNECTED", False, 5, "declined"),  # MX kept its recent data: not a failure
        ("CONNECTED", True, 5, "timed_out"),
        ("DENIED", False, 5, "needs_user"),
        ("DEGRADED", False, 5, "needs_user"),
        ("FAILED", False, 5, "failed"),
        ("CLOSED", False, 5, "held"),
        ("SOMETHING_NEW", False, 5, "held"),
    ],
)
def test_each_ending_has_one_name(status, aggregating, succeeded_hours_ago, outcome):
    before = dt.datetime(2026, 11, 25, 7, tzinfo=dt.UTC)
    payload = {
        "member": {
            "guid": "MBR-1",
            "connection_status": status,
            "is_being_aggregated": aggregating,
            "successfully_aggregated_at": (before + dt.timedelta(hours=5 - succeeded_hours_ago)).isoformat(),
        }
    }
    assert classify(MemberStatus.from_payload(payload["member"]), before + dt.timedelta(hours=1)) == outcome
