"""Members waiting on their user are still watched: a slow status re-read, never an aggregation (sandbox)."""

import datetime as dt

import dagster as dg
import pytest

from mx_pipeline.defs.refresh import sensors
from mx_pipeline.defs.resources import RefreshPolicyResource

from .test_refresh import attempts, run_refreshes, tick

# Production's rules (daily re-read cadence), with polls short enough for a test.
POLICY = RefreshPolicyResource(poll_first_seconds=0.2, poll_max_seconds=0.5)
CADENCE = dt.timedelta(hours=POLICY.needs_user_reread_hours)


@pytest.fixture
def judged_at(monkeypatch):
    """Run the freshness sensor's tick as if it were ``at``: the warehouse's times stay real, none is waited for."""

    def tick_at(pipeline, at: dt.datetime, cursor: str | None = None):
        monkeypatch.setattr(sensors, "_now", lambda: at)
        return tick(pipeline, POLICY, cursor)

    return tick_at


def members_in(result) -> set[str]:
    if isinstance(result, dg.SkipReason):
        return set()
    return {
        m for r in result.run_requests for m in r.run_config["ops"]["ops__refresh_attempts"]["config"]["member_guids"]
    }


def aggregations_started(pipeline, member: str) -> int:
    with pipeline.sandbox.world.lock:
        return pipeline.sandbox.world.aggregation_count[member]


def route_of(pipeline, member: str) -> str:
    return pipeline.query("select route from ops.member_routes where member_guid = ?", member)[0][0]


def test_a_member_whose_user_answered_mfa_unseen_by_us_is_re_read_once_the_cadence_passed(pipeline, judged_at):
    pipeline.materialize()
    member = pipeline.member_of["user-mfa"]
    user_guid, _ = pipeline.member("user-mfa")
    assert route_of(pipeline, member) == "needs_mfa"
    routed_at = dt.datetime.now(dt.UTC)
    # The user answers in Connect somewhere we never hear from: no callback, no webhook reaches us.
    challenges = pipeline.client.list_member_challenges(user_guid, member)
    pipeline.client.resume_aggregation(user_guid, member, {c.guid: "correct" for c in challenges})
    pipeline.admin(f"members/{member}/finish_aggregation")
    started = aggregations_started(pipeline, member)

    assert member not in members_in(judged_at(pipeline, routed_at + CADENCE - dt.timedelta(hours=1)))
    due = judged_at(pipeline, routed_at + CADENCE + dt.timedelta(minutes=5))
    assert member in members_in(due)
    run_refreshes(pipeline, due, POLICY)

    assert attempts(pipeline, member) == [(member, "sla", "reread")]
    assert route_of(pipeline, member) == "ready"
    assert pipeline.query("select count(*) > 0 from raw.mx_transactions where member_guid = ?", member) == [(True,)]
    assert aggregations_started(pipeline, member) == started  # we only read it: MX was never asked to aggregate


def test_a_member_still_waiting_on_its_user_is_re_read_once_a_cadence_and_never_aggregated(pipeline, judged_at):
    pipeline.materialize()
    waiting = [pipeline.member_of["user-mfa"], pipeline.member_of["user-denied"]]
    started = {m: aggregations_started(pipeline, m) for m in waiting}
    routed_at = dt.datetime.now(dt.UTC)

    first = judged_at(pipeline, routed_at + CADENCE + dt.timedelta(minutes=5))
    assert set(waiting) <= members_in(first)
    run_refreshes(pipeline, first, POLICY)
    reread_at = dt.datetime.now(dt.UTC)

    assert {m: [o for _, _, o in attempts(pipeline, m)] for m in waiting} == {m: ["reread"] for m in waiting}
    assert [route_of(pipeline, m) for m in waiting] == ["needs_mfa", "needs_reconnect"]
    later = judged_at(pipeline, reread_at + CADENCE - dt.timedelta(hours=1), first.cursor)
    assert not set(waiting) & members_in(later)  # read a moment ago: not again before the cadence
    assert {m: aggregations_started(pipeline, m) for m in waiting} == started
