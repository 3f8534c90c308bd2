"""Client-side request pacing: a global budget plus minimum spacing per user and per member.

MX documents per-IP concurrency and per-product requests-per-second limits (429), and bursts of requests on
one member can degrade its connection; so every request reserves a slot that satisfies three rules at once:
- global: at most ``requests_per_second`` on average, with bursts of up to ``burst`` requests;
- per user: at least ``per_user_interval`` seconds between two requests for the same user;
- per member: at least ``per_member_interval`` seconds between two requests for the same member.

Slots are reserved under a lock and waited for outside it, so threads sharing one limiter never hold the
lock while sleeping; the global budget is the generic cell rate algorithm, reservation style.

Processes (run workers on any machine) spend one global budget through a :class:`SharedBudget` in Postgres; the
spacing per user and per member stays in each process, where a member's reads happen one after another.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    requests_per_second: float = 20.0
    burst: int = 10
    per_user_interval: float = 0.0
    per_member_interval: float = 0.5


class SharedBudget:
    """The global budget every process talking to MX spends together: pyrate-limiter's sliding-window log in
    Postgres (``PostgresBucket``, stamped by Postgres's clock, checked and written under a table lock), so run
    workers on any machine never send more than the budget between them. Its rule is the local one's: at most
    ``burst`` requests in any window of ``burst / requests_per_second`` seconds.
    """

    TABLE = "mx_requests"  # pyrate-limiter names it ratelimit___mx_requests

    def __init__(self, conninfo: str, limits: RateLimits) -> None:
        from psycopg_pool import ConnectionPool
        from pyrate_limiter import Limiter, PostgresBucket, Rate

        self._pool = ConnectionPool(conninfo, min_size=1, max_size=4, open=True, name="mx-rate-budget")
        self._pool.wait(timeout=30)  # an unreachable database fails here, not at the first request
        window_ms = round(1000 * limits.burst / limits.requests_per_second)
        self._limiter = Limiter(PostgresBucket(self._pool, self.TABLE, [Rate(limits.burst, window_ms)]))

    @classmethod
    def of_process(cls, conninfo: str, limits: RateLimits) -> "SharedBudget":
        """One per process and database: its connections and its leak thread live as long as the process."""
        with _OPENED_LOCK:
            key = (conninfo, limits)
            if key not in _OPENED:
                _OPENED[key] = cls(conninfo, limits)
            return _OPENED[key]

    @staticmethod
    def close_all() -> None:
        """Close every budget :meth:`of_process` opened (before their database goes away)."""
        with _OPENED_LOCK:
            budgets = list(_OPENED.values())
            _OPENED.clear()
        for budget in budgets:
            budget.close()

    def acquire(self) -> None:
        """Block until one more request fits the budget."""
        self._limiter.try_acquire("mx", blocking=True)

    def close(self) -> None:
        self._limiter.close()  # its leak thread first: it asks the database
        self._pool.close()


_OPENED: dict[tuple[str, RateLimits], SharedBudget] = {}
_OPENED_LOCK = threading.Lock()


class RateLimiter:
    """Thread-safe pacing shared by every request a client makes."""

    def __init__(
        self,
        limits: RateLimits = RateLimits(),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        shared: SharedBudget | None = None,
    ) -> None:
        if limits.requests_per_second <= 0 or limits.burst < 1:
            raise ValueError("requests_per_second must be > 0 and burst >= 1")
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._interval = 1.0 / limits.requests_per_second
        self._theoretical_arrival = 0.0
        self._next_for_user: dict[str, float] = {}
        self._next_for_member: dict[str, float] = {}
        self._shared = shared

    @classmethod
    def spending(cls, limits: RateLimits, budget_url: str | None) -> "RateLimiter":
        """A limiter spending the budget every process shares at ``budget_url``; None: this process's own."""
        return cls(limits, shared=SharedBudget.of_process(budget_url, limits) if budget_url else None)

    def acquire(self, *, user_guid: str | None = None, member_guid: str | None = None) -> float:
        """Block until this request may go; returns the seconds waited.

        First the user's and member's spacing is waited out, then a global slot is reserved. The spacing is
        measured from the committed send time, so a request held back by the global budget still keeps
        its member's next request at least ``per_member_interval`` away.

        With a :class:`SharedBudget`, the user's and member's spacing is waited out first, then the shared budget
        is spent, and the request goes at once: the budget is spent at the send, never ahead of a wait.
        """
        waited = 0.0
        if self._shared is not None:
            waited += self._wait_for_spacing(user_guid, member_guid)
            started = self._clock()
            self._shared.acquire()
            waited += self._clock() - started
        while True:
            with self._lock:
                now = self._clock()
                ready = self._spacing_ends(user_guid, member_guid)
                if ready <= now:
                    send_at = self._reserve_global_slot(now)
                    if user_guid and self.limits.per_user_interval:
                        self._next_for_user[user_guid] = send_at + self.limits.per_user_interval
                    if member_guid and self.limits.per_member_interval:
                        self._next_for_member[member_guid] = send_at + self.limits.per_member_interval
                    self._forget_past(now)
                    break
            # Sleep outside the lock so other users and members keep flowing meanwhile.
            self._sleep(ready - now)
            waited += ready - now
        if send_at > now:
            self._sleep(send_at - now)
        return waited + (send_at - now)

    def _spacing_ends(self, user_guid: str | None, member_guid: str | None) -> float:
        return max(self._next_for_user.get(user_guid or "", 0.0), self._next_for_member.get(member_guid or "", 0.0))

    def _wait_for_spacing(self, user_guid: str | None, member_guid: str | None) -> float:
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                ready = self._spacing_ends(user_guid, member_guid)
            if ready <= now:
                return waited
            self._sleep(ready - now)
            waited += ready - now

    def _reserve_global_slot(self, now: float) -> float:
        if self._shared is not None:
            return now  # the shared budget was spent just before
        tolerance = (self.limits.burst - 1) * self._interval
        send_at = max(now, self._theoretical_arrival - tolerance)
        self._theoretical_arrival = max(self._theoretical_arrival, send_at) + self._interval
        return send_at

    def _forget_past(self, now: float) -> None:
        # Keeps memory bounded by the number of recently active users/members, not all ever seen.
        for table in (self._next_for_user, self._next_for_member):
            if len(table) > 10_000:
                for key in [k for k, t in table.items() if t <= now]:
                    del table[key]
