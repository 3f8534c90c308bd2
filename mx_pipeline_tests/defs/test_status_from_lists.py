"""A member's status comes from the member list its run has just read, unless MX was asked to aggregate it since.

MX's member list carries the fields a status read would (``connection_status``, ``is_being_aggregated``,
``aggregated_at``, ``successfully_aggregated_at``), so a run that lists a user's members asks ``/status`` of none of
them: one request a user, not one more a member (issue 14, "no-change refreshes are cheap"). A run that asked MX to
aggregate a member after listing it, or that did not list the members at all, reads the status from MX.
"""

import datetime as dt
import json
import os
from collections import Counter

import dagster as dg

from mx_pipeline import settings
from mx_pipeline.defs import jobs
from mx_pipeline.defs.ingest import status as status_step
from mx_pipeline.defs.ingest.status import _status_of
from mx_pipeline.defs.jobs import AFTER_REGISTRATION, scoped_run_config
from mx_pipeline.defs.resources import ConnectLinksResource, MxResource, WarehouseResource
from mx_pipeline.mx.records import MemberStatus
from mx_pipeline.warehouse.members import MemberToFetch

from .conftest import CONNECT_URL, CONNECTIONS, INGEST, LOCATION, WITHOUT_THE_MEMBER_LISTS
from .test_no_change_calls import STATUS, _calls, _calls_of


def _truth(pipeline) -> dict[str, tuple]:
    """What MX says of each member now: its status, whether a job runs, its last successful aggregation."""
    with pipeline.sandbox.world.lock:
        return {
            m.guid: (m.connection_status.value, m.is_being_aggregated, _seconds(m.successfully_aggregated_at))
            for m in pipeline.sandbox.world.members.values()
        }


def _held(pipeline) -> dict[str, tuple]:
    rows = pipeline.query(
        "select guid, connection_status, is_being_aggregated, successfully_aggregated_at from raw.mx_member_status"
    )
    return {guid: (status, running, _seconds(at)) for guid, status, running, at in rows}


def _seconds(moment):
    return None if moment is None else moment.replace(microsecond=0).timestamp()


def _routes(pipeline) -> dict[str, str]:
    return {pipeline.member_of[user_id]: route for user_id in CONNECTIONS
            for (route,) in pipeline.query("select route from ops.member_routes where member_guid = ?",
                                           pipeline.member_of[user_id])}  # fmt: skip


def test_a_run_that_lists_the_members_asks_mx_for_no_status_and_holds_what_mx_says(pipeline):
    result = pipeline.materialize()

    assert Counter(path for _, path in _calls(pipeline, result.run_id))[STATUS] == 0
    assert _held(pipeline) == _truth(pipeline)
    assert _routes(pipeline) == {
        pipeline.member_of["user-ok-1"]: "ready",
        pipeline.member_of["user-ok-2"]: "ready",
        pipeline.member_of["user-mfa"]: "needs_mfa",  # CHALLENGED, from the list: Connect opens in update mode
        pipeline.member_of["user-denied"]: "needs_reconnect",
    }


def test_a_member_challenged_on_a_later_aggregation_is_routed_to_mfa_from_the_list(pipeline):
    """Statuses are not sequential: a CONNECTED member MX now says is CHALLENGED goes to MFA, told by the list."""
    pipeline.materialize()
    member_guid = pipeline.member_of["user-ok-1"]
    pipeline.admin(f"members/{member_guid}/connection_status", connection_status="CHALLENGED")

    result = pipeline.materialize()

    assert _calls_of(pipeline, result.run_id, member_guid)[STATUS] == 0
    assert _held(pipeline)[member_guid][0] == "CHALLENGED"
    assert _routes(pipeline)[member_guid] == "needs_mfa"


def test_a_run_without_the_member_lists_reads_every_status_from_mx(pipeline):
    pipeline.materialize()
    pipeline.admin(f"members/{pipeline.member_of['user-ok-1']}/connection_status", connection_status="CHALLENGED")

    result = dg.materialize(
        INGEST, selection=WITHOUT_THE_MEMBER_LISTS, resources=pipeline.resources(),
    )  # fmt: skip

    status_reads = Counter(member for member, path in _calls(pipeline, result.run_id) if path == STATUS)
    assert status_reads == Counter({pipeline.member_of[user_id]: 1 for user_id in CONNECTIONS})
    assert _held(pipeline) == _truth(pipeline)


