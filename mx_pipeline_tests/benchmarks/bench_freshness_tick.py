"""Benchmark: one ``member_freshness`` tick over N members (default 100,000); prints seconds and peak RSS.

Not a test (nothing asserts); run it by hand:

    .venv/bin/python mx_pipeline_tests/benchmarks/bench_freshness_tick.py --members 100000

The warehouse is filled with SQL alone (a realistic mix: a third stale, some needing the user, some aggregating,
attempts, claims and SLA overrides), then a fresh process loads the whole code location (``mx_pipeline.definitions``,
every module under ``defs/``, as Dagster's code server does) and runs the sensor it defines, so the peak RSS printed
is what the code server holds for the tick (Python, Dagster, every module the location imports, and DuckDB),
measured against the target of 2 s and 300 MiB (issue 14, item 7). ``--sensor-only`` imports just the sensor's
module instead, to show what the rest of the location costs. ``--shared`` starts a Postgres of its own (Debian's
package, as the tests do), moves the claims and attempts there and ticks on the shared ledger, as workers on many
machines would (``MX_PIPELINE_RATE_BUDGET_URL``).
"""

import argparse
import contextlib
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mx_pipeline_tests.benchmarks.memory import peak_rss_mib, rss_mib

TARGET_SECONDS, TARGET_MIB = 2.0, 300


def fill(path: Path, members: int) -> None:
    from mx_pipeline.warehouse import Warehouse

    with Warehouse(path).connect() as con:
        con.execute(
            """
            insert into raw.mx_member_status (guid, user_guid, connection_status, is_being_aggregated,
                                              successfully_aggregated_at, payload, run_id, fetched_at)
            select 'MBR-' || i, 'USR-' || (i // 2), 'CONNECTED', false,
                   now() - to_seconds(cast(random() * 36 * 3600 as bigint)), '{}', 'fill', now()
            from range($n) as t(i);
            insert into raw.mx_members (guid, user_guid, institution_code, connection_status, payload, run_id,
                                        fetched_at)
            select 'MBR-' || i, 'USR-' || (i // 2), 'bank-' || (i % 40), 'CONNECTED', '{}', 'fill', now()
            from range($n) as t(i);
            insert into ops.member_routes
            select 'MBR-' || i, 'USR-' || (i // 2), 'CONNECTED', false,
                   case when i % 10 = 0 then 'needs_mfa' when i % 17 = 0 then 'in_progress'
                        when i % 23 = 0 then 'institution_side' else 'ready' end,
                   'why', null, now(), 'fill'
            from range($n) as t(i);
            insert into ops.end_users (id, source, mx_user_guid, tier)
            select 'user-' || i, 'fill', 'USR-' || i, case when i % 5 = 0 then 'premium' end
            from range($n // 2) as t(i);
            insert into ops.freshness_sla values ('tier', 'premium', 6);
            insert into ops.freshness_sla select 'member', 'MBR-' || i, 12 from range(0, $n, 97) as t(i);
            insert into ops.refresh_attempts
            select 'MBR-' || i, 'USR-' || (i // 2), 'sla', now() - to_seconds(cast((2 + random() * 28) * 3600 as bigint)),
                   now(), case when i % 3 = 0 then 'failed' else 'refreshed' end, 'CONNECTED', 4, 'fill', null
            from range(0, $n * 2, 3) as t(j), (select j % $n as i);
            """.replace("$n", str(members))
        )


def share(path: Path, url: str) -> None:
    """Move the filled claims and attempts to the shared ledger at ``url``, as a worker's run would have put them."""
    import psycopg

    from mx_pipeline.refresh.shared_ledger import ATTEMPT_TYPES, ATTEMPTS, CLAIM_TYPES, CLAIMS, SharedLedger
    from mx_pipeline.warehouse import Warehouse

    SharedLedger(url)  # its tables
    with Warehouse(path).connect() as con, psycopg.connect(url) as conn:
        for table, columns in [(CLAIMS, CLAIM_TYPES), (ATTEMPTS, ATTEMPT_TYPES)]:
            rows = con.execute(f"select {', '.join(columns)} from ops.{table}").fetchall()
            with conn.cursor().copy(f"copy {table} ({', '.join(columns)}) from stdin") as copy:
                for row in rows:
                    copy.write_row(row)
            con.execute(f"delete from ops.{table}")


