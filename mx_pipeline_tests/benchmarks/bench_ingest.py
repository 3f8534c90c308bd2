"""Benchmark: ingest from the sandbox, ours vs MX's official SDK in a plain loop vs the floor, in one run.

Not a test (nothing asserts); run it by hand from the repository root:

    .venv/bin/python -m mx_pipeline_tests.benchmarks.bench_ingest
    .venv/bin/python -m mx_pipeline_tests.benchmarks.bench_ingest --users 4 --history-days 120 --repeats 1  # quick

The sandbox (a child process) adds 20 ms to every request and keeps MX's per-user and per-member limits on.
Three contenders read the same users' banks (``--users`` x ``--members-per-user``, ``--history-days`` of
history), each on a fresh warehouse, median of ``--repeats``:
- ours: the ``ingest`` job's fetching steps (users, members, status, gate, accounts, transactions) with the
  ``mx`` resource's pacing and concurrency as shipped; requests are the attempts ``ops.api_calls`` records;
- MX's SDK (``mx-platform-python``) in the loop an integrator would write: users, members, accounts and
  transactions one request at a time, into pandas, then one DuckDB write (``sdk_loop.py``). It pins
  pydantic<2, so it runs in a venv of its own; make it once with
      .venv/bin/uv venv --python .venv/bin/python .venv/sdk
      .venv/bin/uv pip install --python .venv/sdk/bin/python --group bench
- the same requests, bare: the SDK loop's requests sent by our concurrency of threads, each body decoded only to
  follow its pages and then dropped (``bare_fetch.py``): what the sandbox's serving, the wire and JSON decoding
  cost on this machine before anything is kept. Every contender pays it, and ingest can get no faster;
- the floor: our requests x latency / our concurrency (the wire's time alone, nothing else).
"""

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mx_pipeline import settings
from mx_pipeline.warehouse.transaction_sync import SyncPolicy
from mx_pipeline_tests.benchmarks.bare_fetch import bare_fetch
from mx_pipeline_tests.benchmarks.ingest_harness import (
    IngestRun,
    connect_members,
    our_mx_resource,
    run_our_ingest,
    sandbox_process,
    sandbox_seconds_per_page,
)

REPO = Path(__file__).resolve().parents[2]
SDK_PYTHON = REPO / ".venv" / "sdk" / "bin" / "python"
SDK_LOOP = Path(__file__).with_name("sdk_loop.py")


