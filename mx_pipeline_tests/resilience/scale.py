"""Many members synced by concurrent run workers on one deployment, and what the runs' event logs say of it.

The members' users are split into batches, one ``sync_members`` run each, launched through the run queue as the
refresh sensor launches them; the queue runs ``MX_PIPELINE_MAX_CONCURRENT_RUNS`` at once. Everything measured
comes from Dagster's own event log: each step's start and end, how long it waited for the warehouse pool (from
its first "blocked by limit for pool" event to its start), and how long each of its connections waited for the
warehouse file while another process held it (the line ``warehouse.connection`` logs when the wait ends); and from
the warehouse's ``ops.landed_loads``, when the load that merged each run's reads began.
"""

import re
import time
from dataclasses import dataclass, field

import dagster as dg
import duckdb

from mx_pipeline.defs.jobs import scoped_run_config, sync_members_job
from mx_pipeline.warehouse.connection import FREE_AFTER
from mx_pipeline_tests.resilience.deployment import POOL, Deployment

# Each load step of ``sync_members``, and the table whose reads it loads (its name in ``ops.landed_loads``).
LOAD_STEPS = {"raw__mx_members.load_member_lists": "members", "raw__mx_member_status.load_member_status":
              "member_status", "raw__mx_accounts.load_accounts": "accounts",
              "raw__mx_transactions.load_transactions": "transactions"}  # fmt: skip
_BLOCKED = f"blocked by limit for pool {POOL}"
_FREED = re.compile(rf"{FREE_AFTER} ([0-9.]+) s")


@dataclass(frozen=True)
class Step:
    run_id: str
    key: str
    queued: float  # when it first waited for the warehouse pool; its start if it never waited
    started: float
    ended: float
    file_waits: list[float] = field(default_factory=list)  # each wait of a connection for the warehouse file

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def pool_wait(self) -> float:
        return self.started - self.queued


@dataclass(frozen=True)
class SyncedAtScale:
    run_ids: list[str]
    statuses: list[dg.DagsterRunStatus]
    wall_seconds: float  # from the first launch to the last run's end
    steps: list[Step]
    merged: dict[tuple[str, str], float]  # (run, table) -> when the last load merging the run's reads of it began

    @property
    def loads(self) -> list[Step]:
        return [s for s in self.steps if s.key in LOAD_STEPS]

    @property
    def loader_seconds(self) -> float:
        """Wall time during which some run was loading (overlaps counted once)."""
        return _covered([(s.started, s.ended) for s in self.loads])

    @property
    def longest_pool_wait(self) -> Step:
        return max(self.steps, key=lambda s: s.pool_wait)

    @property
    def longest_load(self) -> Step:
        return max(self.loads, key=lambda s: s.seconds)

    def merged_at(self, load: Step) -> float:
        """When the (last) load merging the reads of ``load``'s run and table began."""
        return self.merged[load.run_id, LOAD_STEPS[load.key]]

    def waited_for_a_merge(self, load: Step) -> float:
        """How long ``load`` waited before the load merging its run's reads began (0: a load before it had)."""
        return max(0.0, self.merged_at(load) - load.queued)

    def loads_waited_through(self, load: Step) -> list[Step]:
        """The whole loads that ran while ``load`` waited for its run's reads to be merged: begun after it queued
        and ended before that merge began. None, when every load merges what every run landed before it."""
        return [other for other in self.loads if load.queued < other.started and other.ended < self.merged_at(load)]

    @property
    def longest_wait_for_a_merge(self) -> tuple[float, Step | None]:
        return max(((self.waited_for_a_merge(s), s) for s in self.loads), key=lambda w: w[0], default=(0.0, None))

    @property
    def longest_file_wait(self) -> tuple[float, Step | None]:
        """The longest any connection waited for the warehouse file, and the step it was in."""
        waits = [(wait, step) for step in self.steps for wait in step.file_waits]
        return max(waits, key=lambda w: w[0], default=(0.0, None))

    @property
    def most_loads_at_once(self) -> int:
        """The most load steps running at one time: 1 while the warehouse pool holds."""
        edges = sorted([(s.started, 1) for s in self.loads] + [(s.ended, -1) for s in self.loads])
        inside = most = 0
        for _, change in edges:
            inside += change
            most = max(most, inside)
        return most


def sync_in_batches(deployment: Deployment, user_guids: list[str], runs: int, timeout: float) -> SyncedAtScale:
    """Sync every member of ``user_guids`` in ``runs`` ``sync_members`` runs, through the queue; wait for them."""
    batches = [user_guids[i::runs] for i in range(runs)]
    started = time.monotonic()
    run_ids = [
        deployment.submit(sync_members_job.name, scoped_run_config(batch), {"mx_pipeline/batch": str(i)})
        for i, batch in enumerate(batches)
    ]
    deployment.wait_for(lambda: all(deployment.run(r).is_finished for r in run_ids), "every batch run ends", timeout)
    wall = time.monotonic() - started
    steps = [step for run_id in run_ids for step in _steps(deployment.instance, run_id)]
    with duckdb.connect(str(deployment.warehouse_path), read_only=True) as con:
        merged = con.execute(
            "select run_id, table_name, max(epoch(loaded_at)) from ops.landed_loads group by all"
        ).fetchall()
    statuses = [deployment.run(r).status for r in run_ids]
    return SyncedAtScale(run_ids, statuses, wall, steps, {(run, table): at for run, table, at in merged})


def _steps(instance: dg.DagsterInstance, run_id: str) -> list[Step]:
    blocked, started, ended, file_waits = {}, {}, {}, {}
    for entry in instance.all_logs(run_id):
        event, key = entry.dagster_event, entry.step_key
        if event is None and key and (freed := _FREED.search(entry.user_message)):
            file_waits.setdefault(key, []).append(float(freed.group(1)))
        if event is None or not key:
            continue
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT and _BLOCKED in (event.message or ""):
            blocked.setdefault(key, entry.timestamp)
        elif event.event_type == dg.DagsterEventType.STEP_START:
            started[key] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            ended[key] = entry.timestamp
    return [
        Step(run_id, key, blocked.get(key, at), at, ended[key], file_waits.get(key, []))
        for key, at in started.items()
        if key in ended
    ]


def _covered(intervals: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
