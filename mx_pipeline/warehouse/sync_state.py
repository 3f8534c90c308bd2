"""Per-member transaction sync: the window to read, the rows that vanished upstream, and the outcome.

Incremental reads use ``from_updated_at`` (MX's change filter, date precision) from the watermark of the
last *complete* sync minus an overlap, so a change made late on the watermark's day is read again. Deletions
are different: MX deletes pending transactions (after posting, usually under a new guid, or after 14 days),
and may re-issue a posted one under a new guid, without any update a change filter could see. So a second
read lists everything dated in a recent window, and every live row in that window which MX no longer lists is
marked removed (never deleted); ``fetched_at`` moves with it, since the row now says something new.
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import pandas as pd

PENDING_AHEAD_DAYS = 5  # MX's own default to_date: pending rows can be dated a few days ahead


@dataclass(frozen=True)
class TransactionWindow:
    """What to ask MX for one member's transactions."""

    history_from: dt.date  # oldest date any read covers
    to_date: dt.date
    from_updated_at: dt.date | None  # None: no complete sync yet, read the whole history by date
    reconcile_from: dt.date  # pending rows dated from here to ``to_date`` are checked against MX's list

    @property
    def is_first_sync(self) -> bool:
        return self.from_updated_at is None


def plan_window(
    con: duckdb.DuckDBPyConnection,
    member_guid: str,
    *,
    today: dt.date,
    history_days: int,
    lookback_days: int,
    overlap_days: int,
) -> TransactionWindow:
    """The read plan for a member, from its watermark and its oldest pending row still live."""
    watermark, oldest_pending = con.execute(
        """
        select
            (select transactions_watermark from ops.member_sync where member_guid = $member),
            (select min(date) from raw.mx_transactions
             where member_guid = $member and status = 'PENDING' and removed_at is null)
        """,
        {"member": member_guid},
    ).fetchone()
    history_from = today - dt.timedelta(days=history_days)
    reconcile_from = today - dt.timedelta(days=lookback_days)
    if oldest_pending is not None:
        # A pending row older than the look-back would otherwise never be checked again: widen to it.
        reconcile_from = max(history_from, min(reconcile_from, oldest_pending))
    from_updated_at = None if watermark is None else watermark.date() - dt.timedelta(days=overlap_days)
    return TransactionWindow(
        history_from=history_from,
        to_date=today + dt.timedelta(days=PENDING_AHEAD_DAYS),
        from_updated_at=from_updated_at,
        reconcile_from=reconcile_from,
    )


def mark_vanished(
    con: duckdb.DuckDBPyConnection,
    member_guid: str,
    window: TransactionWindow,
    listed_guids: Iterable[str],
    *,
    now: dt.datetime,
) -> int:
    """Mark removed every live row of the member dated in the window that MX did not list."""
    listed = pd.DataFrame({"guid": pd.Series(list(listed_guids), dtype=object)})
    con.register("listed_guids", listed)
    try:
        (marked,) = con.execute(
            """
            update raw.mx_transactions as t set removed_at = $now, fetched_at = $now
            where t.member_guid = $member
              and t.removed_at is null
              and t.date between $from and $to
              and t.guid not in (select guid from listed_guids)
            """,
            {"now": now, "member": member_guid, "from": window.reconcile_from, "to": window.to_date},
        ).fetchone()
    finally:
        con.unregister("listed_guids")
    return int(marked)


def record_sync(
    con: duckdb.DuckDBPyConnection,
    member_guid: str,
    user_guid: str,
    *,
    outcome: str,
    run_id: str,
    now: dt.datetime,
    reason: str | None = None,
    watermark: dt.datetime | None = None,
) -> None:
    """Record one member's outcome (synced | skipped | failed); only a sync may move the watermark forward."""
    synced = outcome == "synced"
    con.execute(
        """
        insert into ops.member_sync as s (member_guid, user_guid, transactions_watermark, last_synced_at,
                                          last_outcome, last_reason, last_attempt_at, last_run_id)
        values ($member, $user, $watermark, $synced_at, $outcome, $reason, $now, $run)
        on conflict (member_guid) do update set
            user_guid = excluded.user_guid,
            transactions_watermark = greatest(s.transactions_watermark, excluded.transactions_watermark),
            last_synced_at = coalesce(excluded.last_synced_at, s.last_synced_at),
            last_outcome = excluded.last_outcome,
            last_reason = excluded.last_reason,
            last_attempt_at = excluded.last_attempt_at,
            last_run_id = excluded.last_run_id
        """,
        {
            "member": member_guid,
            "user": user_guid,
            "watermark": watermark if synced else None,
            "synced_at": now if synced else None,
            "outcome": outcome,
            "reason": reason,
            "now": now,
            "run": run_id,
        },
    )
