"""The pipeline deployed as ``make dev`` deploys it, on a temporary home, against the built-in sandbox.

A real Dagster instance from the project's ``data/dagster_home/dagster.yaml`` (or the production instance on a
real Postgres, as ``mx-pipeline instance production`` renders it), the code location from
``workspace.yaml`` served by its own code server process (as ``dg dev`` and the daemon start it), runs
launched through the instance's run coordinator and launcher into run worker processes, and the daemon's own
recovery loops: the run queue, run monitoring (with its freeing of pool slots) and run retries. Those loops
run here one pass at a time (``tick``) rather than in a ``dagster-daemon`` process: the same code, without the
sensors and schedules, whose ticks would change the sandbox's truth while a test compares with it.
"""

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dagster as dg
import requests
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.auto_run_reexecution.event_log_consumer import EventLogConsumerDaemon
from dagster._daemon.daemon import MonitoringDaemon
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from mx_pipeline import settings
from mx_pipeline.instance import local_config, production_config, rendered, write_instance
from mx_pipeline.mx import MxClient
from mx_pipeline.mx.rate_limit import RateLimiter, RateLimits
from mx_pipeline.run_launcher import run_worker_pid
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline_tests.conftest import FAST_SANDBOX
from mx_pipeline_tests.holding import held_by_another_process
from mx_pipeline_tests.postgres import Postgres

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "workspace.yaml"
LOCATION = "mx_pipeline"
POOL = "duckdb_warehouse"
FIRST_READ, FIRST_LOAD = "raw__mx_users.read_users", "raw__mx_users.load_users"  # an ingest run's first steps
DEADLINE_SECONDS = 120.0
T = TypeVar("T")


