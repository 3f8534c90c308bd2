"""A run in which members could not be read says so, shows why in member_health, and the sensor reads them again.

MX is the sandbox, seen through :class:`ScriptedMx`: requests whose path matches one of its patterns are answered
with an error every time (so the transport's retries are spent), everything else reaches the sandbox.
"""

import datetime as dt
import os
import re
from typing import ClassVar
from urllib.parse import urlsplit

import dagster as dg
import pytest
import requests
from requests.structures import CaseInsensitiveDict

from mx_pipeline.defs.jobs import AFTER_REGISTRATION, MODELS, scoped_run_config
from mx_pipeline.defs.refresh import sensors
from mx_pipeline.defs.resources import MxResource, RefreshPolicyResource
from mx_pipeline.mx import MxClient, RetryPolicy
from mx_pipeline.warehouse.connection import holds_writer
from mx_pipeline.warehouse.sync_state import RETRY_TAG

from .conftest import CONNECTIONS, INGEST, WITHOUT_THE_MEMBER_LISTS, metadata_of

MEMBER = "/users/[^/]+/members/{member}"
READS = {
    "status": MEMBER + "/status$",
    "accounts": MEMBER + "/accounts$",
    "transactions": MEMBER + "/transactions$",
}
# How many members each read asks about: every member's status, the connected members' accounts and transactions.
MEMBERS_READ = {"status": len(CONNECTIONS), "accounts": 2, "transactions": 2}


class _Scripted(requests.adapters.HTTPAdapter):
    def __init__(self, answers: dict[str, int], on_request) -> None:
        super().__init__()
        self.answers, self.on_request = answers, on_request

    def send(self, request, **kwargs):
        path = urlsplit(request.url).path
        self.on_request(path)
        status = next((s for pattern, s in self.answers.items() if re.search(pattern, path)), None)
        if status is None:
            return super().send(request, **kwargs)
        response = requests.Response()
        response.status_code, response.url, response.request = status, request.url, request
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response._content = b'{"error": {"message": "scripted by the test"}}'
        return response


class ScriptedMx(MxResource):
    """The sandbox, but a request whose path matches a pattern of ``answers`` gets that status, every attempt.

    Every request's path is recorded in ``requests`` with whether the thread asking held a warehouse connection:
    the write lock every writable connection takes, and, when members are read one at a time (no other thread
    that could hold one), any file handle of the process on the warehouse.
    """

    answers: dict[str, int] = {}
    warehouse_path: str = ""
    requests: ClassVar[list[tuple[str, bool]]] = []

    def client(self, observers=()) -> MxClient:
        session = requests.Session()
        session.mount("http://", _Scripted(self.answers, self._record))
        return MxClient(
            self.base_url, self.client_id, self.api_key, observers=list(observers), session=session,
            retry=RetryPolicy(max_attempts=2, backoff_base=0.0),
        )  # fmt: skip

    def _record(self, path: str) -> None:
        held = holds_writer(self.warehouse_path) or (self.concurrency == 1 and _held_open_here(self.warehouse_path))
        ScriptedMx.requests.append((path, held))


def _held_open_here(path: str) -> bool:
    """Does this process hold the warehouse file (or its WAL) open, i.e. a DuckDB connection to it?"""
    fds = "/proc/self/fd"
    targets = {path, path + ".wal"}
    for fd in os.listdir(fds):
        try:
            if os.readlink(f"{fds}/{fd}") in targets:
                return True
        except OSError:
            continue  # closed since it was listed
    return False


def scripted(pipeline, answers: dict[str, int], **mx_options) -> ScriptedMx:
    ScriptedMx.requests.clear()
    mx = pipeline.resources()["mx"]
    options = mx.model_dump() | mx_options
    return ScriptedMx(**options, answers=answers, warehouse_path=str(pipeline.warehouse.path.resolve()))


