"""The refresh rules, in one place: SLA, attempt cap and back-off, spacing, and the global budget.

MX throttles standard aggregations per member (``aggregate`` may decline within about 3 h of the last one) and
bursts of requests on one member can DEGRADE the connection, so every number here errs on the side of
asking MX less often.
"""

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RefreshPolicy:
    sla_hours: float = 24.0  # a member whose last successful aggregation is older is stale (overridable)
    max_attempts: int = 3  # per member per attempt window; then the member is exhausted until it ages out
    attempt_window_hours: float = 24.0
    min_interval_hours: float = 3.0  # between two aggregation requests for one member
    backoff_base_minutes: float = 30.0  # after a failed attempt: 30 min, then 60, 120, ...
    members_per_run: int = 50  # a refresh run's batch
    max_members_per_tick: int = 500  # a backlog is worked off in bounded batches, never all at once
    requests_per_hour: int = 2000  # global budget of aggregation requests
    per_institution_per_tick: int = 100  # so that no institution is hammered by one tick
    poll_timeout_seconds: float = 600.0  # how long a run waits for its aggregations to finish
    poll_first_seconds: float = 2.0  # status polls back off from this ...
    poll_max_seconds: float = 30.0  # ... to this
    # A claim whose run died (a killed process: every other ending releases it) is released after this. It must
    # outlive a live refresh step (the TTL counts from the step's start: poll_timeout, then recording).
    claim_ttl_hours: float = 1.0
    # A member waiting on its user (needs MFA or a reconnect) is never aggregated, but its status is re-read
    # this long after it was last read, so a lost callback or webhook never leaves it stuck for good.
    needs_user_reread_hours: float = 24.0

    @property
    def attempt_window(self) -> timedelta:
        return timedelta(hours=self.attempt_window_hours)

    @property
    def min_interval(self) -> timedelta:
        return timedelta(hours=self.min_interval_hours)

    @property
    def needs_user_reread(self) -> timedelta:
        return timedelta(hours=self.needs_user_reread_hours)

    @property
    def claim_ttl(self) -> timedelta:
        return timedelta(hours=self.claim_ttl_hours)
