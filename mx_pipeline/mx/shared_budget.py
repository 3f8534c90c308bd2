"""The limits every process talking to MX keeps together, in Postgres: the global budget, the spacing per user and
per member, and MX's per-member aggregation throttle. Run workers on any machine reach the same rows, and
Postgres's clock stamps them all.

All sit on pyrate-limiter: the global budget is its ``PostgresBucket`` (a sliding-window log); the spacing and the
throttle are its GCRA, stepped on one row per key (``member:<guid>``, ``user:<guid>``, ``aggregation:<guid>``).
pyrate-limiter keeps such a key in Redis (``RedisStateStore``) but has no Postgres store, and a ``PostgresBucket``
per key would be a table per member; so :class:`SharedSpacing` is that store for Postgres: the library's
algorithm, our rows and their locks.
"""

import threading
from collections.abc import Sequence

from psycopg_pool import ConnectionPool, PoolClosed
from pyrate_limiter import GCRA, Limiter, PostgresBucket, Rate

from mx_pipeline.mx.rate_limit import RateLimits

Spacing = tuple[str, float]  # (key, at least this many seconds between two requests for it)


class SharedSpacing:
    """Minimum spacing per key across processes: each key's row holds GCRA's theoretical arrival time (µs).

    :meth:`reserve` locks every key's row (in key order, so two reservations never deadlock), steps GCRA with
    burst 1 on each and writes them only if all of them admit the request now: a request held back by one key
    spends none of the others.
    """

    TABLE = "mx_spacing"
    FORGET_AFTER_US = 3_600 * 1_000_000  # rows idle for an hour hold nothing: any spacing is long past
    FORGET_EVERY = 1_000  # reservations between two clean-ups

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._reservations = 0
        with pool.connection() as conn:
            conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (self.TABLE,))
            conn.execute(f"create table if not exists {self.TABLE} (key text primary key, tat_us bigint not null)")

    def ready_in(self, spacings: Sequence[Spacing]) -> float:
        """Seconds until every key's spacing has passed, as Postgres's clock reads now; 0 when it has."""
        if not spacings:
            return 0.0
        with self._pool.connection() as conn:
            (wait_us,) = conn.execute(
                f"select coalesce(max(tat_us), 0) - {_NOW_US} from {self.TABLE} where key = any(%s)",
                ([key for key, _ in spacings],),
            ).fetchone()
        return max(0.0, wait_us / 1e6)

    def reserve(self, spacings: Sequence[Spacing]) -> float:
        """Take every key's next slot now and return 0, or take none and return the seconds to wait."""
        if not spacings:
            return 0.0
        keys = sorted({key for key, _ in spacings})
        seconds = dict(spacings)
        gcra = GCRA()
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(
                f"insert into {self.TABLE} select unnest(%s::text[]), 0 on conflict do nothing",
                (keys,),
            )
            rows = conn.execute(
                f"select key, tat_us, {_NOW_US} from {self.TABLE} where key = any(%s) order by key for update",
                (keys,),
            ).fetchall()
            advanced, retry_ms = [], 0
            for key, tat_us, now_us in rows:
                rate = Rate(1, max(1, round(seconds[key] * 1000)))
                (new_tat,), decision = gcra.step([rate], (tat_us,), now_us // 1000, 1)
                if decision.allowed:
                    advanced.append((key, new_tat))
                else:
                    retry_ms = max(retry_ms, decision.retry_after_ms or 1)
            if retry_ms:
                return retry_ms / 1000
            conn.execute(
                f"update {self.TABLE} as s set tat_us = v.tat from unnest(%s::text[], %s::bigint[]) as v(key, tat)"
                " where s.key = v.key",
                ([key for key, _ in advanced], [tat for _, tat in advanced]),
            )
            self._forget_idle(conn)
        return 0.0

    def _forget_idle(self, conn) -> None:
        self._reservations += 1
        if self._reservations % self.FORGET_EVERY == 0:
            conn.execute(f"delete from {self.TABLE} where tat_us < {_NOW_US} - {self.FORGET_AFTER_US}")


_NOW_US = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"


class _RequestLog(PostgresBucket):
    """pyrate-limiter's ``PostgresBucket``, whose leak thread may still be mid-round when the budget closes."""

    def leak(self, current_timestamp: int | None = None) -> int:
        try:
            return super().leak(current_timestamp)
        except PoolClosed:
            return 0  # closed with the budget: nothing left to trim


class SharedBudget:
    """What every process talking to MX spends together.

    - The global budget: pyrate-limiter's sliding-window log in Postgres (``PostgresBucket``, stamped by
      Postgres's clock, checked and written under a table lock), so run workers on any machine never send more
      than the budget between them. Its rule is the local one's: at most ``burst`` requests in any window of
      ``burst / requests_per_second`` seconds.
    - The spacing per user and per member (:class:`SharedSpacing`), so a member two runs read at once, or a
      user whose members several workers read, is paced as if one process read it; and on the same rows, one
      aggregation request per member per throttle interval, whichever worker asks.
    """

    TABLE = "mx_requests"  # pyrate-limiter names it ratelimit___mx_requests

    def __init__(self, conninfo: str, limits: RateLimits) -> None:
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=4, open=True, name="mx-rate-budget")
        self._pool.wait(timeout=30)  # an unreachable database fails here, not at the first request
        window_ms = round(1000 * limits.burst / limits.requests_per_second)
        self._limiter = Limiter(_RequestLog(self._pool, self.TABLE, [Rate(limits.burst, window_ms)]))
        self.spacing = SharedSpacing(self._pool)

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
        """Block until one more request fits the global budget."""
        self._limiter.try_acquire("mx", blocking=True)

    def close(self) -> None:
        self._limiter.close()  # its leak thread first: it asks the database
        self._pool.close()


_OPENED: dict[tuple[str, RateLimits], SharedBudget] = {}
_OPENED_LOCK = threading.Lock()
