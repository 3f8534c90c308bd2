"""Every connection status has exactly one route, and MX's own vocabulary is the test's source of truth."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mx_pipeline.lifecycle.routes import (
    AT_ONCE,
    DEGRADED_GRACE,
    ROUTES,
    ConnectMode,
    RefreshAction,
    Route,
    route_for,
)
from mx_pipeline.mx.statuses import END_USER_ACTIONABLE, ConnectionStatus
from mx_pipeline_tests.contract import spec_path

S = ConnectionStatus


def test_every_status_in_mx_s_spec_has_a_route():
    import yaml

    newer = spec_path().with_name("v20250224.yml")
    if not newer.is_file():
        pytest.skip(f"{newer} not found (set MX_OPENAPI_SPEC to the folder's v20111101.yml)")
    schema = yaml.safe_load(newer.read_text())["components"]["schemas"]["MemberResponse"]
    statuses = {s for s in schema["properties"]["connection_status"]["enum"] if s is not None}
    assert len(statuses) == 22
    assert statuses == {s.value for s in ROUTES}


def test_the_table_routes_each_status_exactly_once():
    assert set(ROUTES) == set(ConnectionStatus)


@pytest.mark.parametrize(
    ("status", "route", "mode"),
    [
        (S.CONNECTED, Route.READY, None),
        # MFA: Connect on the member, no credential re-entry (MX: current_member_guid alone).
        (S.CHALLENGED, Route.NEEDS_MFA, ConnectMode.UPDATE),
        (S.REJECTED, Route.NEEDS_MFA, ConnectMode.UPDATE),
        (S.EXPIRED, Route.NEEDS_MFA, ConnectMode.UPDATE),
        # Credentials or action needed: current_member_guid + update_credentials.
        (S.DENIED, Route.NEEDS_RECONNECT, ConnectMode.RECONNECT),
        (S.PREVENTED, Route.NEEDS_RECONNECT, ConnectMode.RECONNECT),
        (S.IMPAIRED, Route.NEEDS_RECONNECT, ConnectMode.RECONNECT),
        (S.IMPORTED, Route.NEEDS_RECONNECT, ConnectMode.RECONNECT),
        (S.LOCKED, Route.NEEDS_RECONNECT, ConnectMode.RECONNECT),
        (S.IMPEDED, Route.NEEDS_RECONNECT, ConnectMode.RECONNECT),
        # Not user-actionable for MX and possibly caused by our own bursts: back off, notify if it persists.
        (S.DEGRADED, Route.DEGRADED, ConnectMode.RECONNECT),
        (S.DISABLED, Route.DEGRADED, ConnectMode.RECONNECT),
        (S.CREATED, Route.IN_PROGRESS, None),
        (S.PENDING, Route.IN_PROGRESS, None),
        (S.RESUMED, Route.IN_PROGRESS, None),
        (S.UPDATED, Route.IN_PROGRESS, None),
        (S.RECONNECTED, Route.IN_PROGRESS, None),
        (S.DELAYED, Route.IN_PROGRESS, None),
        (S.DISCONNECTED, Route.INSTITUTION_SIDE, None),
        (S.FAILED, Route.INSTITUTION_SIDE, None),
        (S.DISCONTINUED, Route.TERMINAL, None),
        (S.CLOSED, Route.TERMINAL, None),
    ],
)
def test_status_routes(status, route, mode):
    rule = route_for(status.value)
    assert (rule.route, rule.connect_mode) == (route, mode)


def test_every_status_mx_calls_user_actionable_asks_the_user_at_once():
    for status in END_USER_ACTIONABLE:
        rule = route_for(status.value)
        assert rule.connect_mode is not None and rule.notify_after == AT_ONCE, status


def test_degraded_waits_out_a_grace_but_disabled_does_not():
    assert route_for("DEGRADED").notify_after == DEGRADED_GRACE
    assert route_for("DISABLED").notify_after == AT_ONCE


def test_the_scheduler_aggregates_healthy_and_institution_side_members_and_only_re_reads_the_others():
    actions = {s: route_for(s.value).refresh_action for s in S if route_for(s.value).refresh_action}
    rereads = {S.DEGRADED, S.DISABLED, *END_USER_ACTIONABLE, S.IMPORTED}  # degraded, or waiting on the user
    assert actions == {
        S.CONNECTED: RefreshAction.AGGREGATE,
        S.DISCONNECTED: RefreshAction.AGGREGATE,
        S.FAILED: RefreshAction.AGGREGATE,
    } | dict.fromkeys(rereads, RefreshAction.REREAD)


def test_a_connected_member_still_aggregating_is_in_progress():
    assert route_for("CONNECTED", is_being_aggregated=True).route is Route.IN_PROGRESS


def test_a_challenged_member_waits_for_the_user_even_while_its_job_is_open():
    assert route_for("CHALLENGED", is_being_aggregated=True).route is Route.NEEDS_MFA


@pytest.mark.parametrize("status", [s for s in S if s is not S.CHALLENGED])
def test_every_other_status_read_while_a_job_runs_is_in_progress(status):
    # MX is still working: whatever the status says now may change before the job ends, so nobody is asked
    # to act, nothing is fetched, nothing is aggregated again, and nothing is held for good.
    rule = route_for(status.value, is_being_aggregated=True)
    assert (rule.route, rule.connect_mode, rule.notify_after, rule.refresh_action) == (
        Route.IN_PROGRESS,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("status", list(S))
def test_once_the_job_ends_the_status_routes_by_the_table(status):
    assert route_for(status.value, is_being_aggregated=False) == ROUTES[status]


@pytest.mark.parametrize("status", [None, "", "SOMETHING_NEW", "connected"])
def test_unknown_or_missing_statuses_are_held_never_crashed_on(status):
    rule = route_for(status)
    assert rule.route is Route.TERMINAL and rule.refresh_action is None and rule.connect_mode is None


def test_every_route_that_asks_the_user_says_why_in_plain_words():
    for status, rule in ROUTES.items():
        assert rule.reason.endswith(".") and "_" not in rule.reason, status
        assert status.value not in rule.reason  # never MX's code words at the user


@given(st.lists(st.one_of(st.sampled_from([s.value for s in S]), st.text(max_size=12), st.none()), max_size=50),
       st.booleans())  # fmt: skip
def test_any_sequence_of_statuses_routes_by_the_table_alone(sequence, aggregating):
    # Statuses are not sequential: the route depends on the fresh read only, never on the history.
    for status in sequence:
        rule = route_for(status, is_being_aggregated=aggregating)
        expected = ROUTES.get(S(status)) if status in S.__members__ else None
        if expected is not None and not (aggregating and status != S.CHALLENGED):
            assert rule == expected
        else:
            assert rule.route in {Route.IN_PROGRESS, Route.TERMINAL}