def run(pipeline, *, selection=None, run_config: dict | None = None, **resources) -> dg.ExecuteInProcessResult:
    config = run_config or {"ops": {"raw__mx_users": {"config": {"users_csv": str(pipeline.users_csv)}}}}
    return dg.materialize(
        INGEST, selection=selection, resources=pipeline.resources(**resources), run_config=config,
        raise_on_error=False,
    )  # fmt: skip


def run_reading(pipeline, read: str, **kwargs) -> dg.ExecuteInProcessResult:
    """A run in which MX is asked for ``read``: any run for accounts and transactions; for statuses, a run that lists
    no members (one that lists them takes their statuses from the lists, ``test_status_from_lists.py``)."""
    if read != "status":
        return run(pipeline, **kwargs)
    return run(pipeline, selection=WITHOUT_THE_MEMBER_LISTS, run_config={"ops": {}}, **kwargs)


def first_load_refusing(pipeline, read: str, mx: MxResource) -> dg.ExecuteInProcessResult:
    """The first load with MX refusing ``read`` of a member; for statuses, a first load, then such a run, then the
    models that show it."""
    if read != "status":
        return run(pipeline, mx=mx)
    assert run(pipeline).success
    refused = run_reading(pipeline, read, mx=mx)
    assert run(pipeline, selection=MODELS, run_config={"ops": {}}).success
    return refused


def tick(pipeline, now: dt.datetime, monkeypatch):
    monkeypatch.setattr(sensors, "_now", lambda: now)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            resources={"warehouse": pipeline.warehouse_resource, "refresh_policy": RefreshPolicyResource()},
        )
        return sensors.member_freshness(context)


def retry_runs(result) -> list[dg.RunRequest]:
    return [r for r in getattr(result, "run_requests", []) if r.tags.get("mx_pipeline/trigger") == RETRY_TAG]


def health(pipeline, member_guid: str) -> tuple:
    [row] = pipeline.query(
        "select last_sync_outcome, last_sync_reason, last_sync_at from marts.member_health where member_guid = ?",
        member_guid,
    )
    return row


def failed_check(result) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "every_member_read"]
    return evaluation


def assert_warehouse_is_the_truth(pipeline, member_guid: str) -> None:
    world = pipeline.sandbox.world
    with world.lock:
        truth = {t.guid: (f"{t.amount:.2f}", t.date, t.status) for t in world.transactions[member_guid].values()}
        accounts = {a.guid for a in world.accounts.values() if a.member_guid == member_guid}
        status = world.members[member_guid].connection_status.value
    loaded = pipeline.query(
        "select guid, amount, date, status from raw.mx_transactions where member_guid = ? and removed_at is null",
        member_guid,
    )
    assert {g: (f"{a:.2f}", d, s) for g, a, d, s in loaded} == truth
    assert {g for (g,) in pipeline.query("select guid from raw.mx_accounts where member_guid = ?", member_guid)} == (
        accounts
    )
    assert pipeline.query("select connection_status from raw.mx_member_status where guid = ?", member_guid) == [
        (status,)
    ]


@pytest.mark.parametrize("read", ["status", "accounts", "transactions"])
def test_a_member_mx_will_not_serve_fails_the_run_shows_in_member_health_and_is_read_on_a_later_tick(
    pipeline, monkeypatch, read
):
    broken = pipeline.member_of["user-ok-1"]
    healthy = pipeline.member_of["user-ok-2"]
    mx = scripted(pipeline, {READS[read].format(member=broken): 503})

    first = first_load_refusing(pipeline, read, mx)

    assert not first.success
    check = failed_check(first)
    assert not check.passed and check.blocking and check.severity == dg.AssetCheckSeverity.ERROR
    assert list(check.metadata["failed_members"].value) == [broken]
    assert_warehouse_is_the_truth(pipeline, healthy)  # everything else arrived, marts included
    assert pipeline.query("select count(*) from marts.fct_transactions where member_guid = ?", healthy)[0][0] > 0
    outcome, reason, failed_at = health(pipeline, broken)
    assert outcome == "failed"
    assert reason.startswith(f"{read} read failed: ServerError") and "503" in reason
    assert failed_at is not None
    assert health(pipeline, healthy)[0] == ("skipped" if read == "status" else "synced")  # a second run: unchanged

    too_soon = tick(pipeline, dt.datetime.now(dt.UTC), monkeypatch)
    assert retry_runs(too_soon) == []  # the back-off holds: MX is not asked again at once
    later = tick(pipeline, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), monkeypatch)
    [again] = retry_runs(later)
    assert again.run_config["ops"]["raw__mx_members"]["config"] == {"user_guids": [], "member_guids": [broken]}

    retried = run(pipeline, selection=AFTER_REGISTRATION, run_config=again.run_config)  # MX serves it again

    assert retried.success
    assert_warehouse_is_the_truth(pipeline, broken)
    assert run(pipeline, selection=MODELS, run_config={"ops": {}}).success  # the build models_after_sync asks for
    assert health(pipeline, broken)[:2] == ("synced", None)
    assert retry_runs(tick(pipeline, dt.datetime.now(dt.UTC) + dt.timedelta(days=1), monkeypatch)) == []