@dataclass
class Deployment:
    instance: dg.DagsterInstance
    context: WorkspaceProcessContext
    sandbox: object
    users_csv: Path
    warehouse_path: Path
    daemons: list

    def submit_ingest(self, tags: dict[str, str] | None = None) -> str:
        """Launch the ``ingest`` job as the UI's "Materialize all" would: through the run queue."""
        run_config = {"ops": {"raw__mx_users": {"config": {"users_csv": str(self.users_csv)}}}}
        return self.submit("ingest", run_config, tags or {})

    def submit(self, job_name: str, run_config: dict, tags: dict[str, str]) -> str:
        workspace = self.context.create_request_context()
        location = workspace.get_code_location(LOCATION)
        (repository,) = location.get_repositories().values()
        selector = JobSubsetSelector(
            location_name=LOCATION, repository_name=repository.name, job_name=job_name, op_selection=None
        )
        job = location.get_job(selector)
        plan = location.get_execution_plan(job, run_config, step_keys_to_execute=None, known_state=None)
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags={**job.tags, **tags},
            root_run_id=None,
            parent_run_id=None,
            step_keys_to_execute=None,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            job_snapshot=job.job_snapshot,
            parent_job_snapshot=job.parent_job_snapshot,
            asset_selection=None,
            asset_check_selection=None,
            resolved_op_selection=None,
            op_selection=None,
            remote_job_origin=job.get_remote_origin(),
            job_code_origin=job.get_python_origin(),
            asset_graph=workspace.asset_graph,
        )
        self.instance.submit_run(run.run_id, workspace)
        return run.run_id

    def tick(self) -> None:
        """One pass of each recovery loop of the daemon; an error in one fails the caller, never hides."""
        for daemon in self.daemons:
            errors = [e for e in daemon.run_iteration(self.context) if e is not None]
            if errors:
                raise AssertionError(f"{daemon.daemon_type()} failed: {errors[0].to_string()}")

    @contextlib.contextmanager
    def ingest_inside_its_first_load(self) -> Iterator[str]:
        """An ``ingest`` run held inside its first load, holding the warehouse slot, for as long as the block lasts.

        No read holds the slot, so MX is held until the run reads its users, then the warehouse file is (by another
        process), and the run's first load waits for the file with the slot in hand.
        """
        with contextlib.ExitStack() as file_held:
            with self.sandbox.world.lock:  # MX stops answering: the run waits inside its first read
                run_id = self.submit_ingest()
                self.wait_for(lambda: self.running_step(run_id) == FIRST_READ, "the run is reading the users")
                file_held.enter_context(held_by_another_process(self.warehouse_path, seconds=600))
            self.wait_for(
                lambda: self.running_step(run_id) == FIRST_LOAD and run_id in self.pool_holders(),
                "the run is inside its first load, holding the warehouse slot",
            )
            yield run_id

    def wait_for(self, condition: Callable[[], T], what: str, timeout: float = DEADLINE_SECONDS) -> T:
        """Tick the daemon until ``condition()`` is truthy; fail after ``timeout`` seconds, naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout:.0f} s: {what}")
            time.sleep(0.25)

    def run(self, run_id: str) -> dg.DagsterRun:
        run = self.instance.get_run_by_id(run_id)
        assert run is not None, run_id
        return run

    def runs(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs())

    def retry_of(self, run_id: str) -> str | None:
        """The run the daemon launched to retry ``run_id``, once there is one."""
        return self.run(run_id).tags.get("dagster/auto_retry_run_id")

    def all_runs_finished(self) -> bool:
        return all(r.is_finished for r in self.runs())

    def pool_holders(self) -> set[str]:
        """The runs holding a ``duckdb_warehouse`` slot now."""
        info = self.instance.event_log_storage.get_concurrency_info(POOL)
        return {slot.run_id for slot in info.claimed_slots}

    def worker_pid(self, run_id: str) -> int | None:
        worker = run_worker_pid(self.instance, run_id)
        return worker[0] if worker else None

    def kill_worker(self, run_id: str) -> int:
        """``kill -9`` the run's worker process and anything it started."""
        pid = self.worker_pid(run_id)
        assert pid is not None, f"run {run_id} has no worker"
        kill_process_family(pid)
        return pid

    def running_step(self, run_id: str) -> str | None:
        """The step the run was inside (started, not finished) according to its event log."""
        open_steps: dict[str, None] = {}
        for entry in self.instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or not entry.step_key:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                open_steps[entry.step_key] = None
            elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                open_steps.pop(entry.step_key, None)
        return next(reversed(open_steps), None) if open_steps else None

    def admin(self, path: str, **body) -> dict:
        response = requests.post(f"{self.sandbox.base_url}/_sandbox/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()


def kill_process_family(pid: int) -> None:
    """``kill -9`` ``pid`` and every process it started, read from ``/proc``, not from any run's event log."""
    for member in [pid, *_descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            with contextlib.suppress(FileNotFoundError):
                children = [int(c) for c in task.read_text().split()]
                found += children
                frontier += children
    return found


@contextlib.contextmanager
def deployed(
    tmp_path: Path,
    users: dict[str, str],
    *,
    seed: int = 0,
    workspace: Path = WORKSPACE,
    postgres: Postgres | None = None,
    sandbox: dict | None = None,
    **instance_overrides,
) -> Iterator[Deployment]:
    """The deployment on ``tmp_path``; ``users``: our user id -> MX Bank password (each connects one bank).

    ``workspace``: the code location to serve (a benchmark may compare another executor); the project's by default.

    ``postgres``: deploy on the production instance, its storage and the shared MX budget in a new database of
    this server.

    ``sandbox``: ``SandboxConfig`` fields beside the fast clock (a shorter history for many members).

    ``instance_overrides``: ``run_monitoring`` settings to change in the written ``dagster.yaml`` (a benchmark
    may shorten ``free_slots_after_run_end_seconds``); none by default: the project's own.
    """
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir(parents=True)
    data.mkdir()
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("id\n" + "\n".join(users) + "\n")
    with _code_servers_stopped(), running_sandbox(seed=seed, **FAST_SANDBOX | (sandbox or {})) as mx:
        _connect_banks(mx.base_url, users)
        environment = {"DAGSTER_HOME": str(home), "MX_PIPELINE_DATA_DIR": str(data), "MX_BASE_URL": mx.base_url}
        if postgres:  # Dagster's storage and the MX budget every worker shares, in one database of its own
            database = postgres.create_database()
            environment |= postgres.environment(database) | {"MX_PIPELINE_RATE_BUDGET_URL": postgres.url(database)}
        with _environment(environment):
            _install_instance(home, production=postgres is not None, run_monitoring=instance_overrides)
            with (
                dg.DagsterInstance.from_config(str(home)) as instance,
                WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as context,
                QueuedRunCoordinatorDaemon(interval_seconds=1) as queue,
            ):
                daemons = [queue, MonitoringDaemon(interval_seconds=1), EventLogConsumerDaemon()]
                deployment = Deployment(instance, context, mx, users_csv, data / "warehouse.duckdb", daemons)
                deployment.tick()  # as a daemon started before any run: the retry loop starts its cursor here
                try:
                    yield deployment
                finally:
                    for run in deployment.runs():  # a failed test leaves no worker behind
                        if not run.is_finished and deployment.worker_pid(run.run_id):
                            deployment.kill_worker(run.run_id)


@contextlib.contextmanager
def _code_servers_stopped() -> Iterator[None]:
    """Code servers the deployment started are stopped when it ends: left alone they outlive it by their heartbeat
    timeout (45 s), loading on the machine and calling the deployment's instance (its Postgres) after it is gone."""
    before = set(_descendants(os.getpid()))
    try:
        yield
    finally:
        servers = [pid for pid in set(_descendants(os.getpid())) - before if _is_code_server(pid)]
        for pid in servers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_is_code_server(pid) for pid in servers):
            time.sleep(0.1)
        for pid in filter(_is_code_server, servers):  # one stuck in a call ignores SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _is_code_server(pid: int) -> bool:
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z" and b"grpc" in arguments and b"api" in arguments


def _install_instance(home: Path, *, production: bool, run_monitoring: dict) -> None:
    """The instance written into ``home`` as ``mx-pipeline instance`` writes it, from the environment set."""
    config = production_config(settings.ProductionInstanceSettings.from_env()) if production else local_config()
    config["run_monitoring"] |= run_monitoring
    write_instance(home, rendered(config))


def _connect_banks(base_url: str, users: dict[str, str]) -> None:
    unpaced = RateLimiter(RateLimits(requests_per_second=1000, per_member_interval=0))  # set-up: each user once
    with MxClient(base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY, limiter=unpaced) as client:
        fields = {c.field_name: c.guid for c in client.list_institution_credentials("mxbank")}
        for user_id, password in users.items():
            user = client.ensure_user(id=user_id)
            credentials = {fields["LOGIN"]: "mxuser", fields["PASSWORD"]: password}
            client.create_member(user.guid, institution_code="mxbank", credentials=credentials)
    requests.post(f"{base_url}/_sandbox/aggregations/finish", timeout=300).raise_for_status()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """These variables for this process and the code server and run workers it starts; restored after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
