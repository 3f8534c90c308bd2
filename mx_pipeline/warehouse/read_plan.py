"""A transactions read, planned on the warehouse so the reading itself never opens it.

A sync run plans its members' reads on one short connection (:func:`plan_transaction_reads`): each member's window,
and what the late-arrival check needs of the warehouse, written beside the landed files::

    <landing root>/plans/run=<run id>/known_transactions.parquet   (member_guid, guid) of every row held

The reading step then needs only MX and the landing area: it may run on any worker, at any time, while another
process holds the DuckDB file. The check is the one a read made on the warehouse: days before the window read
again in full because they hold a row new since the last complete sync, whether it was stored by a sync that
failed part-way (``stored_late_days``) or arrived in this read (a guid the plan's file lacks).
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from mx_pipeline.landing.area import DateRange, LandingArea
from mx_pipeline.landing.parser import on_parser
from mx_pipeline.warehouse.connection import registered
from mx_pipeline.warehouse.end_users import end_user_ids
from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.sql_literals import sql_literal
from mx_pipeline.warehouse.sync_state import (
    LATE_DAYS_MERGE_GAP,
    MAX_LATE_RANGES,
    TransactionWindow,
    coalesce_days,
    plan_window,
)

KNOWN = "known_transactions.parquet"


@dataclass(frozen=True)
class SyncPolicy:
    """How far back to read: the first sync, the pending reconciliation window, and the change overlap."""

    history_days: int = 730
    reconcile_lookback_days: int = 14  # MX deletes a pending transaction within 14 days
    overlap_days: int = 0  # whole days read again before the watermark's day (sync_state.MX_DAY_MARGIN)


@dataclass(frozen=True)
class ReadPlan:
    """Everything a transactions read needs of the warehouse, taken in one short connection."""

    run_id: str
    landing_url: str
    windows: dict[str, TransactionWindow]  # member guid -> what to ask MX
    known: str | None = None  # the plan's file of rows held, for the members read by change (none: no such member)
    stored_late_days: dict[str, tuple[dt.date, ...]] = field(default_factory=dict)
    end_user_ids: dict[str, str] = field(default_factory=dict)  # user guid -> our id, to settle a 404's user

    @property
    def area(self) -> LandingArea:
        return LandingArea(self.landing_url)

    def late_arrival_ranges(self, member_guid: str, arrived: Iterable[tuple[str, dt.date]] = ()) -> list[DateRange]:
        """Dates before the member's window to list again: those holding a row new since its last complete sync.

        ``arrived``: (guid, date) of the rows this read landed dated before the window; those the warehouse did
        not hold when the read was planned are new. Empty when nothing is new, so the extra read costs nothing.
        """
        window = self.windows[member_guid]
        if window.is_full_read or window.last_synced_at is None:
            return []
        days = set(self.stored_late_days.get(member_guid, ()))
        arrived = list(arrived)
        if arrived and self.known is not None:
            days.update(self._not_known(member_guid, arrived))
        return coalesce_days(days, merge_gap_days=LATE_DAYS_MERGE_GAP, max_ranges=MAX_LATE_RANGES)

    def _not_known(self, member_guid: str, arrived: list[tuple[str, dt.date]]) -> list[dt.date]:
        area = self.area
        known = sql_literal(area.duckdb_path(self.known))
        guids, dates = zip(*arrived, strict=True)

        def dates_of_new_rows(con: duckdb.DuckDBPyConnection) -> list[dt.date]:
            rows = con.execute(
                f"""
                select distinct date from (select unnest($guids::varchar[]) as guid, unnest($dates::date[]) as date)
                where guid not in (select guid from read_parquet({known}) where member_guid = $member)
                """,
                {"guids": list(guids), "dates": list(dates), "member": member_guid},
            ).fetchall()
            return [day for (day,) in rows]

        return on_parser(area, dates_of_new_rows)

    def discard(self) -> None:
        """Delete the plan's files (once its reads are loaded)."""
        area = self.area
        directory = plan_directory(area, self.run_id)
        if area.fs.exists(directory):
            area.fs.rm(directory, recursive=True)


def plan_directory(area: LandingArea, run_id: str) -> str:
    return f"{area.root}/plans/run={run_id}"


def plan_transaction_reads(
    con: duckdb.DuckDBPyConnection,
    area: LandingArea,
    members: list[MemberToFetch],
    policy: SyncPolicy,
    *,
    run_id: str,
) -> ReadPlan:
    """Plan every member's read on ``con``: windows, the late-arrival facts, and the users' own ids."""
    import pandas as pd  # inside runs only: the code server never loads pandas (test_definitions.py)

    windows = {
        member.guid: plan_window(
            con,
            member.guid,
            today=_mx_today(member),
            history_days=policy.history_days,
            lookback_days=policy.reconcile_lookback_days,
            overlap_days=policy.overlap_days,
        )
        for member in members
    }
    by_change = pd.DataFrame(
        [(guid, w.reconcile_from, w.last_synced_at) for guid, w in windows.items() if not w.is_full_read],
        columns=["member_guid", "reconcile_from", "last_synced_at"],
    ).astype({"member_guid": object, "last_synced_at": "datetime64[us, UTC]"})
    known, stored_late_days = None, {}
    if len(by_change):
        known = f"{plan_directory(area, run_id)}/{KNOWN}"
        area.prepare(plan_directory(area, run_id))
        area.attach(con)
        with registered(con, "planned_by_change", by_change):
            con.execute(
                f"""
                copy (select t.member_guid, t.guid from raw.mx_transactions as t
                      where t.member_guid in (select member_guid from planned_by_change) order by t.member_guid)
                to {sql_literal(area.duckdb_path(known))} (format parquet)
                """
            )
            stored_late_days = {
                member: tuple(days)
                for member, days in con.execute(
                    """
                    select t.member_guid, list(distinct t.date order by t.date)
                    from raw.mx_transactions as t join planned_by_change as p using (member_guid)
                    where t.date < p.reconcile_from and t.first_fetched_at > p.last_synced_at
                    group by 1
                    """
                ).fetchall()
            }
    users = end_user_ids(con, sorted({member.user_guid for member in members}))
    return ReadPlan(run_id, area.url, windows, known, stored_late_days, users)


def _mx_today(member: MemberToFetch) -> dt.date:
    """Today by MX's clock where we can tell: a member aggregated "tomorrow" by our clock means MX is ahead."""
    ours = dt.datetime.now(dt.UTC).date()
    theirs = member.successfully_aggregated_at
    return max(ours, theirs.astimezone(dt.UTC).date()) if theirs else ours
