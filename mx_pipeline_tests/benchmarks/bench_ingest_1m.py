"""Benchmark: ingest about 1,000,000 transactions from the sandbox; the pipeline's peak RSS and wall time.

Not a test (nothing asserts); run it by hand from the repository root:

    .venv/bin/python -m mx_pipeline_tests.benchmarks.bench_ingest_1m
    .venv/bin/python -m mx_pipeline_tests.benchmarks.bench_ingest_1m --transactions 100000  # quick

The sandbox (a child process, so the peak RSS is the pipeline's own) adds 20 ms to every request and keeps MX's
per-user and per-member limits on. ``--users`` x ``--members-per-user`` members get enough days of history for
about ``--transactions`` rows (the sandbox writes about TX_PER_MEMBER_DAY a day), and our ingest job's fetching
steps read it all on a fresh warehouse, as shipped (pacing, concurrency and memory cap untouched). The goal:
peak RSS under 400 MB.
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

from mx_pipeline_tests.benchmarks.ingest_harness import connect_members, run_our_ingest, sandbox_process
from mx_pipeline_tests.benchmarks.memory import peak_rss_mib

TX_PER_MEMBER_DAY = 2.8  # measured: 104,786 rows for 40 members x 944 days (MX Bank and Sandbox CU logins)
GOAL_MB = 400


def main() -> None:
    args = _parse()
    members = args.users * args.members_per_user
    history_days = args.history_days or math.ceil(args.transactions / (members * TX_PER_MEMBER_DAY))
    sandbox = sandbox_process(latency_ms=args.latency_ms, history_days=history_days)
    with sandbox as base_url, tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        users_csv = connect_members(base_url, args.users, args.members_per_user, Path(tmp))
        print(f"seeded {members} members with {history_days} days of history in {time.monotonic() - started:.0f} s")
        before = peak_rss_mib()
        warehouse = Path(tmp) / "warehouse.duckdb"
        run = run_our_ingest(base_url, users_csv, warehouse, history_days=history_days + 1)
        peak = peak_rss_mib()
        size_mib = warehouse.stat().st_size / 2**20
    print(
        f"\ningest of {run.transactions:,} transactions ({members} members, {history_days} days,"
        f" {args.latency_ms} ms latency, MX's limits on)"
    )
    print(
        f"wall time: {run.seconds:.1f} s = {run.per_second:,.0f} tx/s; {run.requests:,} requests, {run.rate_limited} 429s"
    )
    print("step by step (s): " + ", ".join(f"{step} {seconds:.1f}" for step, seconds in run.steps.items()))
    peak_mb = peak * 2**20 / 1e6
    print(f"peak RSS: {peak:,.0f} MiB = {peak_mb:,.0f} MB (goal < {GOAL_MB} MB: {peak_mb / GOAL_MB:.2f}x the goal)")
    print(f"  before the ingest (imports, seeding): {before:,.0f} MiB; warehouse file: {size_mib:,.0f} MiB")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=1_000_000, help="about this many transactions")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--members-per-user", type=int, default=2, help="1 or 2 (one per test institution)")
    parser.add_argument("--history-days", type=int, help="days of history (default: enough for --transactions)")
    parser.add_argument("--latency-ms", type=int, default=20, help="sandbox latency added to every API call")
    return parser.parse_args()


if __name__ == "__main__":
    main()
