"""Which members a tick refreshes: every rule of the scheduler, pinned on hand-made ops state.

Each rule holds wherever the claims and attempts live: in the warehouse (one machine), and in the shared Postgres
every worker reaches (``refresh/shared_ledger.py``); every test runs on both.
"""

import datetime as dt

import pytest

from mx_pipeline.refresh.aggregate import Attempt
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.refresh.shared_ledger import SharedLedger
from mx_pipeline.warehouse.refresh_state import WarehouseLedger, claimed_by, due_members, exhausted_members
from mx_pipeline.warehouse.retire import retire_members

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
POLICY = RefreshPolicy()


@pytest.fixture
def con(warehouse):
    with warehouse.connect() as con:
        yield con


@pytest.fixture(params=["warehouse", "shared"])
def ledger(request, con):
    if request.param == "warehouse":
        return WarehouseLedger(con)
    postgres = request.getfixturevalue("postgres")
    return SharedLedger(postgres.url(postgres.create_database()))


def member(con, guid, *, hours_since_success=30.0, route="ready", user="USR-1", institution="mxbank",
           status_first_read_hours_ago=0.0):  # fmt: skip
    last = None if hours_since_success is None else NOW - dt.timedelta(hours=hours_since_success)
    con.execute(
        "insert into raw.mx_member_status (guid, user_guid, connection_status, successfully_aggregated_at, payload,"
        " run_id, fetched_at) values (?, ?, 'CONNECTED', ?, '{}', 'r', ?)",
        [guid, user, last, NOW - dt.timedelta(hours=status_first_read_hours_ago)],
    )
    con.execute(
        "insert into raw.mx_members (guid, user_guid, institution_code, payload, run_id, fetched_at)"
        " values (?, ?, ?, '{}', 'r', ?)",
        [guid, user, institution, NOW],
    )
    con.execute(
        "insert into ops.member_routes values (?, ?, 'CONNECTED', false, ?, 'why', null, ?, 'r')",
        [guid, user, route, NOW],
    )


def attempt(ledger, guid, *, hours_ago, outcome="refreshed"):
    at = NOW - dt.timedelta(hours=hours_ago)
    ledger.record([Attempt(guid, "USR-1", at, at, outcome, "CONNECTED", 2)], trigger="sla", run_id="r")


def claim(ledger, members, *, trigger, run_key, now=NOW):
    ledger.claim(members, trigger=trigger, run_key=run_key, now=now)


def due(con, ledger, policy=POLICY, *, hours_later=0.0, **options):
    now = NOW + dt.timedelta(hours=hours_later)
    return [m.member_guid for m in due_members(con, policy, now=now, ledger=ledger, **options)]


def exhausted(con, ledger, policy=POLICY, *, hours_later=0.0):
    return exhausted_members(con, policy, now=NOW + dt.timedelta(hours=hours_later), ledger=ledger)


def test_a_member_older_than_its_sla_is_due_and_a_fresh_one_is_not(con, ledger):
    member(con, "MBR-stale", hours_since_success=25)
    member(con, "MBR-fresh", hours_since_success=23)
    member(con, "MBR-never", hours_since_success=None)  # never aggregated successfully: stale
    assert due(con, ledger) == ["MBR-never", "MBR-stale"]  # stalest first


def test_slas_can_be_set_per_member_per_user_and_per_tier(con, ledger):
    member(con, "MBR-a", hours_since_success=5, user="USR-a")
    member(con, "MBR-b", hours_since_success=5, user="USR-b")
    member(con, "MBR-c", hours_since_success=5, user="USR-c")
    member(con, "MBR-d", hours_since_success=30, user="USR-c")
    con.execute("insert into ops.end_users (id, source, mx_user_guid, tier) values ('c', 'csv', 'USR-c', 'premium')")
    con.execute(
        "insert into ops.freshness_sla values ('member', 'MBR-a', 4), ('user', 'USR-b', 4), ('tier', 'premium', 4)"
    )
    con.execute("insert into ops.freshness_sla values ('member', 'MBR-d', 48)")  # the member's own SLA wins
    assert due(con, ledger) == ["MBR-a", "MBR-b", "MBR-c"]


@pytest.mark.parametrize("route", ["in_progress", "terminal"])
def test_members_that_are_aggregating_or_are_terminal_are_never_refreshed(con, ledger, route):
    member(con, "MBR-1", route=route, status_first_read_hours_ago=1000)
    assert due(con, ledger) == []


