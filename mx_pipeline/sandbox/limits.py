"""Per-user and per-member request limits, and DEGRADED-on-abuse.

MX documents no per-user or per-member request limit (only per-IP concurrency and per-product rps -> 429) and
no Retry-After header (research/mx_api.md 1.5); the seed warns that bursts degrade members. The sandbox models
that warning: a sliding window per user and per member answers 429 (with Retry-After as a courtesy), and a member
that collects too many 429s, or too many aggregation requests, inside the abuse window is DEGRADED, with the cause
written to ``world.abuse_degradations``.
"""

import math
from collections import defaultdict, deque

from mx_pipeline.sandbox import aggregation
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.world import World


class RateLimiter:
    """Sliding windows in the sandbox clock's elapsed seconds. Only admitted requests count against a window."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._requests: dict[str, deque[float]] = defaultdict(deque)
        self._member_429s: dict[str, deque[float]] = defaultdict(deque)
        self._member_jobs: dict[str, deque[float]] = defaultdict(deque)

    def admit(self, user_guid: str | None, member_guid: str | None, is_job_request: bool) -> None:
        """Count one request, or raise a 429 ``MxError`` (and maybe degrade the member). Caller holds the lock."""
        config = self.world.config
        now = self.world.clock.elapsed_seconds()
        window = config.rate_limit_window_seconds
        checks = []
        if user_guid:
            checks.append((f"user:{user_guid}", config.user_requests_per_window))
        if member_guid:
            checks.append((f"member:{member_guid}", config.member_requests_per_window))
        for key, limit in checks:
            stamps = _trimmed(self._requests[key], now - window)
            if len(stamps) >= limit:
                retry_after = max(1, math.ceil(stamps[0] + window - now))
                self.world.rate_limited[key] += 1
                if key.startswith("member:"):  # only abuse of the member's own limit degrades it
                    self._note_member_429(member_guid, now)
                raise MxError(
                    429,
                    "Rate limit exceeded. Retry once the rate limit window has expired.",
                    {"Retry-After": str(retry_after)},
                )
        for key, _ in checks:
            self._requests[key].append(now)
        if member_guid and is_job_request:
            jobs = _trimmed(self._member_jobs[member_guid], now - config.abuse_window_seconds)
            jobs.append(now)
            if len(jobs) > config.abuse_aggregations_before_degrade:
                jobs.clear()
                self._degrade(
                    member_guid,
                    f"more than {config.abuse_aggregations_before_degrade} aggregation "
                    f"requests within {config.abuse_window_seconds:g}s",
                )

    def _note_member_429(self, member_guid: str, now: float) -> None:
        config = self.world.config
        strikes = _trimmed(self._member_429s[member_guid], now - config.abuse_window_seconds)
        strikes.append(now)
        if len(strikes) >= config.abuse_429s_before_degrade:
            strikes.clear()
            self._degrade(
                member_guid,
                f"{config.abuse_429s_before_degrade} rate-limited requests within {config.abuse_window_seconds:g}s",
            )

    def _degrade(self, member_guid: str, reason: str) -> None:
        member = self.world.members.get(member_guid)
        if member is not None:
            aggregation.degrade_for_abuse(self.world, member, reason)


def _trimmed(stamps: deque[float], oldest: float) -> deque[float]:
    while stamps and stamps[0] <= oldest:
        stamps.popleft()
    return stamps
