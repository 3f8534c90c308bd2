"""Fixtures shared across the suite: the built-in sandbox on loopback and our client pointed at it."""

import pytest

from mx_pipeline import settings
from mx_pipeline.mx import MxClient, RateLimits
from mx_pipeline.mx.rate_limit import RateLimiter
from mx_pipeline.sandbox.server import running_sandbox

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
