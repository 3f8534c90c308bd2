"""1,000 members synced by 4 run workers at once, on the production instance and a real PostgreSQL.

The members' users are split over 4 ``sync_members`` runs, launched through the run queue, which runs all 4 at once
(``MX_PIPELINE_MAX_CONCURRENT_RUNS``); the MX budget and the scheduler's claims they share live in Postgres. The
transactions of all 4 are read side by side, outside the warehouse pool, and loaded one load at a time, each load
merging what every run landed. What must hold: every member synced once, the warehouse equal to the sandbox's truth,
MX never answering 429 (the budget and every member's spacing kept in Postgres), and no run waiting on the warehouse
longer than one loader batch: a load step's reads are merged by the first load to begin after it queued, so it never
waits through a whole other load (the waits are printed with the longest load, for the record).
"""

import os

import dagster as dg
import duckdb

from mx_pipeline.mx.shared_budget import SharedSpacing
from mx_pipeline.refresh.shared_ledger import CLAIMS
from mx_pipeline_tests.resilience.deployment import deployed
from mx_pipeline_tests.resilience.scale import sync_in_batches
from mx_pipeline_tests.resilience.truth import compare

MEMBERS, WORKERS = 1000, 4
RAW_TABLES = ("raw.mx_members", "raw.mx_member_status", "raw.mx_accounts", "raw.mx_transactions")
# A run gives up on the warehouse after 600 s (``connection.DEFAULT_WAIT_SECONDS``); one that waited a tenth of that
# behind the others would be a pipeline that does not scale, whatever the machine's load.
STALLED_SECONDS = 60.0


def test_four_workers_sync_a_thousand_members_once_each_and_the_warehouse_equals_mx(tmp_path, postgres, monkeypatch):
    monkeypatch.setenv("MX_PIPELINE_MAX_CONCURRENT_RUNS", str(WORKERS))
    monkeypatch.setenv("MX_REQUESTS_PER_SECOND", "100")  # the shared budget: enough for 4 workers to overlap
    users = {f"scale-{i:04d}": "password" for i in range(MEMBERS)}  # one member each
    with deployed(tmp_path, users, postgres=postgres, sandbox={"history_days": 5}) as deployment:
        with deployment.sandbox.world.lock:
            user_guids = sorted(deployment.sandbox.world.users)

        synced = sync_in_batches(deployment, user_guids, runs=WORKERS, timeout=900)

        assert synced.statuses == [dg.DagsterRunStatus.SUCCESS] * WORKERS
        records = [deployment.instance.get_run_record_by_id(r) for r in synced.run_ids]
        first_end = min(r.end_time for r in records)
        assert sum(r.start_time < first_end for r in records) == WORKERS  # all 4 ran at once
        with duckdb.connect(str(deployment.warehouse_path), read_only=True) as con:
            loads = con.execute(
                "select table_name, count(distinct member_guid), count(*) from ops.landed_loads group by 1 order by 1"
            ).fetchall()
            outcomes = con.execute("select last_outcome, count(*) from ops.member_sync group by 1").fetchall()
            (throttled,) = con.execute("select count(*) from ops.api_calls where status = 429").fetchone()
        # Every member's status, accounts and transactions, and every user's member list, read and loaded once.
        assert loads == [
            (table, MEMBERS, MEMBERS) for table in ("accounts", "member_status", "members", "transactions")
        ]
        assert outcomes == [("synced", MEMBERS)]
        assert throttled == 0
        budget = os.environ["MX_PIPELINE_RATE_BUDGET_URL"].rsplit("/", 1)[1]
        [(spaced,)] = postgres.query(budget, f"select count(*) from {SharedSpacing.TABLE} where key like 'member:%'")
        assert spaced == MEMBERS  # every member's requests were spaced where all 4 workers see them
        # The scheduler's ledger lives there too: the runs' status reads released their claims in it.
        assert postgres.query(budget, f"select count(*) from {CLAIMS}") == [(0,)]
        differences = compare(deployment.warehouse_path, deployment.sandbox.world, RAW_TABLES)
        assert differences.none, str(differences)

        # The bar: no run waits on the warehouse longer than one loader batch. Each load merges what every run landed
        # before it began, so a load step waits at most for the load under way when it queued, never for a whole
        # other load: its reads are merged by the first load to begin after it queued, if not before.
        waited_through = {(load.run_id, load.key): [(other.run_id, other.key) for other in others]
                          for load in synced.loads if (others := synced.loads_waited_through(load))}  # fmt: skip
        assert waited_through == {}
        waited, step = synced.longest_wait_for_a_merge
        file_wait, file_waiter = synced.longest_file_wait
        print(f"longest wait for a merge {waited:.1f} s ({step and step.key}), for the pool "
              f"{synced.longest_pool_wait.pool_wait:.1f} s, for the warehouse file {file_wait:.1f} s "
              f"({file_waiter and file_waiter.key}); longest load {synced.longest_load.seconds:.1f} s "
              f"({synced.longest_load.key}); at most {synced.most_loads_at_once} load(s) at once; wall "
              f"{synced.wall_seconds:.0f} s")  # fmt: skip
        assert file_wait < STALLED_SECONDS and synced.longest_pool_wait.pool_wait < STALLED_SECONDS
