"""Benchmark: members synced per minute by 1, 2 and 4 run workers, against the sandbox with 200 ms latency.

Not a test (nothing asserts); run it by hand:

    .venv/bin/python -m mx_pipeline_tests.benchmarks.bench_scale [--members 400] [--latency-ms 200]

Each worker count gets a deployment of its own (``resilience/deployment.py``): the production instance on a new
database of a PostgreSQL started here from Debian's package, the MX budget shared there, the code location served
by its own code server, and the sandbox with one connected member per user. The members are split into the same 4
``sync_members`` runs each time, launched through the run queue, which runs ``MX_PIPELINE_MAX_CONCURRENT_RUNS``
(the worker count) of them at once; the sandbox answers every request after ``--latency-ms`` (set once the members
are connected). The wall time runs from the first launch to the last run's end. The loader's share is the part of
it during which some run was loading what it landed into the warehouse (member lists, statuses, accounts or
transactions: ``scale.LOAD_STEPS``). Beside the longest load, the waits: the longest a load step waited before the
load merging its reads began, the longest any step waited for the warehouse pool, and any connection for the
warehouse file (``test_at_scale`` asserts the bar itself: no load step waits through a whole other load).
"""

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import dagster as dg

from mx_pipeline_tests.postgres import running_postgres
from mx_pipeline_tests.resilience.deployment import deployed
from mx_pipeline_tests.resilience.scale import SyncedAtScale, sync_in_batches

RUNS = 4
RUN_SECONDS = 3600.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=400, help="members (one per user) synced in all")
    parser.add_argument("--latency-ms", type=int, default=200, help="the sandbox's latency per request")
    parser.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma-separated")
    parser.add_argument(
        "--requests-per-second",
        type=int,
        default=100,
        help="the MX budget every worker shares (MX_REQUESTS_PER_SECOND)",
    )
    args = parser.parse_args()
    os.environ["MX_REQUESTS_PER_SECOND"] = str(args.requests_per_second)
    results = {}
    with running_postgres() as postgres, tempfile.TemporaryDirectory() as tmp:
        for workers in [int(w) for w in args.workers.split(",")]:
            os.environ["MX_PIPELINE_MAX_CONCURRENT_RUNS"] = str(workers)
            results[workers] = _measure(Path(tmp) / f"workers-{workers}", postgres, args.members, args.latency_ms)
    print(
        f"\n{args.members} members (one per user, {RUNS} sync_members runs), sandbox latency {args.latency_ms} ms, "
        f"MX budget {args.requests_per_second} requests/s shared in Postgres"
    )
    print("workers  wall s  members/min  vs 1 worker  loader share  longest load  longest wait for a merge"
          "  longest pool wait  longest file wait  runs")  # fmt: skip
    base = results.get(1)
    for workers, synced in results.items():
        per_minute = args.members / synced.wall_seconds * 60
        ratio = f"{base.wall_seconds / synced.wall_seconds:10.2f}x" if base else "          -"
        waited, _ = synced.longest_file_wait
        merge_wait, _ = synced.longest_wait_for_a_merge
        ok = sum(s == dg.DagsterRunStatus.SUCCESS for s in synced.statuses)
        print(
            f"{workers:7d}  {synced.wall_seconds:6.1f}  {per_minute:11.0f}  {ratio}  "
            f"{synced.loader_seconds / synced.wall_seconds:11.0%}  {synced.longest_load.seconds:11.1f}s  "
            f"{merge_wait:23.1f}s  {synced.longest_pool_wait.pool_wait:16.1f}s  "
            f"{waited:16.1f}s  {ok}/{len(synced.statuses)} ok"
        )


def _measure(tmp: Path, postgres, members: int, latency_ms: int) -> SyncedAtScale:
    tmp.mkdir()
    users = {f"bench-{i:05d}": "password" for i in range(members)}
    with deployed(tmp, users, postgres=postgres, sandbox={"history_days": 30}) as deployment:
        world = deployment.sandbox.world
        with world.lock:
            world.config = dataclasses.replace(world.config, latency_ms=latency_ms)
            user_guids = sorted(world.users)
        return sync_in_batches(deployment, user_guids, RUNS, RUN_SECONDS)


if __name__ == "__main__":
    main()
