"""The scheduler's state: which members are due, claims on them, and every attempt made.

The claims and attempts live in a :class:`Ledger`: the warehouse's ``ops`` tables (:class:`WarehouseLedger`, one
machine), or the shared Postgres every worker reaches (``refresh/shared_ledger.py``). The judging queries below
read them as ``refresh_claims`` and ``refresh_attempts``, whichever ledger shows them (``Ledger.visible``).

One SQL query decides a whole tick, so a tick costs the same few scans at 100 members or 100,000. A member is
due when its route allows a refresh, its last successful aggregation is older than its SLA (member, then
user, then tier override, then the default), nobody has claimed it, its last request is older than the
minimum interval, it has attempts left in the window, and its back-off after failures has passed.

A member waiting on its user (needs MFA or a reconnect) is only re-read, on the policy's slow cadence: it is
due when its status was last read (or first read as it is now) longer ago than that, whatever its freshness
SLA, interval, cap or back-off. Re-reads are status reads, not aggregations: they spend none of the hour's
aggregation budget and count toward no cap or back-off, and a tick fills its batches with aggregations first.
"""

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from typing import Protocol

import duckdb

from mx_pipeline.lifecycle.routes import AGGREGATED_ROUTES, REFRESH_ACTIONS, WAITING_ON_THE_USER
from mx_pipeline.refresh.aggregate import AGGREGATE, FAILURES, NOT_AGGREGATIONS, Attempt, RefreshTarget
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.warehouse.connection import registered

ACTION_BY_ROUTE = {route.value: action for route, action in REFRESH_ACTIONS.items()}


def _sql_list(values) -> str:
    return ", ".join(f"'{v}'" for v in sorted(values))


_REFRESHABLE = _sql_list(ACTION_BY_ROUTE)
_AGGREGATED = _sql_list(route.value for route in AGGREGATED_ROUTES)
_WATCHED = _sql_list(route.value for route in WAITING_ON_THE_USER)
_FAILURES = _sql_list(FAILURES)
_NOT_AGGREGATIONS = _sql_list(NOT_AGGREGATIONS)
_REREAD_ROUTES = _sql_list(route.value for route in REFRESH_ACTIONS.keys() - AGGREGATED_ROUTES)

_MEMBERS = f"""
    with members as (
        select r.member_guid, r.user_guid, r.route, s.successfully_aggregated_at as last_success,
               s.fetched_at as status_first_read, m.institution_code,
               r.route in ({_AGGREGATED}) as aggregated, r.route in ({_WATCHED}) as watched,
               coalesce(by_member.sla_hours, by_user.sla_hours, by_tier.sla_hours, $default_sla) as sla_hours
        from ops.member_routes as r
        join raw.mx_member_status as s on s.guid = r.member_guid
        left join raw.mx_members as m on m.guid = r.member_guid
        left join (select mx_user_guid, any_value(tier) as tier from ops.end_users group by 1) as e
               on e.mx_user_guid = r.user_guid
        left join ops.freshness_sla as by_member on by_member.scope = 'member' and by_member.key = r.member_guid
        left join ops.freshness_sla as by_user on by_user.scope = 'user' and by_user.key = r.user_guid
        left join ops.freshness_sla as by_tier on by_tier.scope = 'tier' and by_tier.key = e.tier
        where r.route in ({_REFRESHABLE})
    ),
    recent as (
        -- The cap and the back-off count the aggregations tried since the member was last fresh, within the
        -- window: a member refreshed on a short SLA is never "exhausted" by its own successes, nor by re-reads.
        -- The interval and the re-read cadence count every request.
        select a.member_guid, max(a.requested_at) as last_request,
               count(*) filter (where a.requested_at > greatest(m.last_success, $now - to_seconds($window_seconds))
                                  and a.outcome not in ({_NOT_AGGREGATIONS})) as attempts,
               count(*) filter (where a.requested_at > greatest(m.last_success, $now - to_seconds($window_seconds))
                                  and a.outcome in ({_FAILURES})) as failures
        from refresh_attempts as a
        join members as m using (member_guid)
        where a.requested_at > $now - to_seconds(greatest($window_seconds, $reread_seconds))
        group by a.member_guid
    ),
    judged as (
        select m.*, coalesce(a.attempts, 0) as attempts, a.last_request, coalesce(a.failures, 0) as failures,
               c.member_guid is not null as claimed,
               case when m.watched
                    then greatest(m.status_first_read, a.last_request) <= $now - to_seconds($reread_seconds)
                    else coalesce(m.last_success < $now - to_seconds(cast(m.sla_hours * 3600 as bigint)), true)
               end as stale
        from members as m
        left join recent as a using (member_guid)
        left join refresh_claims as c using (member_guid)
    )
"""


