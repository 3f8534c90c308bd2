"""Fixtures shared across the suite: the built-in sandbox on loopback and our client pointed at it."""

import pytest

from mx_pipeline import settings
from mx_pipeline.mx import MxClient, RateLimits
from mx_pipeline.mx.rate_limit import RateLimiter
from mx_pipeline.mx.shared_budget import SharedBudget
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline_tests.local_http import free_port

# A frozen sandbox clock and instant aggregation: tests advance time explicitly instead of sleeping.
FAST_SANDBOX = {"freeze_clock": True, "aggregation_seconds": 0, "start_time": "2026-11-25T12:00:00Z"}


@pytest.fixture
def sandbox():
    with running_sandbox(**FAST_SANDBOX) as handle:
        yield handle


@pytest.fixture
def sandbox_client(sandbox):
    """Our MX client, unchanged, pointed at the sandbox the way a second process would be (MX_BASE_URL)."""
    limiter = RateLimiter(RateLimits(requests_per_second=500, burst=100, per_member_interval=0))
    with MxClient(sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY, limiter=limiter) as mx:
        yield mx


@pytest.fixture
def on_the_sandbox(tmp_path, monkeypatch):
    """An ``mx-pipeline dev`` or ``demo`` session's environment: no MX credentials, a data dir of its own (returned)
    and ports of its own (a `make dev` running on this machine, on 3000, 8780 and 8765, is not this test's)."""
    for name in ("MX_CLIENT_ID", "MX_API_KEY", "MX_BASE_URL", "MX_SANDBOX_HOST", "MX_PIPELINE_CONNECT_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MX_PIPELINE_UI_PORT", "MX_PIPELINE_CONNECT_PORT", "MX_SANDBOX_PORT"):
        monkeypatch.setenv(name, str(free_port()))
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of this test process's own (one per xdist worker); each test creates its database."""
    from mx_pipeline_tests.postgres import running_postgres

    with running_postgres() as server:
        yield server
        SharedBudget.close_all()  # budgets tests opened in this process, before their server stops
