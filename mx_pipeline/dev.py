"""``mx-pipeline dev``: the data team's day in one command.

Starts the built-in sandbox (unless real MX credentials are configured), the connect service and
``dagster dev`` (the UI and the daemon) with the project-local Dagster home (``data/dagster_home``, holding the
instance config: its pools, and the run monitoring and retries through which the daemon recovers dead runs).
One Ctrl-C stops everything: each child runs in its own process group and gets SIGINT, which dagster honours
only when started with job control (see ../shared/research/stack.md, "Stopping it is a trap").
"""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mx_pipeline import settings

DAGSTER_PORT = 3000
INSTANCE_CONFIG = Path(__file__).resolve().parents[1] / "data" / "dagster_home" / "dagster.yaml"
STOP_GRACE_SECONDS = 20


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
        shutil.copyfile(INSTANCE_CONFIG, target)  # not copy(): the checked-in file's 0644 would come along
    elif target.resolve() != INSTANCE_CONFIG and target.read_text() != INSTANCE_CONFIG.read_text():
        print(
            f"note: {target} differs from {INSTANCE_CONFIG}; without its run_monitoring, run_launcher and"
            " run_retries a killed run keeps its pool slot and later runs wait for it",
            flush=True,
        )


def run_dev() -> int:
    mx = settings.MxSettings.from_env()
    home = (settings.data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    _install_instance_config(home)
    env = settings.child_environment(DAGSTER_HOME=str(home))
    bin_dir = Path(sys.executable).parent
    commands = []
    if mx.is_sandbox:
        env |= _sandbox_webhooks_to_the_connect_service()
        commands.append([str(bin_dir / "mx-pipeline"), "sandbox"])
    commands.append([str(bin_dir / "mx-pipeline"), "serve"])
    commands.append([str(bin_dir / "dagster"), "dev", "-w", "workspace.yaml", "-p", str(DAGSTER_PORT)])
    processes = [_start(command, env) for command in commands]
    print(f"Dagster UI: http://127.0.0.1:{DAGSTER_PORT}  (Ctrl-C stops everything)", flush=True)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        print("a process exited; stopping the others", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(processes)