def test_a_member_mx_was_asked_to_aggregate_after_the_list_has_its_status_read_from_mx(pipeline):
    pipeline.materialize()
    member_guid = pipeline.member_of["user-ok-1"]
    job = LOCATION.resolve_job_def("refresh_members")

    result = job.execute_in_process(run_config={"member_guids": [member_guid]}, resources=pipeline.resources())

    [(listed_at,)] = pipeline.query("select fetched_at from raw.mx_members where guid = ?", member_guid)
    [(requested_at,)] = pipeline.query(
        "select requested_at from ops.refresh_attempts where member_guid = ? and run_id = ?", member_guid, result.run_id
    )
    assert listed_at <= requested_at  # the list was read before MX was asked: its word is out of date
    assert _calls_of(pipeline, result.run_id, member_guid)[STATUS] >= 1
    assert _held(pipeline)[member_guid] == _truth(pipeline)[member_guid]


def _before_the_status_step(monkeypatch, meanwhile) -> None:
    """Run ``meanwhile`` once, as the next run's status step starts reading (its plan done): another run overlaps."""
    read_members, done = status_step.read_members, []

    def reading(*args, **kwargs):
        if not done:
            done.append(True)  # before: the other run's own status step comes through here too
            meanwhile()
        return read_members(*args, **kwargs)

    monkeypatch.setattr(status_step, "read_members", reading)


def _open_episodes(pipeline, member_guid: str) -> list[tuple]:
    return pipeline.query(
        "select route from ops.notification_episodes where member_guid = ? and closed_at is null", member_guid
    )


def test_a_fresher_status_another_run_read_meanwhile_is_not_overwritten_by_the_list(pipeline, monkeypatch):
    """An ingest and a webhook's sync_members run may overlap. MX challenges a member after the ingest listed it,
    and the webhook run reads CHALLENGED; the ingest's list, older, must not undo that (found by review)."""
    pipeline.materialize()
    member_guid = pipeline.member_of["user-ok-1"]

    def webhook_run():
        pipeline.admin(f"members/{member_guid}/connection_status", connection_status="CHALLENGED")
        dg.materialize(INGEST, selection=AFTER_REGISTRATION, resources=pipeline.resources(),
                       run_config=scoped_run_config(member_guids=[member_guid]))  # fmt: skip
        assert _open_episodes(pipeline, member_guid) == [("needs_mfa",)]

    _before_the_status_step(monkeypatch, webhook_run)
    pipeline.materialize()

    assert _held(pipeline)[member_guid] == _truth(pipeline)[member_guid]
    assert _routes(pipeline)[member_guid] == "needs_mfa"
    assert _open_episodes(pipeline, member_guid) == [("needs_mfa",)]  # not closed as recovered, to open again


def test_an_aggregation_another_run_asked_after_the_list_is_not_undone_by_it(pipeline, monkeypatch):
    """A refresh run aggregates a member between an ingest's list and its status step: the member's last success
    must not go back to the list's (member_health's staleness, the SLA sensor's due members)."""
    pipeline.materialize()
    member_guid = pipeline.member_of["user-ok-1"]
    [(before,)] = pipeline.query("select successfully_aggregated_at from raw.mx_member_status where guid = ?",
                                 member_guid)  # fmt: skip

    def refresh_run():
        refresh = LOCATION.resolve_job_def("refresh_members")
        refresh.execute_in_process(run_config={"member_guids": [member_guid]}, resources=pipeline.resources())
        assert _truth(pipeline)[member_guid][2] > _seconds(before)  # MX aggregated it anew

    _before_the_status_step(monkeypatch, refresh_run)
    pipeline.materialize()

    assert _held(pipeline)[member_guid] == _truth(pipeline)[member_guid]


