"""``models_after_sync``: sync runs build no model; what they wrote is built once it settles, one build per burst."""

import datetime as dt
import json

import dagster as dg
import pytest

from mx_pipeline import settings
from mx_pipeline.connect.spool import Spool
from mx_pipeline.defs.jobs import AFTER_REGISTRATION, EVERY_MEMBER_READ, build_models_job
from mx_pipeline.defs.lifecycle import sensors as event_sensors
from mx_pipeline.defs.models import sensors

from .conftest import INGEST, LOCATION
from .test_sensors import status_webhook

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
DELAY = dt.timedelta(seconds=60)
MEMBER_STATUS = dg.AssetKey(["raw", "mx_member_status"])
MARTS = {k for k in sensors.MODEL_KEYS if k.path[0] == "marts"}


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(sensors, "_now", clock)
    monkeypatch.delenv("MX_PIPELINE_MODELS_DELAY_SECONDS", raising=False)  # the default: 60 s
    return clock


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


class ModelsSensor:
    """Ticks of ``models_after_sync`` on one instance, its cursor carried over; every build it asked for."""

    def __init__(self, instance: dg.DagsterInstance):
        self.instance, self.cursor, self.builds = instance, None, []

    def tick(self) -> str | None:
        """One tick: the skip reason, or None when it asked for a build."""
        result = sensors.models_after_sync(dg.build_sensor_context(instance=self.instance, cursor=self.cursor))
        if isinstance(result, dg.SkipReason):
            return result.skip_message
        self.cursor = result.cursor or self.cursor
        self.builds += result.run_requests or []
        return result.skip_reason.skip_message if result.skip_reason else None


def synced(instance: dg.DagsterInstance, key: dg.AssetKey = MEMBER_STATUS) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(key))


def test_sync_runs_build_no_model_and_the_failed_read_check_still_runs_in_them():
    sync = LOCATION.resolve_job_def("sync_members")
    built = {n.name for n in sync.graph.node_defs}
    assert "sql_models" not in built
    assert "marts__member_health_every_member_read" in built  # a failed read still fails the sync run
    assert {n.name for n in LOCATION.resolve_job_def("build_models").graph.node_defs} >= {"sql_models"}
    assert "sql_models" in {n.name for n in LOCATION.resolve_job_def("ingest").graph.node_defs}  # make demo: marts
    assert EVERY_MEMBER_READ.name == "every_member_read"


def test_no_change_no_build(instance, clock):
    models = ModelsSensor(instance)
    clock.advance(dt.timedelta(hours=5))
    assert models.tick() == "nothing the models read changed since the last build"
    assert models.builds == []


def test_a_change_is_built_once_after_the_delay_and_a_later_change_after_the_delay_again(instance, clock):
    models = ModelsSensor(instance)
    synced(instance)
    assert models.tick().startswith("synced data is settling: one build in 60 s")
    clock.advance(DELAY - dt.timedelta(seconds=1))
    synced(instance)  # lands within the delay: joins the same build
    assert models.tick().startswith("synced data is settling: one build in 1 s")
    clock.advance(dt.timedelta(seconds=1))
    assert models.tick() is None
    assert [run.run_key for run in models.builds] == [
        f"build-models-{sensors.latest_of(instance, sensors.SYNCED_KEYS)}"
    ]
    clock.advance(dt.timedelta(hours=1))
    assert models.tick() == "nothing the models read changed since the last build"

    synced(instance, dg.AssetKey(["raw", "mx_transactions"]))  # a change after the build
    assert models.tick().startswith("synced data is settling")
    assert len(models.builds) == 1
    clock.advance(DELAY)
    assert models.tick() is None
    assert len(models.builds) == 2
    assert len({run.run_key for run in models.builds}) == 2


def test_no_second_build_is_asked_for_while_one_is_queued_or_running(instance, clock):
    models = ModelsSensor(instance)
    synced(instance)
    models.tick()
    clock.advance(DELAY)
    models.tick()
    instance.create_run_for_job(build_models_job.resolve(asset_graph=LOCATION.resolve_asset_graph()),
                                status=dg.DagsterRunStatus.STARTED)  # fmt: skip
    synced(instance)
    clock.advance(DELAY)
    assert models.tick() == "a model build is queued or running; what changed goes in the next one"
    assert len(models.builds) == 1


def test_a_run_that_built_the_models_after_the_sync_asks_for_no_second_build(instance, clock):
    models = ModelsSensor(instance)
    synced(instance)
    for key in sensors.MODEL_KEYS:  # the ingest job, or "Materialize all": the models built after the sync
        synced(instance, key)
    clock.advance(DELAY)
    assert models.tick() == "nothing the models read changed since the last build"


def test_a_burst_of_100_member_events_costs_one_model_build(pipeline, tmp_path, monkeypatch, instance, clock):
    """100 webhooks arrive over two event ticks: two sync runs, none building a model; one build after them."""
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    pipeline.materialize()  # the first full ingest: users registered, the marts built
    spool, models = Spool(settings.spool_dir()), ModelsSensor(instance)
    members = [pipeline.member(user) for user in pipeline.member_of]
    cursor, sync_runs = None, []
    for tick in range(2):
        for n in range(50):
            user_guid, member_guid = members[n % len(members)]
            status = ("CHALLENGED", "CONNECTED")[(tick * 50 + n) // len(members) % 2]  # never a redelivery
            spool.append("mx_webhook", f"hook-{tick}-{n}", status_webhook(user_guid, member_guid, status))
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=pipeline.resources())
        result = event_sensors.connect_events(context)
        cursor = result.cursor
        for run in result.run_requests:
            sync_runs.append(
                dg.materialize(INGEST, selection=AFTER_REGISTRATION, resources=pipeline.resources(), instance=instance,
                               run_config=run.run_config, tags={**run.tags, "dagster/run_key": run.run_key},
                               raise_on_error=False)
            )  # fmt: skip
        assert models.tick().startswith("synced data is settling")
        clock.advance(dt.timedelta(seconds=10))

    assert len(sync_runs) == 2
    assert not {e.asset_key for r in sync_runs for e in r.get_asset_materialization_events()} & MARTS
    (events,) = pipeline.query("select count(*) from ops.member_events")[0]
    assert events == 100
    clock.advance(DELAY)
    assert models.tick() is None
    clock.advance(dt.timedelta(minutes=10))
    assert models.tick() == "nothing the models read changed since the last build"
    assert len(models.builds) == 1
    assert json.loads(models.cursor)["waiting_since"] is None