def main() -> None:
    args = _parse()
    if not SDK_PYTHON.exists():
        sys.exit(f"MX's SDK needs its own venv at {SDK_PYTHON.parent.parent}; make it as this script's help says")
    sandbox = sandbox_process(latency_ms=args.latency_ms, history_days=args.history_days)
    with sandbox as base_url, tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        users_csv = connect_members(base_url, args.users, args.members_per_user, Path(tmp))
        print(f"seeded {args.users} users x {args.members_per_user} members in {time.monotonic() - started:.0f} s")
        concurrency = our_mx_resource(base_url).concurrency
        ours, sdk, bare = [], [], []
        for repeat in range(args.repeats):
            warehouse = Path(tmp) / f"ours-{repeat}.duckdb"
            ours.append(run_our_ingest(base_url, users_csv, warehouse, requests_per_second=args.requests_per_second))
            sdk.append(_sdk_loop(base_url, Path(tmp) / f"sdk-{repeat}.duckdb"))
            bare.append(_bare(base_url, concurrency))
            print(
                f"  run {repeat + 1}: ours {ours[-1].seconds:.1f} s, SDK {sdk[-1].seconds:.1f} s,"
                f" bare {bare[-1].seconds:.1f} s",
                flush=True,
            )
        budget = our_mx_resource(base_url, args.requests_per_second).requests_per_second
        serving = sandbox_seconds_per_page(base_url, args.latency_ms)
    _report(args, _median(ours), _median(sdk), _median(bare), concurrency, budget)
    pages = _median(ours).transactions / 1000
    print(
        f"the sandbox itself: {serving * 1000:.0f} ms to serve a page of 1,000 transactions beyond the latency, one"
        f" page at a time whoever asks: ~{pages * serving:.1f} s for these {pages:.0f} pages' worth, in every contender"
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--members-per-user", type=int, default=2, help="1 or 2 (one per test institution)")
    parser.add_argument("--history-days", type=int, default=500, help="days of history the sandbox generates")
    parser.add_argument("--latency-ms", type=int, default=20, help="sandbox latency added to every API call")
    parser.add_argument(
        "--requests-per-second",
        type=float,
        help="our global budget (the mx resource's requests_per_second; shipped: 20); MX's per-member limits stay",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each contender; the median is shown")
    return parser.parse_args()


def _sdk_loop(base_url: str, database: Path) -> IngestRun:
    """The SDK loop in its venv, reading the same window of history as ours (our first sync's)."""
    from_date = (dt.date.today() - dt.timedelta(days=SyncPolicy.history_days)).isoformat()
    command = [str(SDK_PYTHON), str(SDK_LOOP), base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY]
    done = subprocess.run([*command, from_date, str(database)], capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"the SDK loop failed:\n{done.stderr}")
    figures = json.loads(done.stdout)
    return IngestRun(figures["seconds"], figures["requests"], 0, figures["transactions"])


def _bare(base_url: str, concurrency: int) -> IngestRun:
    from_date = dt.date.today() - dt.timedelta(days=SyncPolicy.history_days)
    return bare_fetch(base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY, from_date, concurrency)


def _median(runs: list[IngestRun]) -> IngestRun:
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


@dataclass(frozen=True)
class _Row:
    name: str
    seconds: float
    transactions: int
    requests: int | str
    rate_limited: int | str = "-"


def _report(
    args: argparse.Namespace, ours: IngestRun, sdk: IngestRun, bare: IngestRun, concurrency: int, budget: float
) -> None:
    floor = ours.requests * args.latency_ms / 1000 / concurrency
    bare_floor = bare.requests * args.latency_ms / 1000 / concurrency
    budget_floor = ours.requests / budget
    rows = [
        _Row(f"ours (concurrency {concurrency})", ours.seconds, ours.transactions, ours.requests, ours.rate_limited),
        _Row("MX SDK, sequential loop", sdk.seconds, sdk.transactions, sdk.requests, "-"),
        _Row(
            f"bare: the SDK's requests, {concurrency} at once",
            bare.seconds,
            bare.transactions,
            bare.requests,
            bare.rate_limited,
        ),
        _Row(f"floor: ours' requests x {args.latency_ms} ms / {concurrency}", floor, ours.transactions, "-"),
        _Row(f"our budget's floor: requests / {budget:g} per s", budget_floor, ours.transactions, "-"),
    ]
    print(
        f"\ningest, {args.users} users x {args.members_per_user} members, {args.history_days} days of history,"
        f" {args.latency_ms} ms latency, MX's limits on; median of {args.repeats}"
    )
    print(f"{'':44} {'wall s':>8} {'tx':>9} {'tx/s':>9} {'requests':>9} {'429s':>5}")
    for row in rows:
        per_second = row.transactions / row.seconds if row.seconds else float("inf")
        print(
            f"{row.name:44} {row.seconds:8.1f} {row.transactions:9,} {per_second:9,.0f}"
            f" {row.requests:>9} {row.rate_limited:>5}"
        )
    print(f"ours / SDK, tx/s: {ours.per_second / sdk.per_second:.2f}x (goal >= 5x)")
    print(f"ours / floor, wall time: {ours.seconds / floor:.1f}x (goal <= 1.5x)")
    print(
        f"bare / its floor, wall time: {bare.seconds / bare_floor:.1f}x; bare / SDK, tx/s:"
        f" {bare.per_second / sdk.per_second:.2f}x (nothing kept; on this machine, with the sandbox beside it)"
    )
    print(
        f"ours / our global budget's floor, wall time: {ours.seconds / budget_floor:.2f}x (the limiter allows"
        f" {budget:g} requests a second; 5x the SDK loop would need {5 * sdk.requests / sdk.seconds:.0f})"
    )
    print(f"requests: ours {ours.requests}, SDK {sdk.requests} ({ours.requests - sdk.requests:+d})")
    if ours.transactions != sdk.transactions:
        print(f"note: ours read {ours.transactions} transactions, the SDK {sdk.transactions}")
    print("ours, step by step (s): " + ", ".join(f"{step} {seconds:.1f}" for step, seconds in ours.steps.items()))
    if ours.rate_limited:
        print(f"note: MX answered {ours.rate_limited} of our requests 429 (the goal is none)")


if __name__ == "__main__":
    main()
