"""MX refusing our credentials stops a run at once: nothing quarantined, nothing rebuilt, and it says what to check.

The sandbox checks HTTP Basic auth like MX: a key it did not issue gets a 401 on every call.
"""

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
import pytest

from mx_pipeline import settings
from mx_pipeline.connect.spool import Spool
from mx_pipeline.defs.jobs import AFTER_REGISTRATION, scoped_run_config
from mx_pipeline.defs.lifecycle import sensors as lifecycle_sensors
from mx_pipeline.defs.refresh import sensors
from mx_pipeline.defs.resources import MxResource, RefreshPolicyResource, WarehouseResource
from mx_pipeline.mx import AuthError
from mx_pipeline.refresh.aggregate import REREAD, RefreshTarget, refresh_batch
from mx_pipeline.refresh.policy import RefreshPolicy

from .conftest import INGEST
from .test_sensors import status_webhook

WRONG_KEY = "wrong-api-key-never-printed"
VARIABLES = ("MX_CLIENT_ID", "MX_API_KEY", "MX_BASE_URL")


def refused(pipeline) -> MxResource:
    """The sandbox, with an API key it never issued."""
    return MxResource(
        base_url=pipeline.sandbox.base_url, client_id=settings.SANDBOX_CLIENT_ID, api_key=WRONG_KEY,
        per_member_interval=0.0,
    )  # fmt: skip


def test_the_ingest_fails_at_its_first_mx_call_and_quarantines_nothing(pipeline):
    assert pipeline.materialize().success

    result = pipeline.materialize(mx=refused(pipeline), raise_on_error=False)

    assert not result.success
    [failure] = [event for event in result.all_events if event.is_step_failure]
    assert failure.step_key == "raw__mx_users.read_users"  # its first call lists the users; no later step ran
    said = str(failure.event_specific_data.error)
    assert "AuthError" in said and all(name in said for name in VARIABLES)
    assert WRONG_KEY not in said
    assert result.get_asset_materialization_events() == []
    assert pipeline.query("select count(*) from ops.quarantine") == [(0,)]


def test_a_refresh_stops_at_the_refusal_rather_than_failing_each_member(pipeline):
    first, second = pipeline.member("user-ok-1"), pipeline.member("user-ok-2")
    targets = [RefreshTarget(first[1], first[0]), RefreshTarget(second[1], second[0], action=REREAD)]

    with refused(pipeline).client() as client, pytest.raises(AuthError, match="MX_API_KEY"):
        refresh_batch(client, targets, RefreshPolicy())


def test_the_demo_stops_before_its_steps_with_one_line_naming_the_variables(pipeline, tmp_path):
    assert pipeline.materialize().success  # a warehouse and marts from an earlier run, as a team would have
    analytics = tmp_path / "analytics.duckdb"
    built = analytics.stat().st_mtime_ns
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MX_")} | {
        "MX_PIPELINE_DATA_DIR": str(tmp_path),
        "MX_CLIENT_ID": settings.SANDBOX_CLIENT_ID,
        "MX_API_KEY": WRONG_KEY,
        "MX_BASE_URL": pipeline.sandbox.base_url,
    }

    done = subprocess.run(
        [sys.executable, "-m", "mx_pipeline.cli", "demo"], env=environment, capture_output=True, text=True, timeout=120
    )

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output and "materializing raw/mx_members" not in output and "Summary" not in output
    [line] = done.stderr.splitlines()
    assert line.startswith("mx-pipeline: ") and all(name in line for name in VARIABLES)
    assert WRONG_KEY not in output
    assert pipeline.query("select count(*) from ops.quarantine") == [(0,)]
    assert analytics.stat().st_mtime_ns == built  # no marts rebuilt from the old data


def test_the_freshness_sensor_launches_no_more_refreshes_once_mx_refused_a_run(pipeline, monkeypatch):
    assert pipeline.materialize().success
    stale = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)  # every member past its SLA
    monkeypatch.setattr(sensors, "_now", lambda: stale)
    resources = {"warehouse": pipeline.warehouse_resource, "refresh_policy": RefreshPolicyResource()}
    with dg.instance_for_test() as instance:
        [request, *_] = sensors.member_freshness(
            dg.build_sensor_context(instance=instance, resources=resources)
        ).run_requests
        # The run the sensor asked for, as the daemon would launch it, on credentials MX refuses.
        ran = dg.materialize(
            INGEST, selection=AFTER_REGISTRATION, instance=instance, run_config=request.run_config,
            tags={**request.tags, "dagster/run_key": request.run_key},
            resources=pipeline.resources(mx=refused(pipeline)), raise_on_error=False,
        )  # fmt: skip
        assert not ran.success
        monkeypatch.setattr(sensors, "_now", lambda: stale + dt.timedelta(hours=2))  # its claims have expired

        after = sensors.member_freshness(dg.build_sensor_context(instance=instance, resources=resources))

    assert isinstance(after, dg.SkipReason)
    assert ran.run_id[:8] in after.skip_message and all(name in after.skip_message for name in VARIABLES)


@dg.asset
def refused_read() -> None:
    raise AuthError("MX answered HTTP 401", method="GET", path="/users", status=401)


@dg.asset
def accepted_read() -> None:
    pass


def test_events_wait_in_the_warehouse_while_mx_refuses_our_credentials_then_their_run_is_launched(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    spool = Spool(settings.spool_dir())
    spool.append("mx_webhook", "w1", status_webhook("USR-1", "MBR-1"))
    resources = {
        "warehouse": WarehouseResource(path=str(tmp_path / "warehouse.duckdb")),
        "refresh_policy": RefreshPolicyResource(),
    }
    with dg.instance_for_test() as instance:
        assert not dg.materialize([refused_read], instance=instance, raise_on_error=False).success

        held = lifecycle_sensors.connect_events(dg.build_sensor_context(instance=instance, resources=resources))

        assert isinstance(held, dg.SkipReason) and "MX_API_KEY" in held.skip_message
        assert spool.pending() == []  # stored in ops.member_events, never lost
        assert dg.materialize([accepted_read], instance=instance).success  # fixed: a run gets through again

        resumed = lifecycle_sensors.connect_events(dg.build_sensor_context(instance=instance, resources=resources))

    [run] = resumed.run_requests
    assert run.run_config == scoped_run_config(["USR-1"])
