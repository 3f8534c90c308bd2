"""Benchmark: ingest N members x their accounts x transactions from the sandbox, print throughput and peak RSS.

Not a test (nothing asserts); run it by hand:

    .venv/bin/python mx_pipeline_tests/benchmarks/bench_ingest.py --members 20 --history-days 120 --latency-ms 20

The sandbox runs in a child process so the peak RSS printed is the pipeline's own. The sandbox writes about
4.8 transactions a day per member (120 days ~ 580 rows), so rows ~= members x history_days x 4.8.
"""

import argparse
import contextlib
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import requests

from mx_pipeline import definitions, settings
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.mx import MxClient
from mx_pipeline.warehouse import tables

SANDBOX = """
import sys
from mx_pipeline.sandbox.server import serve
port, latency, history = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
serve(port=port, latency_ms=latency, history_days=history, aggregation_seconds=0.1,
      user_requests_per_window=10**9, member_requests_per_window=10**9, abuse_429s_before_degrade=10**9)
"""


def main() -> None:
    args = _parse()
    with _sandbox(args.latency_ms, args.history_days) as base_url, tempfile.TemporaryDirectory() as tmp:
        seed_started = time.monotonic()
        users_csv = _connect_members(base_url, args.members, Path(tmp))
        print(f"seeded {args.members} connected members in {time.monotonic() - seed_started:.1f} s")
        location = definitions.defs()
        every_asset = [*location.assets, *location.asset_checks]
        resources = {
            **location.resources,
            "mx": MxResource(
                base_url=base_url,
                client_id=settings.SANDBOX_CLIENT_ID,
                api_key=settings.SANDBOX_API_KEY,
                requests_per_second=10_000,
                per_member_interval=args.per_member_interval,
            ),
            "warehouse": WarehouseResource(path=str(Path(tmp) / "warehouse.duckdb"), memory_limit=args.memory_limit),
        }
        rss_before = _peak_rss_mib()
        run_config = {
            "ops": {"raw__mx_users": {"config": {"users_csv": str(users_csv)}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        }
        transactions = dg.AssetSelection.assets(tables.TRANSACTIONS.key_path)
        upstream = dg.AssetSelection.all() - transactions
        started = time.monotonic()
        dg.materialize(every_asset, selection=upstream, resources=resources, run_config=run_config)
        upstream_seconds = time.monotonic() - started
        started = time.monotonic()
        quiet = {"loggers": run_config["loggers"]}
        result = dg.materialize(every_asset, selection=transactions, resources=resources, run_config=quiet)
        seconds = time.monotonic() - started
        metadata = {
            k: v.value for e in result.get_asset_materialization_events() for k, v in e.materialization.metadata.items()
        }
        rows = metadata["dagster/row_count"]
        started = time.monotonic()
        again = dg.materialize(every_asset, selection=transactions, resources=resources, run_config=quiet)
        rerun_seconds = time.monotonic() - started
        rerun = {
            k: v.value for e in again.get_asset_materialization_events() for k, v in e.materialization.metadata.items()
        }
    print(f"users/members/status/gate/accounts: {upstream_seconds:.1f} s")
    print(
        f"transactions: {rows} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s"
        f" ({metadata['api_calls']} API calls, latency {args.latency_ms} ms)"
    )
    if args.rerun:
        print(
            f"re-run, nothing new upstream: {rerun_seconds:.1f} s, {rerun['api_calls']} API calls, {rerun['inserted']} new rows"
        )
    print(f"peak RSS: {_peak_rss_mib():.0f} MiB (before ingest {rss_before:.0f} MiB)")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=20, help="connected members (one user each)")
    parser.add_argument("--history-days", type=int, default=120, help="days of history the sandbox generates")
    parser.add_argument("--latency-ms", type=int, default=20, help="sandbox latency added to every API call")
    parser.add_argument("--no-rerun", dest="rerun", action="store_false", help="skip the second (incremental) run")
    parser.add_argument("--per-member-interval", type=float, default=0.0, help="client pacing per member (s)")
    parser.add_argument("--memory-limit", default=WarehouseResource.model_fields["memory_limit"].default,
                        help="DuckDB's buffer pool cap, the bulk of the RSS")  # fmt: skip
    return parser.parse_args()


@contextlib.contextmanager
def _sandbox(latency_ms: int, history_days: int):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-c", SANDBOX, str(port), str(latency_ms), str(history_days)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(requests.ConnectionError):
                requests.get(f"{base_url}/_sandbox/clock", timeout=1)
                break
            time.sleep(0.05)
        yield base_url
    finally:
        child.terminate()
        child.wait()


def _connect_members(base_url: str, count: int, tmp: Path) -> Path:
    """Register ``count`` users with one MX Bank member each, and let every aggregation finish."""
    users_csv = tmp / "users.csv"
    users_csv.write_text("id\n" + "".join(f"bench-{i}\n" for i in range(count)))
    with MxClient(base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY) as client:
        fields = {c.field_name: c.guid for c in client.list_institution_credentials("mxbank")}
        for i in range(count):
            user = client.create_user(id=f"bench-{i}")
            credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: "password"}
            client.create_member(user.guid, institution_code="mxbank", credentials=credentials)
    requests.post(f"{base_url}/_sandbox/aggregations/finish", timeout=600).raise_for_status()
    return users_csv


def _metadata(result) -> dict:
    events = result.get_asset_materialization_events()
    return {k: v.value for e in events for k, v in e.materialization.metadata.items()}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


if __name__ == "__main__":
    main()