def tick(path: Path, ticks: int, *, whole_location: bool, shared_url: str | None = None) -> None:
    import dagster as dg

    from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource

    started = time.perf_counter()
    if whole_location:  # what the code server loads before any tick
        from mx_pipeline import definitions

        member_freshness = definitions.defs().get_sensor_def("member_freshness")
    else:
        from mx_pipeline.defs.refresh.sensors import member_freshness
    loaded = time.perf_counter() - started
    warehouse = WarehouseResource(path=str(path), shared_state_url=shared_url)
    resources = {"warehouse": warehouse, "refresh_policy": RefreshPolicyResource()}
    timings, cursor, launched = [], None, 0
    with dg.instance_for_test() as instance:
        baseline = rss_mib()  # Dagster and the project, imported
        for _ in range(ticks):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            started = time.perf_counter()
            result = member_freshness(context)
            timings.append(time.perf_counter() - started)
            if isinstance(result, dg.SensorResult):
                cursor = result.cursor
                launched += sum(len(r.run_config["ops"]["ops__refresh_attempts"]["config"]["member_guids"])
                                for r in result.run_requests)  # fmt: skip
        after = rss_mib()
    peak = peak_rss_mib()
    what = "the whole code location (mx_pipeline.definitions)" if whole_location else "the sensor's module alone"
    print(f"claims and attempts: {'in the shared Postgres' if shared_url else 'in the warehouse'}")
    print(f"loaded {what} in {loaded:.1f} s: RSS {baseline:.0f} MiB before the first tick")
    first, rest = timings[0], sorted(timings[1:]) or [timings[0]]
    print(f"tick: first {first:.2f} s, then median {rest[len(rest) // 2]:.2f} s over {len(rest)} more "
          f"({first / TARGET_SECONDS:.0%} of the {TARGET_SECONDS:g} s target)")  # fmt: skip
    print(f"members claimed and launched over {ticks} ticks: {launched}")
    print(f"peak RSS of the ticking process: {peak:.0f} MiB ({peak / TARGET_MIB:.0%} of the {TARGET_MIB} MiB target;"
          f" {baseline:.0f} MiB before the first tick, {after:.0f} MiB after the last)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--sensor-only", action="store_true", help="import the sensor's module, not the location")
    parser.add_argument("--shared", action="store_true", help="claims and attempts in a Postgres of its own")
    parser.add_argument("--tick-only", type=Path, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--shared-url", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.tick_only:
        tick(args.tick_only, args.ticks, whole_location=not args.sensor_only, shared_url=args.shared_url)
        return
    with contextlib.ExitStack() as stack:
        shared_url = None
        if args.shared:
            from mx_pipeline_tests.postgres import running_postgres

            postgres = stack.enter_context(running_postgres())
            shared_url = postgres.url(postgres.create_database())
        _fill_and_tick(args, shared_url)


def _fill_and_tick(args: argparse.Namespace, shared_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        started = time.perf_counter()
        fill(path, args.members)
        print(
            f"filled {args.members:,} members at {dt.datetime.now(dt.UTC):%H:%M:%S} in {time.perf_counter() - started:.1f} s"
        )
        if shared_url:
            share(path, shared_url)
        child = [sys.executable, __file__, "--ticks", str(args.ticks), "--tick-only", str(path)]
        child += ["--sensor-only"] if args.sensor_only else []
        subprocess.run(child + (["--shared-url", shared_url] if shared_url else []), check=True)


if __name__ == "__main__":
    main()
