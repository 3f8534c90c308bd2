"""Benchmark: the Dagster UI's "Materialize all", launched as the UI launches it, beside the old executor's.

Not a test (nothing asserts); run it by hand:

    .venv/bin/python -m mx_pipeline_tests.benchmarks.bench_materialize_all

Each figure comes from a deployment as ``make dev`` runs it (``resilience/deployment.py``): a fresh instance
from the project's ``dagster.yaml`` in a temporary home, the code location served by its own code server, the
sandbox with the demo's users and their banks connected. "Materialize all" is the webserver's GraphQL
``launchPipelineExecution`` of the implicit asset job with every asset selected (what the button sends); the
daemon's run queue dequeues it and the run launcher starts its worker. The wall time runs from the launch to
the run's end. It is measured on the code location as it is (``workspace.yaml``) and on the same assets with
the old default executor (the baseline: multiprocess, a process started per step), each on a fresh warehouse;
then a ``sync_members`` run for one member, launched as the sensors launch it (run key, scoped config).
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
        workspace = _old_default_workspace(Path(tmp))
        now, steps = _materialize_all(Path(tmp) / "now", WORKSPACE, then_sync=True)
        if args.baseline:
            before, _ = _materialize_all(Path(tmp) / "before", workspace)
    print(f'"Materialize all" ({steps} steps):')
    print(f"  location's executor:                      {now['materialize_all']:6.1f} s")
    if args.baseline:
        print(f"  old default (multiprocess, one per step): {before['materialize_all']:6.1f} s")
    print(f"sensor-launched sync_members, one member:   {now['sync_members']:6.1f} s")


def _materialize_all(tmp: Path, workspace: Path, *, then_sync: bool = False) -> tuple[dict[str, float], int]:
    tmp.mkdir()
    seconds = {}
    with deployed(tmp, {}, workspace=workspace) as deployment:
        _connect_the_demo_users(deployment.sandbox.base_url)
        context = deployment.context.create_request_context()
        every_asset = list(context.asset_graph.materializable_asset_keys)
        started = time.monotonic()
        launched = materialize_assets(context, every_asset, location_name=LOCATION).data["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        seconds["materialize_all"] = _until_finished(deployment, run_id) - started
        steps = len(deployment.instance.get_execution_plan_snapshot(deployment.run(run_id).execution_plan_snapshot_id).steps)
        if then_sync:
            member = _a_connected_member(deployment)
            started = time.monotonic()
            run_id = deployment.submit("sync_members", scoped_run_config(member_guids=[member]), {"dagster/run_key": "bench"})
            seconds["sync_members"] = _until_finished(deployment, run_id) - started
    return seconds, steps


def _connect_the_demo_users(base_url: str) -> None:
    """The demo's users and bank connections, as ``make dev`` opens on (the run registers the same users)."""
    with MxClient(base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY) as client:
        users = {c.user_id: client.ensure_user(id=c.user_id).guid for c in DEMO_CONNECTIONS}
        connect_demo_members(client, users)


def _until_finished(deployment: Deployment, run_id: str) -> float:
    deployment.wait_for(lambda: deployment.run(run_id).is_finished, f"run {run_id} finishes", timeout=RUN_SECONDS)
    finished = time.monotonic()
    run = deployment.run(run_id)
    if run.status != dg.DagsterRunStatus.SUCCESS:
        print(f"note: run {run.job_name} {run_id} ended {run.status.value}", file=sys.stderr)
    return finished


def _a_connected_member(deployment: Deployment) -> str:
    from mx_pipeline.warehouse import Warehouse

    with Warehouse(deployment.warehouse_path).connect() as con:
        (guid,) = con.execute("select guid from raw.mx_members where removed_at is null order by guid limit 1").fetchone()
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
