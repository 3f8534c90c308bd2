"""``mx-pipeline dev``: the data team's day in one command.

Starts the built-in sandbox (unless real MX credentials are configured), the connect service, and the Dagster
UI and daemon with ``dg dev`` (what Dagster 1.13 recommends over ``dagster dev``; it finds the code location
through pyproject.toml's ``[tool.dg]`` and runs it in this environment: nothing is created or synced), all with
the project-local Dagster home (``data/dagster_home``: the instance config with its pools, and the run
monitoring and retries through which the daemon recovers dead runs).

On the sandbox the UI opens on data: the data directory starts afresh (``sandbox_session``), the sandbox's demo
users connect their banks (``demo_connections``, the same as ``mx-pipeline demo``) and the ``ingest`` job runs
once, in this process, into that Dagster instance, so its materializations (row counts), check results and
``marts.member_health`` are in the UI from the start.

One Ctrl-C stops everything: each child runs in its own process group and gets SIGINT, which Dagster honours
only when started with job control (see ../shared/research/stack.md, "Stopping it is a trap").
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from mx_pipeline import sandbox_session, settings
from mx_pipeline.instance import LOCAL_CONFIG
from mx_pipeline.mx import MxClient
from mx_pipeline.mx.credentials import check_credentials

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STOP_GRACE_SECONDS = 20
SANDBOX_START_SECONDS = 120  # generous: a loaded 2-core machine imports the sandbox in a few seconds
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _stop_on_ctrl_c_or_term() -> None:
    """Ctrl-C or SIGTERM stops everything, even when this process was started with them ignored (as a script's
    background job is); handled here, they are back to their defaults in the children."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    print("starting:", " ".join(command), flush=True)
    return subprocess.Popen(command, env=env, start_new_session=True)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _sandbox_webhooks_to_the_connect_service() -> dict[str, str]:
    """The sandbox posts its webhooks to our connect service, as MX would, with credentials both sides share."""
    connect = settings.ConnectSettings.from_env()
    env = {"MX_SANDBOX_WEBHOOK_URL": f"{connect.public_url}/webhooks/mx"}
    if not (connect.webhook_username and connect.webhook_password):
        env |= {"MX_WEBHOOK_USERNAME": "sandbox-webhooks", "MX_WEBHOOK_PASSWORD": secrets.token_urlsafe(18)}
    return env


def _install_instance_config(home: Path) -> None:
    """A data dir elsewhere gets the project's instance config (pools, run monitoring, retries); a copy it
    already has is kept (it may be edited on purpose), but one that differs is pointed out."""
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(LOCAL_CONFIG, target)  # not copy(): the checked-in file's 0644 would come along
    elif target.resolve() != LOCAL_CONFIG and target.read_text() != LOCAL_CONFIG.read_text():
        print(
            f"note: {target} differs from {LOCAL_CONFIG}; without its run_monitoring, run_launcher and"
            " run_retries a killed run keeps its pool slot and later runs wait for it",
            flush=True,
        )


def _listens(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 80), timeout=1).close()
        return True
    except OSError:
        return False


def _prepare_data_dir(mx: settings.MxSettings) -> None:
    if mx.is_sandbox:
        sandbox_session.start_afresh()
    elif sandbox_session.leave_the_sandbox():
        print(f"{settings.data_dir()} held the sandbox's data: cleared before the first run on MX", flush=True)


def _is_listening(process: subprocess.Popen, url: str, timeout_seconds: float) -> bool:
    """Wait until ``process`` accepts connections at ``url``; False when it exits or the time is up."""
    deadline = time.monotonic() + timeout_seconds
    while process.poll() is None and time.monotonic() < deadline:
        if _listens(url):
            return True
        time.sleep(0.2)
    return False