@pytest.mark.parametrize("route", ["needs_mfa", "needs_reconnect"])
def test_a_member_waiting_on_the_user_is_re_read_once_per_cadence_and_never_aggregated(con, ledger, route):
    member(con, "MBR-new", route=route, status_first_read_hours_ago=23)  # routed there 23 h ago
    member(con, "MBR-old", route=route, status_first_read_hours_ago=25)
    member(con, "MBR-read", route=route, status_first_read_hours_ago=100)
    attempt(ledger, "MBR-read", hours_ago=2, outcome="reread")  # re-read 2 h ago, still waiting: not again yet
    assert [(m.member_guid, m.target.action) for m in due_members(con, POLICY, now=NOW, ledger=ledger)] == [
        ("MBR-old", "reread")
    ]
    assert due(con, ledger, RefreshPolicy(needs_user_reread_hours=1)) == ["MBR-new", "MBR-old", "MBR-read"]
    assert due(con, ledger, RefreshPolicy(needs_user_reread_hours=48)) == []


def test_a_member_retired_while_waiting_on_its_user_is_never_re_read(con, ledger):
    member(con, "MBR-1", route="needs_reconnect", status_first_read_hours_ago=100)
    assert due(con, ledger) == ["MBR-1"]
    retire_members(con, ["MBR-1"], reason="Deleted at MX.", run_id="r", now=NOW)
    assert due(con, ledger) == [] and due(con, ledger, only=["MBR-1"], ignore_sla=True, ignore_pacing=True) == []


def test_a_member_waiting_on_the_user_is_re_read_whatever_its_freshness_sla(con, ledger):
    member(con, "MBR-1", route="needs_mfa", hours_since_success=1, status_first_read_hours_ago=30)
    con.execute("insert into ops.freshness_sla values ('member', 'MBR-1', 1000)")
    assert due(con, ledger) == ["MBR-1"]


def test_re_reads_and_throttled_requests_never_count_against_the_cap_the_back_off_or_the_budget(con, ledger):
    policy = RefreshPolicy(min_interval_hours=0, requests_per_hour=3)
    member(con, "MBR-ready")
    for hours_ago in (0.2, 0.4, 0.6, 0.8):  # re-read while it was degraded, or waiting on its user
        attempt(ledger, "MBR-ready", hours_ago=hours_ago, outcome="reread")
    attempt(ledger, "MBR-ready", hours_ago=0.9, outcome="reread_failed")
    for hours_ago in (0.3, 0.5):  # held back unasked: another worker had asked MX to aggregate it
        attempt(ledger, "MBR-ready", hours_ago=hours_ago, outcome="throttled")
    assert due(con, ledger, policy) == ["MBR-ready"] and exhausted(con, ledger, policy) == []


def test_members_waiting_on_the_user_are_re_read_when_the_aggregation_budget_is_spent(con, ledger):
    member(con, "MBR-ready")
    member(con, "MBR-mfa", route="needs_mfa", status_first_read_hours_ago=30)
    member(con, "MBR-reconnect", route="needs_reconnect", status_first_read_hours_ago=30)
    claim(ledger, [("MBR-reconnect", "USR-1")], trigger="sla", run_key="run-1")  # a re-read under way
    assert due(con, ledger, RefreshPolicy(requests_per_hour=1)) == ["MBR-ready", "MBR-mfa"]  # aggregations first
    attempt(ledger, "MBR-other", hours_ago=0.5)  # the hour's one aggregation is spent
    assert due(con, ledger, RefreshPolicy(requests_per_hour=1)) == ["MBR-mfa"]


def test_a_degraded_member_is_re_read_never_aggregated(con, ledger):
    member(con, "MBR-1", route="degraded")
    [due_member] = due_members(con, POLICY, now=NOW, ledger=ledger)
    assert due_member.target.action == "reread"


def test_a_claimed_member_is_left_to_the_run_that_claimed_it(con, ledger):
    member(con, "MBR-1")
    claim(ledger, [("MBR-1", "USR-1")], trigger="webhook", run_key="run-1")
    assert [m.member_guid for m in claimed_by(con, "run-1", ledger=ledger)] == ["MBR-1"]
    assert due(con, ledger) == []
    ledger.release(run_key="run-1")
    assert due(con, ledger) == ["MBR-1"]


def test_a_claim_whose_run_died_expires(con, ledger):
    member(con, "MBR-1")
    claim(ledger, [("MBR-1", "USR-1")], trigger="sla", run_key="run-1", now=NOW - dt.timedelta(hours=5))
    assert ledger.expire(POLICY.claim_ttl, now=NOW) == 1
    assert due(con, ledger) == ["MBR-1"]


