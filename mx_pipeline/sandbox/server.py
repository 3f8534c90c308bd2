"""Run the sandbox: ``serve()`` blocks (the CLI), ``running_sandbox()`` runs it in a thread (tests, demos)."""

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from mx_pipeline import settings
from mx_pipeline.sandbox.app import create_app
from mx_pipeline.sandbox.clock import SandboxClock
from mx_pipeline.sandbox.config import make_config
from mx_pipeline.sandbox.webhooks import WebhookSender
from mx_pipeline.sandbox.world import World


@dataclass
class SandboxHandle:
    """A running sandbox: where it listens and its in-memory state (the test's source of truth)."""

    base_url: str
    world: World
    webhooks: WebhookSender | None

    def freeze_clock(self) -> None:
        """Stop real time flowing in the sandbox from now on: a running job ends only when the clock is advanced
        or the job is finished through the admin hook, so a test never races the sandbox's real-time aggregation."""
        with self.world.lock:
            self.world.clock = SandboxClock(self.world.now(), frozen=True)


def _build(options: dict):
    config = make_config(**options)
    world = World(config)
    sender = None
    if config.webhook_url:
        sender = WebhookSender(
            config.webhook_url,
            config.webhook_username,
            config.webhook_password,
            config.webhook_retry_delays_real_seconds,
            config.webhook_timeout_real_seconds,
        )
    return world, sender, create_app(world, webhook_sender=sender)


def serve(
    host: str = settings.SANDBOX_HOST,
    port: int = settings.SANDBOX_PORT,
    *,
    seed: int = 0,
    latency_ms: int = 0,
    fault_rate: float = 0.0,
    client_id: str = settings.SANDBOX_CLIENT_ID,
    api_key: str = settings.SANDBOX_API_KEY,
    webhook_url: str | None = None,
    webhook_username: str | None = None,
    webhook_password: str | None = None,
    **tuning,
) -> None:
    """Serve the sandbox with uvicorn until interrupted. ``tuning``: any other ``SandboxConfig`` field."""
    _, sender, app = _build(
        dict(
            seed=seed,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            client_id=client_id,
            api_key=api_key,
            webhook_url=webhook_url,
            webhook_username=webhook_username,
            webhook_password=webhook_password,
            **tuning,
        )
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        if sender:
            sender.stop()


@contextlib.contextmanager
def running_sandbox(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
    latency_ms: int = 0,
    fault_rate: float = 0.0,
    client_id: str = settings.SANDBOX_CLIENT_ID,
    api_key: str = settings.SANDBOX_API_KEY,
    webhook_url: str | None = None,
    webhook_username: str | None = None,
    webhook_password: str | None = None,
    **tuning,
) -> Iterator[SandboxHandle]:
    """Start the sandbox in a background thread (``port=0``: a free port), wait until it answers, stop on exit.

    ``tuning``: any other ``SandboxConfig`` field (e.g. ``freeze_clock=True, aggregation_seconds=0``).
    """
    world, sender, app = _build(
        dict(
            seed=seed,
            latency_ms=latency_ms,
            fault_rate=fault_rate,
            client_id=client_id,
            api_key=api_key,
            webhook_url=webhook_url,
            webhook_username=webhook_username,
            webhook_password=webhook_password,
            **tuning,
        )
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="mx-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the MX sandbox did not start")
        time.sleep(0.01)
    try:
        yield SandboxHandle(f"http://{host}:{port}", world, sender)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        if sender:
            sender.stop()