@dataclass(frozen=True)
class DueMember:
    member_guid: str
    user_guid: str
    route: str
    last_success: dt.datetime | None

    @property
    def target(self) -> RefreshTarget:
        # A route outside the scheduler's own (only a manual override gets one here) is asked to aggregate.
        action = ACTION_BY_ROUTE.get(self.route, AGGREGATE)
        return RefreshTarget(self.member_guid, self.user_guid, action, self.last_success)


def due_members(
    con: duckdb.DuckDBPyConnection,
    policy: RefreshPolicy,
    *,
    now: dt.datetime,
    only: Sequence[str] | None = None,
    ignore_sla: bool = False,
    ignore_pacing: bool = False,
    ledger: "Ledger | None" = None,
) -> list[DueMember]:
    """The members to refresh now, stalest first, within this tick's budget.

    ``only``: judge just these members (a manual refresh); ``ignore_sla``: refresh them even if still fresh;
    ``ignore_pacing``: also skip the minimum interval, the attempt cap and the back-off (the data team's
    explicit override). Routes, claims and the budget always hold. ``ledger``: where the claims and attempts
    live (the warehouse's, on ``con``, by default).
    """
    if only is not None and not only:
        return []
    with (ledger or WarehouseLedger(con)).visible(con, attempts_since=now - _looked_back(policy)):
        return _due(con, policy, now, only, ignore_sla, ignore_pacing)


def _due(
    con: duckdb.DuckDBPyConnection,
    policy: RefreshPolicy,
    now: dt.datetime,
    only: Sequence[str] | None,
    ignore_sla: bool,
    ignore_pacing: bool,
) -> list[DueMember]:
    # The hour's aggregation budget counts aggregations asked for and those claimed by runs still under way.
    (spent,) = con.execute(
        f"""
        select (select count(*) from refresh_attempts
                where requested_at > $now - interval 1 hour and outcome not in ({_NOT_AGGREGATIONS}))
             + (select count(*) from refresh_claims as c left join ops.member_routes as r using (member_guid)
                where c.trigger <> 'webhook' and coalesce(r.route, 'ready') not in ({_REREAD_ROUTES}))
        """,
        {"now": now},
    ).fetchone()
    aggregations = max(0, min(policy.max_members_per_tick, policy.requests_per_hour - spent))
    rows = con.execute(
        _MEMBERS
        + """,
        candidates as materialized (
            select * from judged
            where (stale or $ignore_sla)
              and (len($only) = 0 or member_guid in (select unnest($only::varchar[])))
              and not claimed
              and ($ignore_pacing or watched or (
                  (last_request is null or last_request <= $now - to_seconds($min_interval_seconds))
                  and (not aggregated or attempts < $max_attempts)
                  and (failures = 0
                       or last_request + to_seconds(cast($backoff_seconds * pow(2, failures - 1) as bigint)) <= $now)))
        ),
        aggregations as materialized (
            select * from candidates where aggregated
            qualify row_number() over (partition by institution_code order by last_success nulls first, member_guid)
                    <= $per_institution
            order by last_success nulls first, member_guid
            limit $aggregations
        ),
        rereads as (  -- a status read costs the institution nothing: only the tick's size bounds them
            select * from candidates where not aggregated
            order by last_success nulls first, member_guid
            limit $tick - (select count(*) from aggregations)
        )
        select member_guid, user_guid, route, last_success
        from (select *, 0 as kind from aggregations union all select *, 1 from rereads)
        order by kind, last_success nulls first, member_guid
        """,
        _params(policy, now)
        | {
            "only": list(only or []),
            "ignore_sla": ignore_sla,
            "ignore_pacing": ignore_pacing,
            "min_interval_seconds": int(policy.min_interval.total_seconds()),
            "max_attempts": policy.max_attempts,
            "backoff_seconds": policy.backoff_base_minutes * 60,
            "per_institution": policy.per_institution_per_tick,
            "aggregations": aggregations,
            "tick": policy.max_members_per_tick,
        },
    ).fetchall()
    return [DueMember(*row) for row in rows]


