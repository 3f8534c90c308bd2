"""One member's transaction sync: read MX's list in one or two passes (and the days late rows are dated, when
any arrived), stream it in, settle the rows MX stopped listing.

The MX call itself is passed in (``list_transactions``), so this module stays free of HTTP and Dagster:
it decides the window, consumes the pages lazily, and records the outcome.
"""

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mx_pipeline.mx.errors import READ_FAILURES, MxError
from mx_pipeline.mx.pagination import Page
from mx_pipeline.warehouse.api_calls import ApiCallLog
from mx_pipeline.warehouse.connection import Warehouse
from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.page_loader import BATCH_ROWS, TransactionPageLoader
from mx_pipeline.warehouse.sync_state import (
    TRANSACTIONS_READ,
    DateRange,
    TransactionWindow,
    failure_reason,
    late_arrival_ranges,
    mark_vanished,
    plan_window,
    record_sync,
)
from mx_pipeline.warehouse.upsert import UpsertCounts

ListTransactions = Callable[..., Iterator[Page]]  # MX's pages, e.g. MxClient.list_member_transaction_pages
ONE_DAY = dt.timedelta(days=1)
# Rows written at once: five pages. Every write opens and closes the file (a checkpoint, which rewrites the
# primary-key index: the cost grows with the table), so fewer, larger writes; memory stays bounded all the same.
WRITE_BATCH = BATCH_ROWS


@dataclass(frozen=True)
class SyncPolicy:
    """How far back to read: the first sync, the pending reconciliation window, and the change overlap."""

    history_days: int = 730
    reconcile_lookback_days: int = 14  # MX deletes a pending transaction within 14 days
    overlap_days: int = 0  # whole days read again before the watermark's day (sync_state.MX_DAY_MARGIN)


@dataclass(frozen=True)
class MemberSyncResult:
    member_guid: str
    counts: UpsertCounts
    listed: int
    quarantined: int
    removed: int
    error: str | None = None


def sync_member_transactions(
    warehouse: Warehouse,
    member: MemberToFetch,
    list_transactions: ListTransactions,
    *,
    policy: SyncPolicy,
    run_id: str,
    api_log: ApiCallLog | None = None,
    batch_size: int = WRITE_BATCH,
) -> MemberSyncResult:
    """Bring one member's raw transactions up to date with MX; failures are recorded, never raised.

    No warehouse connection is open while MX is asked: the pages are consumed one at a time, each full batch is
    written on its own short connection between two requests, and a sync opens the file three times besides:
    to plan, to write what is left and look for late days, and to write the rest with the outcome.
    """
    return _sync(warehouse, member, list_transactions, policy, run_id, api_log, batch_size)


def _sync(warehouse, member, list_transactions, policy, run_id, api_log, batch_size) -> MemberSyncResult:
    today = _mx_today(member)
    with warehouse.connect() as con:
        window = plan_window(
            con,
            member.guid,
            today=today,
            history_days=policy.history_days,
            lookback_days=policy.reconcile_lookback_days,
            overlap_days=policy.overlap_days,
        )
    listed_guids: set[str] = set()  # every guid a read that lists whole dates listed
    listed_in_full: list[DateRange] = []  # the dates those reads covered, once each read completed
    listed = 0
    error: MxError | None = None
    loader = TransactionPageLoader(
        warehouse, member_guid=member.guid, run_id=run_id, api_log=api_log, batch_size=batch_size
    )

    def read(query: dict, lists_in_full: DateRange | None) -> None:
        nonlocal listed
        for page in list_transactions(**query):
            listed += len(page.items)
            loader.add(page)  # validated in the warehouse a batch at a time; refused records are quarantined
            if lists_in_full:
                listed_guids.update(page.guids())  # a malformed record's too: MX still lists it, it has not vanished
        if lists_in_full:
            listed_in_full.append(lists_in_full)

    try:
        for query, lists_in_full in _passes(window):
            read(query, lists_in_full)
        with warehouse.connect() as con:
            loader.flush(con)  # late rows are looked for in the table
            late = late_arrival_ranges(con, member.guid, window)
        for start, end in late:
            read(*_listing((start, end)))
    except READ_FAILURES as exc:
        error = exc
        loader.reject_page(f"{type(exc).__name__}: {exc}")
    except BaseException:
        loader.flush()  # what arrived is true: it is written before the error goes on
        raise
    removed = 0
    now = dt.datetime.now(dt.UTC)
    with warehouse.connect() as con:
        # Written even when a read failed part-way: those rows are true, and the watermark (moved only by a
        # complete sync) makes the next one read the rest again.
        loader.flush(con)
        if error is None:
            watermark = _later(member.successfully_aggregated_at, loader.latest_updated_at)
            removed = mark_vanished(con, member.guid, listed_in_full, listed_guids, now=now)
            record_sync(
                con, member.guid, member.user_guid, outcome="synced", run_id=run_id, now=now, watermark=watermark,
                aggregated_at=member.successfully_aggregated_at,
            )  # fmt: skip
        else:
            reason = failure_reason(TRANSACTIONS_READ, error)
            record_sync(con, member.guid, member.user_guid, outcome="failed", reason=reason, run_id=run_id, now=now)
    failed = None if error is None else f"{type(error).__name__}: {error}"
    return MemberSyncResult(member.guid, loader.counts, listed, loader.quarantined, removed, failed)


def _later(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return max(a, b) if a and b else a or b


def _passes(window: TransactionWindow) -> list[tuple[dict, DateRange | None]]:
    """(query, the dates it lists in full when it lists every transaction dated there)."""
    if window.is_full_read:
        return [_listing(window.listed_in_full)]
    changed = {
        "from_date": window.history_from,
        "to_date": window.to_date,
        "from_updated_at": window.from_updated_at,
        "to_updated_at": window.to_updated_at,
    }
    if window.changes_cover_recent:  # one read: the changes, which list the recent window in full as well
        return [(changed | {"to_date": window.to_date + ONE_DAY}, window.listed_in_full)]
    return [(changed, None), _listing(window.listed_in_full)]


def _listing(days: DateRange) -> tuple[dict, DateRange]:
    """A by-date query that lists ``days`` in full. It asks a day more on either side: MX's ``to_date`` is "to
    this date (at midnight)", which may leave the day itself out, and a day's rows must never look vanished."""
    start, end = days
    return {"from_date": start - ONE_DAY, "to_date": end + ONE_DAY}, days


def _mx_today(member: MemberToFetch) -> dt.date:
    """Today by MX's clock where we can tell: a member aggregated "tomorrow" by our clock means MX is ahead."""
    ours = dt.datetime.now(dt.UTC).date()
    theirs = member.successfully_aggregated_at
    return max(ours, theirs.astimezone(dt.UTC).date()) if theirs else ours