def _open_on_data(mx: settings.MxSettings, home: Path) -> None:
    """Connect the demo members and run the ``ingest`` job once into the instance the UI shows."""
    import dagster as dg  # the UI's own process needs none of this: import it only for the first run

    from mx_pipeline import definitions
    from mx_pipeline.demo_categories import pin_demo_merchant_categories
    from mx_pipeline.demo_connections import connect_demo_members, registered_demo_users
    from mx_pipeline.warehouse import Warehouse, tables
    from mx_pipeline.warehouse.members import status_counts

    started = time.monotonic()
    print("Opening on data: registering the demo users, connecting their banks, running `ingest` once ...")
    ingest = definitions.defs().resolve_job_def("ingest")
    warehouse = Warehouse(settings.warehouse_path())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        users = [dg.AssetKey(tables.USERS.key_path)]
        ingest.execute_in_process(instance=instance, asset_selection=users, run_config=QUIET, raise_on_error=False)
        with MxClient.from_settings(mx) as client:
            connect_demo_members(client, registered_demo_users(warehouse))
        pin_demo_merchant_categories(warehouse)
        result = ingest.execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
    checks = result.get_asset_check_evaluations()
    failed = sorted(e.check_name for e in checks if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR)
    warned = sorted(e.check_name for e in checks if not e.passed and e.severity == dg.AssetCheckSeverity.WARN)
    with warehouse.connect() as con:
        by_status = ", ".join(f"{status} {n}" for status, n in status_counts(con).items())
    print(
        f"  ingest {'succeeded' if result.success else 'FAILED (see the run in the UI)'} in"
        f" {time.monotonic() - started:.0f} s: members by status: {by_status};"
        f" {len(checks) - len(failed) - len(warned)} of {len(checks)} checks passed"
        + (f" (failed: {failed})" if failed else "")
        + (f" (warned: {warned})" if warned else ""),
        flush=True,
    )
    print(f"  warehouse: {warehouse.path}   analysts: {warehouse.path.with_name('analytics.duckdb')}", flush=True)


def _create_instance_storage(home: Path) -> None:
    """Create the instance's SQLite storage before the UI, the daemon and the first run open it: Dagster's
    first-time setup is not safe to run in three processes at once ("table alembic_version already exists")."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass


def run_dev() -> int:
    mx = settings.MxSettings.from_env()
    port, connect = settings.dagster_ui_port(), settings.ConnectSettings.from_env()
    ours = [f"http://127.0.0.1:{port}", f"http://{connect.host}:{connect.port}", *([mx.base_url] * mx.is_sandbox)]
    if taken := [url for url in ours if _listens(url)]:
        # another `mx-pipeline dev`, say: its data must not be cleared, nor its sandbox taken for ours
        print(f"mx-pipeline dev: something already listens at {', '.join(taken)}: stop it first", file=sys.stderr)
        return 1
    if not mx.is_sandbox:
        with MxClient.from_settings(mx) as client:
            check_credentials(client)  # refused: one line naming the variables (mx-pipeline main), nothing started
    try:
        _prepare_data_dir(mx)
    except sandbox_session.Refused as exc:
        print(f"mx-pipeline dev: {exc}", file=sys.stderr)
        return 1
    home = settings.dagster_home().resolve()
    home.mkdir(parents=True, exist_ok=True)
    _install_instance_config(home)
    _create_instance_storage(home)
    env = settings.child_environment(
        DAGSTER_HOME=str(home),
        MX_PIPELINE_DATA_DIR=str(settings.data_dir().resolve()),  # dg dev runs the code location from the root
        VIRTUAL_ENV=sys.prefix,  # this environment is the project's: dg uses it as it is
    )
    bin_dir = Path(sys.executable).parent
    dg_dev = [str(bin_dir / "dg"), "dev", "--target-path", str(PROJECT_ROOT), "--no-check-yaml", "--port", str(port)]
    processes: list[subprocess.Popen] = []
    _stop_on_ctrl_c_or_term()
    try:
        if mx.is_sandbox:
            env |= _sandbox_webhooks_to_the_connect_service()
            processes.append(_start([str(bin_dir / "mx-pipeline"), "sandbox"], env))
        processes.append(_start([str(bin_dir / "mx-pipeline"), "serve"], env))
        processes.append(_start(dg_dev, env))
        print(f"Dagster UI: http://127.0.0.1:{port}  (Ctrl-C stops everything)", flush=True)
        if mx.is_sandbox:
            if not _is_listening(processes[0], mx.base_url, SANDBOX_START_SECONDS):
                print(f"mx-pipeline dev: the sandbox did not come up at {mx.base_url}; see its output above")
                return 1
            _open_on_data(mx, home)
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("a process exited; stopping the others", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(processes)