def _ingest_bound_to_the_test() -> dg.JobDefinition:
    """The ingest on the test's sandbox and warehouse (named in the environment): reconstructable, so a failed run
    can be re-executed from failure, as the instance's run_retries (or the UI) does."""
    bound = json.loads(os.environ["MX_PIPELINE_TEST_BINDING"])
    resources = {
        **LOCATION.resources,
        "mx": MxResource(base_url=bound["mx"], client_id=settings.SANDBOX_CLIENT_ID, api_key=settings.SANDBOX_API_KEY,
                         per_member_interval=0.0),
        "warehouse": WarehouseResource(path=bound["warehouse"]),
        "connect_links": ConnectLinksResource(public_url=CONNECT_URL, store_path=bound["links"]),
    }  # fmt: skip
    location = dg.Definitions(
        assets=LOCATION.assets, asset_checks=LOCATION.asset_checks, resources=resources,
        executor=dg.in_process_executor, jobs=[dg.define_asset_job("ingest_again", selection=jobs.INGEST)],
    )  # fmt: skip
    return location.resolve_job_def("ingest_again")


def test_a_run_re_executed_from_failure_reads_the_statuses_its_first_attempt_listed_from_mx(
    pipeline, monkeypatch, tmp_path
):
    """Re-executed from failure, a run reuses its plan, lists and all, from the attempt that failed: MX may have
    said otherwise since (found by review)."""
    pipeline.materialize()
    member_guid = pipeline.member_of["user-ok-1"]
    binding = {"mx": pipeline.sandbox.base_url, "warehouse": str(pipeline.warehouse.path),
               "links": str(pipeline.link_store_path)}  # fmt: skip
    monkeypatch.setenv("MX_PIPELINE_TEST_BINDING", json.dumps(binding))
    run_config = {"ops": {"raw__mx_users": {"config": {"users_csv": str(pipeline.users_csv)}}}}
    job = dg.reconstructable(_ingest_bound_to_the_test)
    read_members = status_step.read_members

    def the_worker_dies(*args, **kwargs):
        raise RuntimeError("the run worker died here")

    monkeypatch.setattr(status_step, "read_members", the_worker_dies)
    (tmp_path / "home").mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "home")) as instance:
        failed = dg.execute_job(job, instance=instance, run_config=run_config)
        assert not failed.success
        monkeypatch.setattr(status_step, "read_members", read_members)
        pipeline.admin(f"members/{member_guid}/connection_status", connection_status="CHALLENGED")

        again = dg.execute_job(
            job, instance=instance, reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, instance)
        )
        assert again.success

    assert _held(pipeline)[member_guid] == _truth(pipeline)[member_guid]
    assert _routes(pipeline)[member_guid] == "needs_mfa"


LISTED_AT = dt.datetime(2026, 11, 30, 10, 0, 5, tzinfo=dt.UTC)


class _StatusReads:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def read_member_status(self, user_guid: str, member_guid: str) -> MemberStatus:
        self.asked.append(member_guid)
        return MemberStatus(guid=member_guid, connection_status="CONNECTED", is_being_aggregated=False)


def test_a_list_entry_that_does_not_read_as_a_status_is_read_from_mx_instead():
    member = MemberToFetch("MBR-1", "USR-1", None)
    mx = _StatusReads()
    unusable = '{"guid": "MBR-1", "connection_status": "CONNECTED", "is_being_aggregated": "maybe"}'

    status, said_at = _status_of({"MBR-1": (unusable, LISTED_AT)}, mx, member)

    assert mx.asked == ["MBR-1"] and status.is_being_aggregated is False and said_at is None  # MX said it now


def test_a_list_entry_gives_the_status_fields_mx_lists_and_no_others():
    member = MemberToFetch("MBR-1", "USR-1", None)
    mx = _StatusReads()
    entry = (
        '{"guid": "MBR-1", "connection_status": "CHALLENGED", "is_being_aggregated": false, "name": "MX Bank",'
        ' "aggregated_at": "2026-11-30T10:00:00Z", "successfully_aggregated_at": "2026-11-29T10:00:00Z"}'
    )

    status, said_at = _status_of({"MBR-1": (entry, LISTED_AT)}, mx, member)

    assert mx.asked == [] and said_at == LISTED_AT
    assert (status.connection_status, status.is_being_aggregated) == ("CHALLENGED", False)
    assert status.successfully_aggregated_at.isoformat() == "2026-11-29T10:00:00+00:00"
    assert "name" not in status.payload
