"""What a refresh costs in MX calls when little or nothing changed (issue 14, "no-change refreshes are cheap").

Calls are counted from ``ops.api_calls`` (one row per HTTP attempt, each with its member when it has one). A
member's status comes from its user's member list, read in the same run (``test_status_from_lists.py``), so a
member MX has not aggregated since our last complete sync costs no call of its own: no status read, no account
list, no transaction read. The reconcile-window policy does not force a read there: MX changes a member's
transactions (new rows, pending rows posted or deleted, copies re-issued) when it aggregates, and every
successful aggregation moves ``successfully_aggregated_at``; the 14-day failsafe deletion of a pending row is the
one change MX may make without one, so a member holding a live pending row dated before the look-back is still
read (pinned in test_members.py).
"""

from collections import Counter

import dagster as dg

from mx_pipeline.defs.jobs import AFTER_REGISTRATION, scoped_run_config
from mx_pipeline.defs.resources import RefreshPolicyResource

from .conftest import INGEST, LOCATION

MAX_CALLS_PER_MEMBER = 4
MEMBER_LISTS = "/users/{user_guid}/members"
STATUS = "/users/{user_guid}/members/{member_guid}/status"
ACCOUNTS = "/users/{user_guid}/members/{member_guid}/accounts"
TRANSACTIONS = "/users/{user_guid}/members/{member_guid}/transactions"
CONNECTED = ("user-ok-1", "user-ok-2")


def _calls(pipeline, run_id: str) -> list[tuple[str | None, str]]:
    return pipeline.query("select member_guid, path_template from ops.api_calls where run_id = ?", run_id)


def _calls_of(pipeline, run_id: str, member_guid: str) -> Counter:
    return Counter(path for member, path in _calls(pipeline, run_id) if member == member_guid)


def _live_members(pipeline) -> int:
    return pipeline.query("select count(*) from raw.mx_members where removed_at is null")[0][0]


def _sync_one(pipeline, member_guid: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        INGEST, selection=AFTER_REGISTRATION, resources=pipeline.resources(),
        run_config=scoped_run_config(member_guids=[member_guid]),
    )  # fmt: skip


def _sync_outcome(pipeline, member_guid: str) -> tuple:
    return pipeline.query("select last_outcome, last_reason from ops.member_sync where member_guid = ?", member_guid)[0]


def test_a_steady_state_refresh_where_mx_did_not_aggregate_reads_only_the_member_lists(pipeline):
    pipeline.materialize()
    result = pipeline.materialize()

    assert len(_calls(pipeline, result.run_id)) <= MAX_CALLS_PER_MEMBER * _live_members(pipeline)
    for user_id in CONNECTED:
        member = pipeline.member_of[user_id]
        assert _calls_of(pipeline, result.run_id, member) == Counter()
        assert _sync_outcome(pipeline, member) == ("skipped", "unchanged since the last sync: MX has not aggregated")
    users = pipeline.query("select count(distinct user_guid) from raw.mx_members where removed_at is null")[0][0]
    assert Counter(path for _, path in _calls(pipeline, result.run_id)) == Counter({"/users": 1, MEMBER_LISTS: users})
    # what a member_health reader sees: the route is ready, the last sync skipped with that reason
    health = pipeline.query(
        "select route, last_sync_outcome, last_sync_reason from marts.member_health where member_guid = ?",
        pipeline.member_of["user-ok-1"],
    )
    assert health == [("ready", "skipped", "unchanged since the last sync: MX has not aggregated")]


def test_a_one_member_run_after_an_aggregation_costs_at_most_four_calls(pipeline):
    pipeline.materialize()
    member = pipeline.member_of["user-ok-1"]
    pipeline.admin(f"members/{member}/transactions", count=2)  # an aggregation that found two purchases

    result = _sync_one(pipeline, member)

    calls = _calls(pipeline, result.run_id)
    assert len(calls) <= MAX_CALLS_PER_MEMBER
    assert _calls_of(pipeline, result.run_id, member) == Counter({ACCOUNTS: 1, TRANSACTIONS: 1})
    assert _sync_outcome(pipeline, member) == ("synced", None)


def test_a_one_member_run_where_mx_did_not_aggregate_reads_only_its_users_member_list(pipeline):
    pipeline.materialize()
    member = pipeline.member_of["user-ok-1"]

    result = _sync_one(pipeline, member)

    assert _calls(pipeline, result.run_id) == [(None, MEMBER_LISTS)]  # its status is in the list


def test_the_day_after_members_connected_costs_at_most_four_calls_each(pipeline):
    pipeline.materialize()  # the connect day: every member's whole history carries today's updated_at
    pipeline.admin("clock/advance", days=1, minutes=1)  # MX's background aggregation comes due
    pipeline.admin("aggregations/finish")

    result = pipeline.materialize()

    assert len(_calls(pipeline, result.run_id)) <= MAX_CALLS_PER_MEMBER * _live_members(pipeline)
    for user_id in CONNECTED:
        calls = _calls_of(pipeline, result.run_id, pipeline.member_of[user_id])
        assert calls[ACCOUNTS] == 1 and calls[STATUS] == 0
        assert calls[TRANSACTIONS] == 1  # one read: the changed rows and the recent window in one pass


def test_a_refresh_the_data_team_asks_for_reads_the_member_even_when_mx_did_not_aggregate(pipeline):
    pipeline.materialize()
    member = pipeline.member_of["user-ok-1"]
    job = LOCATION.resolve_job_def("refresh_members")
    careful = RefreshPolicyResource(poll_first_seconds=0.2, poll_max_seconds=0.5)

    def refresh() -> dg.ExecuteInProcessResult:
        return job.execute_in_process(
            run_config={"member_guids": [member]}, resources={**pipeline.resources(), "refresh_policy": careful}
        )

    refresh()  # MX aggregates it
    result = refresh()  # within the 3-hour minimum interval (MX's throttle): MX is not asked again; read all the same

    assert _calls_of(pipeline, result.run_id, member) == Counter({ACCOUNTS: 1, TRANSACTIONS: 1})
    assert _sync_outcome(pipeline, member) == ("synced", None)


def test_end_users_mx_already_lists_are_registered_without_a_look_up_each(pipeline):
    """The fixture's users exist at MX (made through the API) before our CSV names them: the list says so."""
    result = pipeline.materialize()

    assert Counter(path for _, path in _calls(pipeline, result.run_id))["/users"] == 1  # the list, no look-up
    assert pipeline.query("select count(*) from ops.end_users where mx_user_guid is null") == [(0,)]
