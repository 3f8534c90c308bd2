"""The freshness sensor and refresh runs against the sandbox: stale members refreshed, limits never tripped."""

import datetime as dt
import json

import dagster as dg

from mx_pipeline import settings
from mx_pipeline.connect.spool import Spool
from mx_pipeline.defs.lifecycle.sensors import connect_events
from mx_pipeline.defs.refresh import sensors
from mx_pipeline.defs.resources import MxResource, RefreshPolicyResource
from mx_pipeline.refresh import run
from mx_pipeline.warehouse import WarehouseBusy
from mx_pipeline.warehouse.refresh_state import exhausted_members
from mx_pipeline_tests.holding import held_by_another_process

from .conftest import LOCATION, metadata_of

# Everything is stale at once, and nothing waits on the clock: the rules under test are the counted ones.
EAGER = RefreshPolicyResource(sla_hours=1e-6, min_interval_hours=0, poll_first_seconds=0.2, poll_max_seconds=0.5)


def tick(pipeline, policy: RefreshPolicyResource = EAGER, cursor: str | None = None, warehouse=None):
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"warehouse": warehouse or pipeline.warehouse_resource, "refresh_policy": policy},
        )
        return sensors.member_freshness(context)


def run_refreshes(pipeline, result, policy: RefreshPolicyResource = EAGER, **resources) -> list:
    """Each run the tick asked for, in process, as the daemon would launch it (its run key as a tag)."""
    assert isinstance(result, dg.SensorResult), result
    return [
        pipeline.materialize(
            ops=run.run_config["ops"], tags={"dagster/run_key": run.run_key}, refresh_policy=policy, **resources
        )
        for run in result.run_requests
    ]


def attempts(pipeline, member: str | None = None) -> list[tuple]:
    return pipeline.query(
        "select member_guid, trigger, outcome from ops.refresh_attempts"
        " where ? is null or member_guid = ? order by requested_at",
        member,
        member,
    )


def last_success(pipeline, member: str):
    return pipeline.query("select successfully_aggregated_at from raw.mx_member_status where guid = ?", member)[0][0]


def test_stale_members_are_refreshed_and_become_fresh(pipeline):
    pipeline.materialize()
    ok = [pipeline.member_of["user-ok-1"], pipeline.member_of["user-ok-2"]]
    before = {m: last_success(pipeline, m) for m in ok}
    result = tick(pipeline)
    [run] = result.run_requests  # only the healthy ones are due: MFA and DENIED members need their user
    assert sorted(run.run_config["ops"]["ops__refresh_attempts"]["config"]["member_guids"]) == sorted(ok)
    [outcome] = run_refreshes(pipeline, result)
    assert sorted(attempts(pipeline)) == sorted((m, "sla", "refreshed") for m in ok)
    assert all(last_success(pipeline, m) > before[m] for m in ok)
    assert pipeline.query("select count(*) from ops.refresh_claims") == [(0,)]
    assert metadata_of(outcome)["ops.refresh_attempts"]["outcomes"] == {"refreshed": 2}


def test_a_member_that_comes_back_challenged_is_routed_not_retried(pipeline):
    pipeline.materialize()
    member = pipeline.member_of["user-ok-1"]
    pipeline.admin(f"members/{member}/script", outcomes=["CHALLENGED"])  # statuses are not sequential
    run_refreshes(pipeline, tick(pipeline))
    assert (member, "sla", "needs_user") in attempts(pipeline)
    assert pipeline.query("select route from ops.member_routes where member_guid = ?", member) == [("needs_mfa",)]
    assert pipeline.query("select connect_mode from ops.reconnect_notifications where member_guid = ?", member) == [
        ("update",)
    ]
    later = tick(pipeline, cursor="1")
    due = [] if isinstance(later, dg.SkipReason) else later.run_requests[0].run_config["ops"]
    assert member not in str(due)


def test_the_attempt_cap_holds_for_a_member_that_always_fails(pipeline):
    policy = RefreshPolicyResource(**(EAGER.model_dump() | {"backoff_base_minutes": 0.0, "max_attempts": 3}))
    pipeline.materialize()
    member = pipeline.member_of["user-ok-1"]
    pipeline.admin(f"members/{member}/script", outcomes=["FAILED"] * 10)
    cursor = None
    for _ in range(5):
        result = tick(pipeline, policy, cursor)
        if isinstance(result, dg.SensorResult):
            cursor = result.cursor
            run_refreshes(pipeline, result, policy)
    mine = attempts(pipeline, member)
    assert [outcome for _, _, outcome in mine] == ["failed", "failed", "failed"]
    with pipeline.warehouse.connect() as con:
        assert member in exhausted_members(con, policy.policy(), now=dt.datetime.now(dt.UTC))
    [health] = [
        e for e in pipeline.materialize(refresh_policy=policy).get_asset_check_evaluations()
        if e.check_name == "no_member_exhausted_its_attempts"
    ]  # fmt: skip
    assert not health.passed and member in health.metadata["members"].value


