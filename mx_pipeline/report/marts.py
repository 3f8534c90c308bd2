"""What the report shows, read from the analysts' file (``analytics.duckdb``), read-only, money as ``Decimal``."""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb

from mx_pipeline.lifecycle.notifier import NotificationState
from mx_pipeline.lifecycle.routes import Route

MONTHS_SHOWN = 12
ATTENTION_ROWS = 25  # members listed as needing a look, worst first


@dataclass(frozen=True)
class Spend:
    """Money spent in one month on one of our parent categories (refunds netted), in one currency."""

    month: dt.date
    currency: str
    category: str
    amount: Decimal


@dataclass(frozen=True)
class Member:
    """A member worth a look: stale, its last sync failed, or its user must act."""

    user_id: str
    institution: str
    connection_status: str
    route: str
    hours_since_success: float | None
    last_sync_outcome: str
    notification_state: str


@dataclass(frozen=True)
class Health:
    members: int
    stale: int  # older than their SLA, retired ones aside
    failed_syncs: int  # last sync failed
    retired: int
    open_notifications: int  # an episode of trouble the user was told about, still open
    by_route: dict[str, int]  # every route, 0 too
    by_status: dict[str, int]  # MX connection_status as read; "none" before a first read
    by_notification: dict[str, int]  # each member's latest notification, every state, 0 too
    attention: list[Member]


@dataclass(frozen=True)
class Marts:
    source: Path
    built_at: dt.datetime | None  # when member_health was built
    spend: list[Spend]  # the latest MONTHS_SHOWN months, oldest first
    health: Health | None  # None: no members yet

    @property
    def is_empty(self) -> bool:
        return not self.spend and self.health is None


def read_marts(path: Path) -> Marts:
    """The marts in ``path``; a missing file or one without marts reads as empty (nothing materialized yet)."""
    path = Path(path)
    if not path.exists():
        return Marts(path, None, [], None)
    with duckdb.connect(str(path), read_only=True) as con:
        tables = {name for (name,) in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'marts'"
        ).fetchall()}  # fmt: skip
        spend = _spend(con) if "monthly_spend_by_category" in tables else []
        health, built_at = _health(con) if "member_health" in tables else (None, None)
    return Marts(path, built_at, spend, health)


def _spend(con: duckdb.DuckDBPyConnection) -> list[Spend]:
    rows = con.execute(
        """
        with recent as (
            select distinct month from marts.monthly_spend_by_category order by month desc limit ?
        )
        select month, currency_code, coalesce(parent_category_name, category_name), sum(spend)
        from marts.monthly_spend_by_category
        where month in (select month from recent)
        group by all
        order by 1, 2, 3
        """,
        [MONTHS_SHOWN],
    ).fetchall()
    return [Spend(month, currency, category, Decimal(amount)) for month, currency, category, amount in rows]


def _health(con: duckdb.DuckDBPyConnection) -> tuple[Health | None, dt.datetime | None]:
    members, stale, failed, retired, told, built_at = con.execute(
        """
        select count(*),
               count(*) filter (where is_stale and retired_at is null),
               count(*) filter (where last_sync_outcome = 'failed'),
               count(*) filter (where retired_at is not null),
               count(*) filter (where open_notification_at is not null),
               max(built_at)
        from marts.member_health
        """
    ).fetchone()
    if not members:
        return None, None
    by_route = _counts(con, "coalesce(route, 'unrouted')")
    by_notification = _counts(con, "notification_state", "notification_state is not null")
    health = Health(
        members=members,
        stale=stale,
        failed_syncs=failed,
        retired=retired,
        open_notifications=told,
        by_route={r.value: by_route.pop(r.value, 0) for r in Route} | by_route,
        by_status=_counts(con, "coalesce(connection_status, 'none')"),
        by_notification={s.value: by_notification.pop(s.value, 0) for s in NotificationState} | by_notification,
        attention=_attention(con),
    )
    return health, built_at


def _counts(con: duckdb.DuckDBPyConnection, expression: str, where: str = "true") -> dict[str, int]:
    rows = con.execute(
        f"select {expression}, count(*) from marts.member_health where {where} group by 1 order by 2 desc, 1"
    ).fetchall()
    return dict(rows)


def _attention(con: duckdb.DuckDBPyConnection) -> list[Member]:
    rows = con.execute(
        f"""
        select coalesce(user_id, user_guid), coalesce(institution_code, ''), coalesce(connection_status, 'none'),
               coalesce(route, 'unrouted'), hours_since_success, coalesce(last_sync_outcome, ''),
               coalesce(notification_state, '')
        from marts.member_health
        where retired_at is null
          and (is_stale or last_sync_outcome = 'failed' or route in ('needs_mfa', 'needs_reconnect', 'degraded'))
        order by last_sync_outcome = 'failed' desc, hours_since_success desc nulls first, 1
        limit {ATTENTION_ROWS}
        """
    ).fetchall()
    return [Member(*row) for row in rows]