def test_a_user_whose_member_list_mx_will_not_serve_fails_the_run_and_is_listed_on_a_later_tick(pipeline, monkeypatch):
    user_guid, member_guid = pipeline.member("user-ok-1")
    mx = scripted(pipeline, {f"/users/{user_guid}/members$": 503})

    first = run(pipeline, mx=mx)

    assert not first.success
    check = failed_check(first)
    assert list(check.metadata["failed_users"].value) == [user_guid]
    assert list(metadata_of(first)["raw.mx_members"]["users_failed"]) == [user_guid]
    [(outcome, reason)] = pipeline.query(
        "select last_outcome, last_reason from ops.user_sync where user_guid = ?", user_guid
    )
    assert outcome == "failed" and reason.startswith("member list read failed: ServerError")
    assert_warehouse_is_the_truth(pipeline, pipeline.member_of["user-ok-2"])

    [again] = retry_runs(tick(pipeline, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), monkeypatch))
    assert again.run_config["ops"]["raw__mx_members"]["config"] == {"user_guids": [user_guid], "member_guids": []}
    assert run(pipeline, selection=AFTER_REGISTRATION, run_config=again.run_config).success

    assert_warehouse_is_the_truth(pipeline, member_guid)
    assert pipeline.query("select last_outcome from ops.user_sync where user_guid = ?", user_guid) == [("listed",)]