def test_a_burst_of_stale_members_never_trips_mx_limits_nor_degrades_anyone(pipeline):
    for i in range(12):
        user = pipeline.client.ensure_user(id=f"burst-{i}")
        fields = {c.field_name: c.guid for c in pipeline.client.list_institution_credentials("mxbank")}
        pipeline.client.create_member(
            user.guid,
            institution_code="mxbank",
            credentials={fields["LOGIN"]: "mxuser", fields["PASSWORD"]: "password"},
        )
    pipeline.admin("aggregations/finish")
    pipeline.materialize()
    policy = RefreshPolicyResource(**(EAGER.model_dump() | {"members_per_run": 4, "max_members_per_tick": 8}))
    polite = MxResource(  # the resource's default pacing: what production runs with
        base_url=pipeline.sandbox.base_url, client_id=settings.SANDBOX_CLIENT_ID, api_key=settings.SANDBOX_API_KEY
    )
    first = tick(pipeline, policy)
    assert [
        len(r.run_config["ops"]["ops__refresh_attempts"]["config"]["member_guids"]) for r in first.run_requests
    ] == [
        4,
        4,
    ]  # 14 stale members, at most 8 per tick, 4 per run: the rest waits for the next tick
    run_refreshes(pipeline, first, policy, mx=polite)
    second = tick(pipeline, policy, first.cursor)
    run_refreshes(pipeline, second, policy, mx=polite)
    refreshed = {m for m, _, outcome in attempts(pipeline) if outcome == "refreshed"}
    assert len(refreshed) == 14
    world = pipeline.sandbox.world
    with world.lock:
        member_429s = {k: n for k, n in world.rate_limited.items() if k.startswith("member:")}
        degraded = list(world.abuse_degradations)
    assert member_429s == {} and degraded == []


def test_a_manual_refresh_obeys_the_rules_unless_overridden(pipeline):
    pipeline.materialize()
    member = pipeline.member_of["user-ok-1"]
    job = LOCATION.resolve_job_def("refresh_members")
    careful = RefreshPolicyResource(poll_first_seconds=0.2, poll_max_seconds=0.5)  # production intervals

    def refresh(**config):
        return job.execute_in_process(
            run_config={"member_guids": [member], **config},
            resources={**pipeline.resources(), "refresh_policy": careful},
        )

    refresh()  # fresh, but asked for by hand: refreshed now
    refresh()  # within the 3 h minimum interval: refused
    refresh(override_safety=True)  # the data team insists
    assert [(t, o) for _, t, o in attempts(pipeline, member)] == [("manual", "refreshed"), ("manual", "refreshed")]


def test_a_manual_refresh_that_finds_the_warehouse_busy_fails_and_lets_go_of_its_claims(pipeline, monkeypatch):
    pipeline.materialize()
    member = pipeline.member_of["user-ok-1"]

    def held(*args, **kwargs):  # an analyst opened the file read-write right after the claim, past the wait
        raise WarehouseBusy("warehouse.duckdb is held by another process")

    monkeypatch.setattr(run, "claimed_by", held)
    result = LOCATION.resolve_job_def("refresh_members").execute_in_process(
        run_config={"member_guids": [member]}, resources=pipeline.resources(), raise_on_error=False
    )
    assert not result.success
    assert pipeline.query("select count(*) from ops.refresh_claims") == [(0,)]  # refreshable by the next run
    assert attempts(pipeline, member) == []


def test_a_busy_warehouse_skips_the_tick_with_the_reason(pipeline, monkeypatch):
    pipeline.materialize()
    monkeypatch.setattr(sensors, "BUSY_WAIT_SECONDS", 0.3)
    with held_by_another_process(pipeline.warehouse.path):
        result = tick(pipeline)
    assert isinstance(result, dg.SkipReason) and "busy" in result.skip_message
    assert pipeline.query("select count(*) from ops.refresh_claims") == [(0,)]


def test_a_webhook_and_the_sla_never_refresh_one_member_at_the_same_time(pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    pipeline.materialize()
    user_guid, member = pipeline.member("user-ok-1")
    webhook = {"type": "AGGREGATION", "action": "member_data_updated", "user_guid": user_guid, "member_guid": member}
    Spool(settings.spool_dir()).append("mx_webhook", "w1", json.dumps(webhook))
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=pipeline.resources(refresh_policy=EAGER))
        [event_run] = connect_events(context).run_requests
    [sla_run] = tick(pipeline).run_requests  # the webhook's run holds the member: the SLA leaves it alone
    assert sla_run.run_config["ops"]["ops__refresh_attempts"]["config"]["member_guids"] == [
        pipeline.member_of["user-ok-2"]
    ]
    pipeline.materialize(ops=event_run.run_config["ops"], tags={"dagster/run_key": event_run.run_key})
    assert attempts(pipeline, member) == []  # MX had just aggregated: the webhook's run only read it
    assert pipeline.query("select trigger from ops.refresh_claims") == [("sla",)]  # its own claim is gone
