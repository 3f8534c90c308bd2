"""One member's transaction sync: read MX's list in one or two passes (and the days late rows are dated, when
any arrived), land it, and let the loader merge it and settle the rows MX stopped listing.

The MX call itself is passed in (``list_transactions``), so this module stays free of HTTP and Dagster: it
reads as its plan says (``warehouse/read_plan.py``), consumes the pages lazily into the landing area
(``mx_pipeline/landing``), and says in the manifest how the read ended. :func:`extract_member_transactions` is a
sync run's reading half and never opens the warehouse (a step plans every member, reads and lands them all, then
loads them at once: ``warehouse/landed.py``); :func:`sync_member_transactions` does all three for one member.
"""

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mx_pipeline.landing.area import LandingArea
from mx_pipeline.landing.transactions import BATCH_ROWS, TransactionLanding
from mx_pipeline.mx.errors import READ_FAILURES, MxError
from mx_pipeline.mx.pagination import Page, read_unshifted
from mx_pipeline.warehouse.api_calls import ApiCallLog
from mx_pipeline.warehouse.connection import Warehouse
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.read_plan import ReadPlan, SyncPolicy, plan_transaction_reads
from mx_pipeline.warehouse.sync_state import TRANSACTIONS_READ, DateRange, TransactionWindow, failure_reason
from mx_pipeline.warehouse.upsert import UpsertCounts

__all__ = ["MemberRead", "MemberSyncResult", "SyncPolicy", "extract_member_transactions", "sync_member_transactions"]

ListTransactions = Callable[..., Iterator[Page]]  # MX's pages, e.g. MxClient.list_member_transaction_pages
ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class MemberRead:
    """One member's read, landed: where, how many records MX listed and how many were refused, and the error."""

    member_guid: str
    directory: str
    listed: int
    refused: int
    error: str | None = None


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
    batch_size: int = BATCH_ROWS,
    area: LandingArea | None = None,
) -> MemberSyncResult:
    """Bring one member's raw transactions up to date with MX: plan its read, read and land it, then load it.

    ``area``: the landing area (by default ``landing/`` beside the warehouse file)."""
    area = area or LandingArea.beside(warehouse.path)
    with warehouse.connect() as con:
        plan = plan_transaction_reads(con, area, [member], policy, run_id=run_id)
    read = extract_member_transactions(area, plan, member, list_transactions, batch_size=batch_size)
    loaded = load_landed(warehouse, area, run_id=run_id, only=[read.directory], api_log=api_log)
    plan.discard()
    return MemberSyncResult(member.guid, loaded.counts, read.listed, loaded.quarantined, loaded.removed, read.error)


def extract_member_transactions(
    area: LandingArea,
    plan: ReadPlan,
    member: MemberToFetch,
    list_transactions: ListTransactions,
    *,
    batch_size: int = BATCH_ROWS,
) -> MemberRead:
    """Read one member's transactions from MX into the landing area, as ``plan`` says; a failed read is landed as
    such, never raised. Only MX and the landing area are used: the plan answers what the warehouse held (which
    early-dated rows are new to it: late arrivals, listed again by date)."""
    window = plan.windows[member.guid]
    listed_guids: set[str] = set()  # every guid a read that lists whole dates listed
    listed_in_full: list[DateRange] = []  # the dates those reads covered, once each read completed
    listed = 0
    error: MxError | None = None
    landing = TransactionLanding(
        area,
        run_id=plan.run_id,
        member_guid=member.guid,
        user_guid=member.user_guid,
        early_before=None if window.is_full_read else window.reconcile_from,
        batch_size=batch_size,
    )

    def read(query: dict, lists_in_full: DateRange | None) -> None:
        nonlocal listed
        listed += read_unshifted(lambda: read_pages(query, lists_in_full))
        if lists_in_full:
            listed_in_full.append(lists_in_full)

    def read_pages(query: dict, lists_in_full: DateRange | None) -> int:
        count = 0
        for page in list_transactions(**query):
            count += len(page.items)
            landing.add(page)  # judged a batch at a time; refused records are quarantined by the loader
            if lists_in_full:
                listed_guids.update(page.guids())  # a malformed record's too: MX still lists it, it has not vanished
            page.discard()
        return count

    try:
        for query, lists_in_full in _passes(window):
            read(query, lists_in_full)
        landing.flush()
        for start, end in plan.late_arrival_ranges(member.guid, landing.early):
            read(*_listing((start, end)))
    except READ_FAILURES as exc:
        error = exc
        landing.reject_page(f"{type(exc).__name__}: {exc}")
    except BaseException as exc:
        # What arrived is true: landed (as a failed read) before the error goes on.
        landing.finish(outcome="failed", reason=failure_reason(TRANSACTIONS_READ, exc))
        raise
    if error is None:
        landing.finish(
            outcome="synced",
            watermark=_later(member.successfully_aggregated_at, landing.latest_updated_at),
            aggregated_at=member.successfully_aggregated_at,
            listed_in_full=listed_in_full,
            listed_guids=listed_guids,
        )
    else:
        landing.finish(outcome="failed", reason=failure_reason(TRANSACTIONS_READ, error))
    failed = None if error is None else f"{type(error).__name__}: {error}"
    return MemberRead(member.guid, landing.directory, listed, landing.refused, failed)


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
