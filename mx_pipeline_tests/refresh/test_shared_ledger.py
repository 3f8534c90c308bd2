"""The shared ledger: claims two workers make at once settle one member on one run, and the warehouse's copy of
the attempts misses none and doubles none."""

import datetime as dt
import random
import threading

from mx_pipeline.refresh.aggregate import Attempt
from mx_pipeline.refresh.shared_ledger import SharedLedger
from mx_pipeline.warehouse import Warehouse

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
MEMBERS = [(f"MBR-{i:03}", f"USR-{i % 7}") for i in range(300)]


def claim_at_once(workers: list[SharedLedger], wanted: dict[str, list[tuple[str, str]]]) -> list[Exception]:
    """Each worker claims its members for its run (``wanted``: run key -> members), all starting together."""
    start, failures = threading.Barrier(len(workers)), []

    def claim(ledger: SharedLedger, run_key: str) -> None:
        start.wait()
        try:
            ledger.claim(wanted[run_key], trigger="sla", run_key=run_key, now=NOW)
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=claim, args=pair) for pair in zip(workers, wanted, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_workers_claiming_the_same_members_at_once_never_deadlock_and_leave_each_member_with_one_run(postgres):
    database = postgres.create_database()
    workers = [SharedLedger(postgres.url(database)) for _ in range(3)]  # each its own connections, as on 3 machines
    for round_ in range(5):
        # Overlapping members in different orders: claimed unordered, two claims deadlock on each other's rows.
        wanted = {f"run-{round_}-{n}": random.Random(round_ * 10 + n).sample(MEMBERS, k=200) for n in range(3)}
        assert claim_at_once(workers, wanted) == []
        held = dict(postgres.query(database, "select member_guid, run_key from refresh_claims"))
        assert set(held) == {m for members in wanted.values() for m, _ in members}
        assert all(member in dict(wanted[run_key]) for member, run_key in held.items())  # by a run that asked
        for run_key in wanted:
            workers[0].release(run_key=run_key)
    assert postgres.query(database, "select count(*) from refresh_claims") == [(0,)]


def test_the_warehouse_copy_takes_an_attempt_recorded_late_and_nothing_twice(postgres, tmp_path):
    ledger = SharedLedger(postgres.url(postgres.create_database()))

    def attempt(member: str, hours_ago: float) -> Attempt:
        at = NOW - dt.timedelta(hours=hours_ago)
        return Attempt(member, "USR-1", at, at + dt.timedelta(minutes=5), "refreshed", "CONNECTED", 3)

    with Warehouse(tmp_path / "warehouse.duckdb").connect() as con:
        ledger.record([attempt("MBR-1", 0), attempt("MBR-2", 1)], trigger="sla", run_id="run-a")
        assert ledger.mirror(con) == 2
        # A long run records an attempt it asked for before the newest one the warehouse holds.
        ledger.record([attempt("MBR-3", 3)], trigger="manual", run_id="run-b")
        assert ledger.mirror(con) == 1
        assert ledger.mirror(con) == 0
        rows = con.execute(
            "select member_guid, trigger, run_id, api_calls from ops.refresh_attempts order by 1"
        ).fetchall()
    assert rows == [("MBR-1", "sla", "run-a", 3), ("MBR-2", "sla", "run-a", 3), ("MBR-3", "manual", "run-b", 3)]