def exhausted_members(
    con: duckdb.DuckDBPyConnection, policy: RefreshPolicy, *, now: dt.datetime, ledger: "Ledger | None" = None
) -> list[str]:
    """Stale members with no attempts left in the window: they surface in member health, not in a refresh."""
    with (ledger or WarehouseLedger(con)).visible(con, attempts_since=now - _looked_back(policy)):
        rows = con.execute(
            _MEMBERS
            + "select member_guid from judged where aggregated and stale and attempts >= $max_attempts order by 1",
            _params(policy, now) | {"max_attempts": policy.max_attempts},
        ).fetchall()
    return [guid for (guid,) in rows]


def claimed_by(
    con: duckdb.DuckDBPyConnection, run_key: str, triggers: Sequence[str] = (), *, ledger: "Ledger | None" = None
) -> list[DueMember]:
    """The members a run holds (those claimed for ``triggers`` only, when given), as refresh targets."""
    with (ledger or WarehouseLedger(con)).visible(con, attempts_since=None):
        rows = con.execute(
            """
            select c.member_guid, c.user_guid, coalesce(r.route, 'ready'), s.successfully_aggregated_at
            from refresh_claims as c
            left join ops.member_routes as r using (member_guid)
            left join raw.mx_member_status as s on s.guid = c.member_guid
            where c.run_key = $run_key
              and (len($triggers) = 0 or c.trigger in (select unnest($triggers::varchar[])))
            order by c.member_guid
            """,
            {"run_key": run_key, "triggers": list(triggers)},
        ).fetchall()
    return [DueMember(*row) for row in rows]


class Ledger(Protocol):
    """Where the scheduler's claims and attempts live: the warehouse (:class:`WarehouseLedger`, one machine) or a
    Postgres every worker reaches (``refresh/shared_ledger.py``)."""

    def claim(self, members: Iterable[tuple[str, str]], *, trigger: str, run_key: str, now: dt.datetime) -> None:
        """Claim (member guid, user guid)s for one run: until released, no other trigger launches a refresh for
        them. A member another run already holds stays with that run."""

    def release(self, *, run_key: str, triggers: Sequence[str] = ()) -> None:
        """Let go of what a run holds (only the claims made for ``triggers``, when given)."""

    def renew(self, *, run_key: str, now: dt.datetime) -> None:
        """The run's claims count their TTL from ``now`` (its refresh step started; it may have queued a while)."""

    def expire(self, ttl: dt.timedelta, *, now: dt.datetime) -> int:
        """Release claims older than ``ttl`` (their run died before releasing them); returns how many."""

    def record(self, attempts: Sequence[Attempt], *, trigger: str, run_id: str) -> None:
        """Store the attempts a run made: what the interval, the cap, the back-off and the budget count."""

    def visible(self, con: duckdb.DuckDBPyConnection, *, attempts_since: dt.datetime | None) -> AbstractContextManager:
        """Inside the block, ``con`` reads the claims as ``refresh_claims`` and the attempts requested after
        ``attempts_since`` (none when None) as ``refresh_attempts``."""

    def mirror(self, con: duckdb.DuckDBPyConnection) -> int:
        """Copy into the warehouse's ``ops.refresh_attempts`` what it lacks; returns the rows copied."""


