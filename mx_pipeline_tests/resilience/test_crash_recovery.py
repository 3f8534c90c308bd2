"""Crash recovery: ``kill -9`` at a random moment of an ingest run, then nobody acts; the pipeline converges.

Each trial kills the run's worker at a seeded random moment (see ``crash.py``); the daemon's loops alone must
bring the warehouse to the sandbox's truth: every raw table's live rows and ``fct_transactions``, amount by
amount, nothing lost, duplicated or wrong. The suite runs three trials to stay within its time budget (each
is two or three ingest runs); the issue's ten are ``run_crash_trials(10, ...)``, for a benchmark to print.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mx_pipeline_tests.resilience.crash import run_crash_trials, summary
from mx_pipeline_tests.resilience.deployment import kill_process_family

TRIALS_IN_SUITE = 3
SEED = 11


def test_every_trial_converges_to_the_truth_with_no_manual_step(tmp_path):
    results = run_crash_trials(TRIALS_IN_SUITE, SEED, tmp_path)
    report = summary(results)
    assert len(results) == TRIALS_IN_SUITE, report
    assert all(r.killed for r in results), report  # each kill landed mid-run
    assert all(r.converged_unattended for r in results), report
    assert sum(r.lost + r.duplicated + r.wrong for r in results) == 0, report


def test_a_worker_frozen_inside_a_write_to_its_event_log_is_killed_by_its_pid_alone(tmp_path):
    """The trial freezes the worker before it kills it; a frozen worker may hold its event log's SQLite lock, which
    no reader can wait out, so the kill goes by the pid and ``/proc``, and the log reads again once it is done."""
    log = tmp_path / "run.db"
    sqlite3.connect(log).execute("create table event_logs (event text)").connection.commit()
    worker = subprocess.Popen(
        [sys.executable, "-c", WRITER_THAT_STARTED_A_STEP_PROCESS, str(log)], stdout=subprocess.PIPE, text=True
    )
    step_process = int(worker.stdout.readline())
    os.kill(worker.pid, signal.SIGSTOP)

    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        sqlite3.connect(log, timeout=0.2).execute("select count(*) from event_logs").fetchone()
    kill_process_family(worker.pid)

    assert worker.wait(timeout=10) == -signal.SIGKILL
    assert _ends_within(step_process, seconds=10)
    assert sqlite3.connect(log, timeout=5).execute("select count(*) from event_logs").fetchone() == (0,)


def _ends_within(pid: int, seconds: float) -> bool:
    """``pid`` is gone (reaped by init, its new parent) or a zombie within ``seconds``: a SIGKILL is not instant."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in {"Z", "X"}:
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


WRITER_THAT_STARTED_A_STEP_PROCESS = """
import sqlite3, subprocess, sys, time
step = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
log = sqlite3.connect(sys.argv[1], isolation_level=None)
log.execute("begin exclusive")
log.execute("insert into event_logs values ('STEP_START')")
print(step.pid, flush=True)
time.sleep(600)
"""