@pytest.mark.parametrize("concurrency", [1, 8])
def test_no_warehouse_connection_is_open_while_mx_is_asked(pipeline, concurrency):
    # One member's transactions answer 404: the confirming list call is made too. Read side by side, another
    # thread may be writing its batch meanwhile: what must hold is that no thread asks MX holding a connection.
    missing = pipeline.member_of["user-ok-2"]
    mx = scripted(pipeline, {READS["transactions"].format(member=missing): 404}, concurrency=concurrency)

    run(pipeline, mx=mx)

    asked = [path for path, _ in ScriptedMx.requests]
    assert sum(path.endswith("/transactions") for path in asked) == 2  # one page of each connected member
    user_guid, _ = pipeline.member("user-ok-2")
    assert asked.count(f"/users/{user_guid}/members") >= 2  # the member list, then the 404's confirmation
    assert [path for path, held in ScriptedMx.requests if held] == []


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("read", ["status", "accounts", "transactions"])
def test_mx_refusing_our_credentials_stops_the_step_at_once_rather_than_failing_every_member(
    pipeline, read, concurrency
):
    assert run(pipeline).success  # connected and read once
    first, second = pipeline.member_of["user-ok-1"], pipeline.member_of["user-ok-2"]
    world = pipeline.sandbox.world
    with world.lock:  # MX aggregated both since: both are read again (an unchanged member's status alone is)
        for member in (first, second):
            world.members[member].successfully_aggregated_at = world.now()
    mx = scripted(pipeline, {READS[read].format(member="[^/]+"): 401}, concurrency=concurrency)

    refused = run_reading(pipeline, read, mx=mx)

    assert not refused.success
    [failure] = [e for e in refused.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "AuthError" in str(failure.event_specific_data.error)
    asked = [path for path, _ in ScriptedMx.requests if path.endswith(READS[read].rsplit("/", 1)[1].rstrip("$"))]
    # One by one, the first refusal is the last request; side by side, every read already on its way when MX
    # refused (on a loaded machine, each member's) gets its own 401, but nothing is retried and nothing more is sent
    # (the transport stops asking).
    assert len(asked) == 1 if concurrency == 1 else 1 <= len(asked) == len(set(asked)) <= MEMBERS_READ[read]
    assert pipeline.query(  # not a member's failure: nothing to retry member by member
        "select count(*) from ops.member_sync where member_guid in (?, ?) and last_outcome = 'failed'", first, second
    ) == [(0,)]


@pytest.mark.parametrize("read", ["status", "accounts", "transactions"])
def test_a_404_that_a_fresh_list_does_not_confirm_is_a_failed_read_not_a_success(pipeline, read):
    broken = pipeline.member_of["user-ok-1"]
    mx = scripted(pipeline, {READS[read].format(member=broken): 404})  # its user still lists it: not deleted

    result = first_load_refusing(pipeline, read, mx)

    assert not result.success
    assert list(failed_check(result).metadata["failed_members"].value) == [broken]
    outcome, reason, _ = health(pipeline, broken)
    assert outcome == "failed" and reason.startswith(f"{read} read failed: NotFound")
    assert pipeline.query("select removed_at from raw.mx_members where guid = ?", broken) == [(None,)]


def test_a_member_list_404_for_a_user_mx_still_has_is_a_failed_read_not_a_success(pipeline):
    user_guid, _ = pipeline.member("user-ok-1")
    mx = scripted(pipeline, {f"/users/{user_guid}/members$": 404})  # list_users by its id still shows it

    result = run(pipeline, mx=mx)

    assert not result.success
    assert list(failed_check(result).metadata["failed_users"].value) == [user_guid]
    [(outcome, reason)] = pipeline.query(
        "select last_outcome, last_reason from ops.user_sync where user_guid = ?", user_guid
    )
    assert outcome == "failed" and reason.startswith("member list read failed: NotFound")
    assert pipeline.query("select removed_at from raw.mx_users where guid = ?", user_guid) == [(None,)]


def test_an_event_naming_a_user_mx_never_had_fails_no_run_and_is_never_retried(pipeline, monkeypatch):
    """A webhook may name a user guid MX does not know (a sample event, a typo in a replay): its member list and its
    own read both answer 404. The run listing it beside a real user succeeds, and no tick asks for it again."""
    assert run(pipeline).success
    user_guid, member_guid = pipeline.member("user-ok-1")
    stranger = "USR-11111111-2222-3333-4444-555555555555"

    result = run(pipeline, selection=AFTER_REGISTRATION, run_config=scoped_run_config([stranger, user_guid]))

    assert result.success
    assert_warehouse_is_the_truth(pipeline, member_guid)
    assert retry_runs(tick(pipeline, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), monkeypatch)) == []


def test_a_user_we_hold_without_an_id_is_never_retired_on_two_404s(pipeline):
    """MX's user ``id`` is optional: a user we hold from MX's list may have none. Its member list and its own read
    answering 404 (a passing fault) is a failed read, never proof that it is gone (found by review)."""
    assert run(pipeline).success
    user_guid, _ = pipeline.member("user-ok-1")
    with pipeline.warehouse.connect() as con:
        con.execute("update raw.mx_users set id = null where guid = ?", [user_guid])
        con.execute("delete from ops.end_users where mx_user_guid = ?", [user_guid])
    mx = scripted(pipeline, {f"/users/{user_guid}/members$": 404, f"/users/{user_guid}$": 404})

    result = run(pipeline, selection=AFTER_REGISTRATION, run_config=scoped_run_config([user_guid]), mx=mx)

    assert not result.success
    assert pipeline.query("select removed_at from raw.mx_users where guid = ?", user_guid) == [(None,)]