class WarehouseLedger:
    """The claims and attempts in the warehouse's ``ops`` tables, on the open connection ``con``."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def claim(self, members: Iterable[tuple[str, str]], *, trigger: str, run_key: str, now: dt.datetime) -> None:
        users_by_member = dict(members)
        self.con.execute(
            """
            insert into ops.refresh_claims
            select unnest($members::varchar[]), unnest($users::varchar[]), $trigger, $run_key, $now
            on conflict do nothing
            """,
            {
                "members": list(users_by_member),
                "users": list(users_by_member.values()),
                "trigger": trigger,
                "run_key": run_key,
                "now": now,
            },
        )

    def release(self, *, run_key: str, triggers: Sequence[str] = ()) -> None:
        self.con.execute(
            """
            delete from ops.refresh_claims
            where run_key = $run_key and (len($triggers) = 0 or trigger in (select unnest($triggers::varchar[])))
            """,
            {"run_key": run_key, "triggers": list(triggers)},
        )

    def renew(self, *, run_key: str, now: dt.datetime) -> None:
        self.con.execute("update ops.refresh_claims set claimed_at = ? where run_key = ?", [now, run_key])

    def expire(self, ttl: dt.timedelta, *, now: dt.datetime) -> int:
        expired = self.con.execute(
            "delete from ops.refresh_claims where claimed_at < ? returning member_guid", [now - ttl]
        ).fetchall()
        return len(expired)

    def record(self, attempts: Sequence[Attempt], *, trigger: str, run_id: str) -> None:
        if not attempts:
            return
        import pandas as pd  # inside runs only: the code server never loads pandas (test_definitions.py)

        frame = pd.DataFrame([asdict(a) | {"trigger": trigger, "run_id": run_id} for a in attempts])
        with registered(self.con, "new_attempts", frame):
            self.con.execute("insert into ops.refresh_attempts by name select * from new_attempts")

    @contextmanager
    def visible(self, con: duckdb.DuckDBPyConnection, *, attempts_since: dt.datetime | None) -> Iterator[None]:
        """The ``ops`` tables themselves (``attempts_since`` is the queries' own business here)."""
        con.execute("create or replace temp view refresh_claims as select * from ops.refresh_claims")
        con.execute("create or replace temp view refresh_attempts as select * from ops.refresh_attempts")
        try:
            yield
        finally:
            con.execute("drop view if exists refresh_claims")
            con.execute("drop view if exists refresh_attempts")

    def mirror(self, con: duckdb.DuckDBPyConnection) -> int:
        return 0  # they are the warehouse's own rows


def ledger_for(con: duckdb.DuckDBPyConnection, shared_url: str | None) -> Ledger:
    """The shared Postgres ledger when ``shared_url`` is set, the warehouse's (on ``con``) otherwise."""
    if shared_url is None:
        return WarehouseLedger(con)
    from mx_pipeline.refresh.shared_ledger import SharedLedger  # psycopg only where a shared ledger is used

    return SharedLedger(shared_url)


def _looked_back(policy: RefreshPolicy) -> dt.timedelta:
    """How far back the rules read attempts: the cap's window, the re-read cadence, the hour's budget."""
    return max(policy.attempt_window, policy.needs_user_reread, dt.timedelta(hours=1))


def _params(policy: RefreshPolicy, now: dt.datetime) -> dict:
    return {
        "now": now,
        "default_sla": policy.sla_hours,
        "window_seconds": int(policy.attempt_window.total_seconds()),
        "reread_seconds": int(policy.needs_user_reread.total_seconds()),
    }
