"""Client-side request pacing: a global budget plus minimum spacing per user and per member.

MX documents per-IP concurrency and per-product requests-per-second limits (429), and bursts of requests on
one member can degrade its connection; so every request reserves a slot that satisfies three rules at once:
- global: at most ``requests_per_second`` on average, with bursts of up to ``burst`` requests;
- per user: at least ``per_user_interval`` seconds between two requests for the same user;
- per member: at least ``per_member_interval`` seconds between two requests for the same member.

Slots are reserved under a lock and waited for outside it, so threads sharing one limiter never hold the
lock while sleeping; the global budget is the generic cell rate algorithm, reservation style.

Processes (run workers on any machine) keep all three rules together through a ``SharedBudget`` in Postgres
(``mx/shared_budget.py``); the limiter then keeps no state of its own.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mx_pipeline.mx.shared_budget import SharedBudget, Spacing


@dataclass(frozen=True)
class RateLimits:
    requests_per_second: float = 20.0
    burst: int = 10
    per_user_interval: float = 0.0
    per_member_interval: float = 0.5


class RateLimiter:
    """Thread-safe pacing shared by every request a client makes."""

    def __init__(
        self,
        limits: RateLimits = RateLimits(),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        shared: "SharedBudget | None" = None,
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
        """A limiter keeping the limits every process shares at ``budget_url``; None: this process's own."""
        if not budget_url:
            return cls(limits)
        from mx_pipeline.mx.shared_budget import SharedBudget

        return cls(limits, shared=SharedBudget.of_process(budget_url, limits))

    def acquire(self, *, user_guid: str | None = None, member_guid: str | None = None) -> float:
        """Block until this request may go; returns the seconds waited.

        First the user's and member's spacing is waited out, then a global slot is reserved. The spacing is
        measured from the committed send time, so a request held back by the global budget still keeps
        its member's next request at least ``per_member_interval`` away.

        With a ``SharedBudget``, the same three rules hold across processes: see :meth:`_acquire_shared`.
        """
        if self._shared is not None:
            return self._acquire_shared(user_guid, member_guid)
        waited = 0.0
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

    def _acquire_shared(self, user_guid: str | None, member_guid: str | None) -> float:
        """Wait out the user's and member's spacing, spend the global budget, then take the spacing's slots.

        The slots are taken last, so the spacing runs from the send, as the local path's does. Another process
        may take a slot in between (a member two runs read at once); then this request waits again and spends
        again: a wasted unit of budget slows us, it never lets a burst through.
        """
        spacings = self._spacings(user_guid, member_guid)
        waited = 0.0
        while True:
            if ready_in := self._shared.spacing.ready_in(spacings):
                self._sleep(ready_in)
                waited += ready_in
            started = self._clock()
            self._shared.acquire()
            waited += self._clock() - started
            if not self._shared.spacing.reserve(spacings):
                return waited

    def take_once(self, key: str, seconds: float) -> float:
        """A slot for ``key`` once in ``seconds``, kept where every process sees it: 0 when this caller took it,
        else the seconds until one may. Never waits. A process of its own keeps no such slots (returns 0): what it
        asks once per interval, its scheduler's own records already space."""
        if self._shared is None or seconds <= 0:
            return 0.0
        return self._shared.spacing.reserve([(key, seconds)])

    def _spacings(self, user_guid: str | None, member_guid: str | None) -> "list[Spacing]":
        spacings = []
        if user_guid and self.limits.per_user_interval:
            spacings.append((f"user:{user_guid}", self.limits.per_user_interval))
        if member_guid and self.limits.per_member_interval:
            spacings.append((f"member:{member_guid}", self.limits.per_member_interval))
        return spacings

    def _reserve_global_slot(self, now: float) -> float:
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
