"""Benchmark: the Dagster UI's "Materialize all", launched as the UI launches it, beside the old executor's.

Not a test (nothing asserts); run it by hand:

    .venv/bin/python -m mx_pipeline_tests.benchmarks.bench_materialize_all

Each figure comes from a deployment as ``make dev`` runs it (``resilience/deployment.py``): a fresh instance
from the project's ``dagster.yaml`` in a temporary home, the code location served by its own code server, the
sandbox with the demo's users and their banks connected. "Materialize all" is the webserver's GraphQL
``launchPipelineExecution`` of the implicit asset job with every asset selected (what the button sends); the
daemon's run queue dequeues it and the run launcher starts its worker. The wall time runs from the launch to
the run's end (and the run's own start-to-end, as the UI shows it). It is measured on the code location as it
is (``workspace.yaml``) and, the baseline, on the same assets with the old default executor (multiprocess: a
process started per step), each on a fresh warehouse; then a ``sync_members`` run for one member, launched as
the sensors launch it (run key, scoped config, through the run queue). ``sync_members`` ran in process before
too, so its figure is today's.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
from dagster_graphql.test.utils import materialize_assets

from mx_pipeline import settings
from mx_pipeline.defs.jobs import scoped_run_config
from mx_pipeline.demo_connections import DEMO_CONNECTIONS, connect_demo_members
from mx_pipeline.mx import MxClient
from mx_pipeline.warehouse import Warehouse
from mx_pipeline_tests.resilience.deployment import LOCATION, WORKSPACE, Deployment, deployed

RUN_SECONDS = 900.0
OLD_DEFAULT = dg.multi_or_in_process_executor  # what Definitions without an executor get: multiprocess


@dg.definitions
def old_default_location() -> dg.Definitions:
    """The code location with the executor it had before: the baseline (the code server loads this file)."""
    from mx_pipeline import definitions

    return dg.Definitions.merge(definitions.defs_folder(), dg.Definitions(executor=OLD_DEFAULT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the old executor")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        now, sync_members, steps = _measure(Path(tmp) / "now", WORKSPACE, then_sync=True)
        if args.baseline:
            before, _, _ = _measure(Path(tmp) / "before", _old_default_workspace(Path(tmp)))
    print("Wall time from launch to the run's end (in brackets: the run itself, start to end, as the UI shows it)")
    print(f'"Materialize all" ({steps} steps), the location\'s executor (in process): {_shown(now)}')
    if args.baseline:
        print(f'"Materialize all", baseline: the old default executor (multiprocess): {_shown(before)}')
    print(f"sensor-launched sync_members, one member (in process, as before):    {_shown(sync_members)}")


def _shown(seconds: tuple[float, float]) -> str:
    wall, run = seconds
    return f"{wall:6.1f} s ({run:5.1f} s)"


def _measure(tmp: Path, workspace: Path, *, then_sync: bool = False) -> tuple[tuple, tuple | None, int]:
    """The UI's "Materialize all" on a fresh deployment, then (``then_sync``) a sensor-launched ``sync_members``."""
    tmp.mkdir()
    with deployed(tmp, {}, workspace=workspace) as deployment:
        _connect_the_demo_users(deployment.sandbox.base_url)
        context = deployment.context.create_request_context()
        every_asset = list(context.asset_graph.materializable_asset_keys)
        started = time.monotonic()
        launched = materialize_assets(context, every_asset, location_name=LOCATION).data["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        materialize_all = _until_finished(deployment, launched["run"]["runId"], started)
        plan = deployment.instance.get_execution_plan_snapshot(
            deployment.run(launched["run"]["runId"]).execution_plan_snapshot_id
        )
        if not then_sync:
            return materialize_all, None, len(plan.steps)
        started = time.monotonic()
        scoped = scoped_run_config(member_guids=[_a_connected_member(deployment)])
        sync = deployment.submit("sync_members", scoped, {"dagster/run_key": "bench"})
        return materialize_all, _until_finished(deployment, sync, started), len(plan.steps)


def _connect_the_demo_users(base_url: str) -> None:
    """The demo's users and bank connections, as ``make dev`` opens on (the run registers the same users)."""
    with MxClient(base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY) as client:
        users = {c.user_id: client.ensure_user(id=c.user_id).guid for c in DEMO_CONNECTIONS}
        connect_demo_members(client, users)


def _until_finished(deployment: Deployment, run_id: str, started: float) -> tuple[float, float]:
    """Seconds since ``started`` until the run ended, and the run's own duration."""
    deployment.wait_for(lambda: deployment.run(run_id).is_finished, f"run {run_id} finishes", timeout=RUN_SECONDS)
    wall = time.monotonic() - started
    record = deployment.instance.get_run_record_by_id(run_id)
    if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
        print(
            f"note: run {record.dagster_run.job_name} {run_id} ended {record.dagster_run.status.value}", file=sys.stderr
        )
    return wall, record.end_time - record.start_time


def _a_connected_member(deployment: Deployment) -> str:
    with Warehouse(deployment.warehouse_path).connect() as con:
        (guid,) = con.execute(
            "select guid from raw.mx_members where removed_at is null order by guid limit 1"
        ).fetchone()
    return guid


def _old_default_workspace(tmp: Path) -> Path:
    workspace = tmp / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_file:\n"
        f"      relative_path: {Path(__file__).resolve()}\n"
        "      attribute: old_default_location\n"
        f"      location_name: {LOCATION}\n"
        f"      working_directory: {WORKSPACE.parent}\n"
    )
    return workspace


if __name__ == "__main__":
    main()
