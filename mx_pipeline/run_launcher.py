"""``LocalRunLauncher``: Dagster's default launcher, plus a health check of its run workers for run monitoring.

``DefaultRunLauncher`` starts each run worker as a child of the code server and cannot tell the monitoring
daemon whether that worker still lives. The code server notices a child that died, but not when it died with
it (a host crash, a deploy, an OOM that took both): the run then stays STARTED, keeps its ``duckdb_warehouse``
pool slot, and every later run waits forever. Here a run's worker is the process whose pid the run recorded
in its own event log ("Started process for run (pid: N)", the executor's "... (pid: N)"); when that process
is gone (or its pid now belongs to a younger process), the worker is reported FAILED, the daemon marks the run
failed, frees its slots (``free_slots_after_run_end_seconds``) and retries it (``run_retries``).

Workers are looked for on this machine only (the single-machine profile); a worker launched through a code
server elsewhere is never judged dead.
"""

import json
import os
from pathlib import Path

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
START_TIME_SLACK_SECONDS = 2.0  # /proc start times are in clock ticks; a pid's owner started before it was logged


class LocalRunLauncher(dg.DefaultRunLauncher):
    """Launches runs like ``DefaultRunLauncher``; tells run monitoring when a run's worker process is gone."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        if not _launched_on_this_machine(run):
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker on another machine: not checked")
        worker = run_worker_pid(self._instance, run.run_id)
        if worker is None:  # nothing to judge yet; run monitoring's start timeout covers a worker that never began
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no run worker pid recorded yet")
        pid, logged_at = worker
        if process_is_alive(pid, started_by=logged_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {pid} is alive", run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker pid {pid} is gone", run_worker_id=str(pid))


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """(pid, when it was logged) of the run's latest worker: run-level engine events that name a pid."""
    latest = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None and entry.step_key is None:
            latest = (int(pid.value), entry.timestamp)
    return latest


def process_is_alive(pid: int, started_by: float) -> bool:
    """Whether ``pid`` is a live (not zombie) process that already existed at ``started_by`` (epoch seconds)."""
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():  # no procfs (macOS): existence is all we can tell
        return _exists(pid)
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state, start_ticks = fields[0], int(fields[19])
    if state in {"Z", "X"}:  # exited, not yet reaped by its parent
        return False
    started_at = _boot_time() + start_ticks / os.sysconf("SC_CLK_TCK")
    return started_at <= started_by + START_TIME_SLACK_SECONDS  # a younger process reusing the pid is not it


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise RuntimeError("/proc/stat has no btime")


def _launched_on_this_machine(run: dg.DagsterRun) -> bool:
    grpc_info = run.tags.get(GRPC_INFO_TAG)
    if not grpc_info:
        return True  # executed by a local process directly (no code server)
    info = json.loads(grpc_info)
    return "socket" in info or info.get("host") in LOCAL_HOSTS
