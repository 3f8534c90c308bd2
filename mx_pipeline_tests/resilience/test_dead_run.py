"""A dead run never blocks the next: a run worker killed with ``kill -9`` while it holds the ``duckdb_warehouse``
slot is found dead, its slot freed and the run retried by the daemon, and the next run completes; no one acts.

On the project's instance config (``data/dagster_home/dagster.yaml``, copied to a temporary home), with the code
location served by its own code server and runs in their own worker processes, as ``make dev`` runs them.
"""

import logging
import os
import subprocess
import sys
import time

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.test_utils import create_run_for_test
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

from mx_pipeline.instance import LOCAL_CONFIG
from mx_pipeline.run_launcher import LocalRunLauncher, process_is_alive
from mx_pipeline_tests.resilience.deployment import deployed
from mx_pipeline_tests.resilience.truth import compare

USERS = {"dead-run-1": "password", "dead-run-2": "password"}


@pytest.fixture(params=["local", "production"])
def profile(request):
    """The instance to deploy on: the local one, or the production one on a real Postgres (its slots there)."""
    return {"postgres": request.getfixturevalue("postgres")} if request.param == "production" else {}


def test_a_run_killed_inside_a_warehouse_step_frees_its_slot_and_its_retry_completes(tmp_path, profile):
    with deployed(tmp_path, USERS, **profile) as deployment:
        with deployment.ingest_inside_its_first_load() as dead:
            deployment.kill_worker(dead)
        assert deployment.pool_holders() == {dead}  # the dead run holds the only slot: every other run would wait

        retry = deployment.wait_for(lambda: deployment.retry_of(dead), "the daemon retries the dead run")
        deployment.wait_for(lambda: deployment.run(retry).is_finished, "the retry finishes")

        assert deployment.run(dead).status == dg.DagsterRunStatus.FAILURE
        assert deployment.run(retry).status == dg.DagsterRunStatus.SUCCESS
        assert deployment.pool_holders() == set()
        differences = compare(deployment.warehouse_path, deployment.sandbox.world)
        assert differences.none, str(differences)


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster.yaml").write_text(LOCAL_CONFIG.read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def _started_run(instance: dg.DagsterInstance, worker_pid: int) -> dg.DagsterRun:
    """A run as a worker process ``worker_pid`` left it: STARTED, its pid in its event log."""
    run = create_run_for_test(instance, job_name="work", status=dg.DagsterRunStatus.STARTED)
    instance.report_engine_event(
        f"Started process for run (pid: {worker_pid}).", run, EngineEventData.in_process(worker_pid)
    )
    return run


def test_the_launcher_tells_run_monitoring_when_a_worker_is_gone(instance):
    """The case the code server cannot see: the worker died with it (a host crash, a deploy)."""
    assert isinstance(instance.run_launcher, LocalRunLauncher)
    worker = _sleeper()
    try:
        run = _started_run(instance, worker.pid)
        with WorkspaceProcessContext(instance, None) as context:
            _monitor(context)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # alive: left alone
            worker.kill()
            worker.wait()
            _monitor(context)
    finally:
        worker.kill()
        worker.wait()
    failed = instance.get_run_by_id(run.run_id)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert failed.tags["dagster/will_retry"] == "true"  # run_retries re-executes it
    [failure] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert f"run worker pid {worker.pid} is gone" in failure.message


def test_a_worker_is_its_pid_only_while_alive_and_older_than_its_log_line():
    process = _sleeper()
    try:
        now = time.time()
        assert process_is_alive(process.pid, started_by=now)
        assert not process_is_alive(process.pid, started_by=now - 60)  # a younger process that reuses the pid
        process.kill()
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # exited, left unreaped: a zombie
        assert not process_is_alive(process.pid, started_by=now)
    finally:
        process.kill()
        process.wait()
    assert not process_is_alive(process.pid, started_by=now)


def _monitor(context: WorkspaceProcessContext) -> None:
    """One pass of the daemon's run monitoring."""
    errors = [e for e in execute_run_monitoring_iteration(context, logging.getLogger("monitoring")) if e]
    assert not errors, errors[0].to_string()


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