def test_requests_for_one_member_keep_the_minimum_interval(con, ledger):
    member(con, "MBR-1")
    attempt(ledger, "MBR-1", hours_ago=2, outcome="declined")
    assert due(con, ledger) == []
    assert due(con, ledger, hours_later=2) == ["MBR-1"]


def test_failures_back_off_exponentially_and_the_cap_exhausts_the_member(con, ledger):
    policy = RefreshPolicy(min_interval_hours=0, backoff_base_minutes=60)
    member(con, "MBR-1")
    attempt(ledger, "MBR-1", hours_ago=1.5, outcome="failed")
    assert due(con, ledger, policy) == ["MBR-1"]  # 1 failure: back off 1 h
    attempt(ledger, "MBR-1", hours_ago=1.5, outcome="timed_out")
    assert due(con, ledger, policy) == []  # 2 failures: back off 2 h
    assert due(con, ledger, policy, hours_later=1) == ["MBR-1"]
    attempt(ledger, "MBR-1", hours_ago=10, outcome="failed")
    assert due(con, ledger, policy, hours_later=1) == []  # 3 attempts in 24 h: no more
    assert exhausted(con, ledger, policy, hours_later=1) == ["MBR-1"]
    assert (
        due(con, ledger, policy, hours_later=25) == ["MBR-1"] and exhausted(con, ledger, policy, hours_later=25) == []
    )


def test_a_backlog_is_worked_off_in_bounded_ticks_within_the_budget(con, ledger):
    for i in range(12):
        member(con, f"MBR-{i:02}", hours_since_success=30 + i, institution="big" if i % 3 else "small")
    assert len(due(con, ledger, RefreshPolicy(max_members_per_tick=5))) == 5
    assert len(due(con, ledger, RefreshPolicy(per_institution_per_tick=2))) == 4  # 2 per institution
    for i in range(3):
        attempt(ledger, f"MBR-other-{i}", hours_ago=0.5)
    assert len(due(con, ledger, RefreshPolicy(requests_per_hour=7))) == 4  # 3 of 7 spent in the last hour


def test_a_manual_refresh_judges_only_the_named_members_and_may_ignore_the_sla(con, ledger):
    member(con, "MBR-fresh", hours_since_success=1)
    member(con, "MBR-stale")
    assert due(con, ledger, only=["MBR-fresh"]) == []
    assert due(con, ledger, only=["MBR-fresh"], ignore_sla=True) == ["MBR-fresh"]
    assert due(con, ledger, only=[]) == []


def test_successful_refreshes_never_exhaust_a_member_on_a_short_sla(con, ledger):
    member(con, "MBR-1", hours_since_success=4.5)
    con.execute("insert into ops.freshness_sla values ('member', 'MBR-1', 4)")
    for hours_ago in (20, 14, 9):  # three refreshes today, each one succeeded
        attempt(ledger, "MBR-1", hours_ago=hours_ago, outcome="refreshed")
    assert due(con, ledger) == ["MBR-1"] and exhausted(con, ledger, POLICY) == []


def test_runs_still_under_way_count_against_the_hourly_budget(con, ledger):
    for i in range(6):
        member(con, f"MBR-{i}")
    claim(ledger, [("MBR-0", "USR-1"), ("MBR-1", "USR-1")], trigger="sla", run_key="run-1")
    claim(ledger, [("MBR-2", "USR-1")], trigger="webhook", run_key="run-2")  # a read, not a request
    assert len(due(con, ledger, RefreshPolicy(requests_per_hour=4))) == 2


def test_the_override_skips_pacing_but_never_the_route(con, ledger):
    member(con, "MBR-ready")
    member(con, "MBR-mfa", route="needs_mfa")
    member(con, "MBR-busy", route="in_progress")
    attempt(ledger, "MBR-ready", hours_ago=0.5, outcome="declined")
    named = ["MBR-ready", "MBR-mfa", "MBR-busy"]
    assert due(con, ledger, only=named) == []
    assert due(con, ledger, only=named, ignore_sla=True) == ["MBR-mfa"]  # read now, never aggregated
    assert due(con, ledger, only=named, ignore_sla=True, ignore_pacing=True) == ["MBR-ready", "MBR-mfa"]
    actions = {m.member_guid: m.target.action for m in due_members(con, POLICY, now=NOW, only=named,
                                                                  ignore_sla=True, ignore_pacing=True)}  # fmt: skip
    assert actions == {"MBR-mfa": "reread", "MBR-ready": "aggregate"}
