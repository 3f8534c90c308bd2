"""The loader: merge landed members (``mx_pipeline/landing``) into their raw table in bulk.

A :class:`LandedTable` says which: its directory in the landing area, its raw table, and how a member's read is
settled once its rows are merged. ``raw.mx_transactions`` is the default (:data:`TRANSACTIONS_LANDED`, settled
below); the other landed reads are settled in ``landed_reads.py``.

Members are merged in groups of about ``GROUP_ROWS`` rows, each group in one transaction of a fixed number of
statements over its Parquet parts: refused rows to ``ops.quarantine`` with their reasons, the rest upserted
(newer wins, an unchanged re-read is not rewritten), then each member settled as its read ended (rows MX stopped
listing marked removed, the outcome and watermark recorded) and the directory noted in ``ops.landed_loads``.
Only then are its files deleted, so:

- a loader killed before its commit leaves the files, and the next load does the work again;
- a loader killed after its commit, before the delete, leaves files ``ops.landed_loads`` names: the next load
  deletes them unread, so nothing is quarantined or settled twice;
- every complete member is loaded, whichever run landed it: a run killed after its reads but before its load
  is loaded by the next one, oldest read first; a step's load merges every table's landed reads
  (``landed_reads.EVERY_LANDED``), so the steps queued behind it for the warehouse find theirs merged;
- a member whose files cannot be read is set aside (``unloadable.json``, the reason beside its files), quarantined
  and recorded as a failed read; it never stops the others, and the next sync reads it again;
- a loader that fails for its own reasons (an interrupt, a broken database, a conflict) sets nothing aside: the load
  fails and leaves every file for the next. Out of memory, a group is loaded member by member.

A listing judges only rows fetched before it ended: an older member directory loaded beside a newer one never
marks the newer rows removed, and only the newest directory of a member in a group settles it.
"""

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import duckdb

from mx_pipeline.landing.area import LandedMember, LandingArea, Manifest
from mx_pipeline.landing.transactions import TABLE
from mx_pipeline.warehouse.api_calls import ApiCallLog
from mx_pipeline.warehouse.connection import Warehouse
from mx_pipeline.warehouse.quarantine import QuarantinedRecord, write_quarantine
from mx_pipeline.warehouse.sql_literals import sql_list
from mx_pipeline.warehouse.sync_state import (
    TRANSACTIONS_READ,
    SyncOutcome,
    VanishedListing,
    mark_vanished_in_bulk,
    record_sync,
    record_syncs,
)
from mx_pipeline.warehouse.tables import TRANSACTIONS, TableSpec
from mx_pipeline.warehouse.upsert import UpsertCounts, merge, merge_transaction

GROUP_ROWS = 250_000  # rows merged in one transaction: whole row groups appended
# DuckDB's buffer pool while loading. The merge holds narrow columns only and streams whole rows from Parquet into
# the table, so a member of any size loads in it. Loaded alone, 975,682 transactions of 40 members take 143 MiB
# above the process in 24.5 s (128 MB: 208 MiB, 25.5 s); 54,804 of 40 members 124 MiB, 2.2 s.
MEMORY_LIMIT = "64MB"
_log = logging.getLogger(__name__)
KEEP_LOADS = dt.timedelta(days=7)  # ops.landed_loads rows kept: longer than any leftover waits for a load


@dataclass(frozen=True)
class Settled:
    """What settling a group's reads did besides merging rows."""

    removed: int = 0  # rows marked removed because a listing in full no longer had them
    retired: tuple[str, ...] = ()  # records retired because a complete list no longer had them
    reinstated: tuple[str, ...] = ()  # retired records a list showed again
    owners_retired: tuple[str, ...] = ()  # whose read MX confirmed gone: a user deleted at MX


Settle = Callable[[duckdb.DuckDBPyConnection, LandingArea, list[LandedMember], dt.datetime], Settled]


def record_member_read_failed(con: duckdb.DuckDBPyConnection, manifest: Manifest, reason: str, now: dt.datetime):
    """A member's read whose files could not be loaded failed: the member is read again by its next sync."""
    record_sync(con, manifest.member_guid, manifest.user_guid, outcome="failed", reason=reason, run_id=manifest.run_id,
                now=now)  # fmt: skip


@dataclass(frozen=True)
class LandedTable:
    """A raw table extraction lands: where its members land, and how a member's read is settled once its rows are
    merged (``settle`` gets the newest directory of each member in a group, inside the group's transaction)."""

    name: str  # its directory in the landing area, and its name in ops.landed_loads
    spec: TableSpec
    read: str  # the read a member's files come from (sync_state's *_READ), named when they cannot be loaded
    settle: Settle
    record_failed: Callable[[duckdb.DuckDBPyConnection, Manifest, str, dt.datetime], None] = record_member_read_failed


@dataclass(frozen=True)
class LoadReport:
    """What one load did."""

    members: tuple[str, ...] = ()  # whose reads were merged: member guids (user guids for users' lists)
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    quarantined: int = 0
    settled: Settled = field(default_factory=Settled)
    already_loaded: int = 0  # directories found again after their commit: deleted unread
    committed: tuple[LandedMember, ...] = ()  # the directories whose load committed: their files may go
    alongside: dict[str, int] = field(default_factory=dict)  # reads of the other tables merged by the same load

    @property
    def removed(self) -> int:
        return self.settled.removed

    def __add__(self, other: "LoadReport") -> "LoadReport":
        return LoadReport(
            self.members + other.members,
            self.counts + other.counts,
            self.quarantined + other.quarantined,
            Settled(
                self.settled.removed + other.settled.removed,
                self.settled.retired + other.settled.retired,
                self.settled.reinstated + other.settled.reinstated,
                self.settled.owners_retired + other.settled.owners_retired,
            ),
            self.already_loaded + other.already_loaded,
            self.committed + other.committed,
        )


def load_landed(
    warehouse: Warehouse,
    area: LandingArea,
    *,
    run_id: str,
    only: Iterable[str] | None = None,
    api_log: ApiCallLog | None = None,
    group_rows: int = GROUP_ROWS,
    table: LandedTable | None = None,
    alongside: Sequence[LandedTable] = (),
) -> LoadReport:
    """Merge every complete member directory of ``table`` (transactions by default), or those in ``only``, on one
    connection; ``run_id``: the loading run.

    ``alongside``: every landed table, in the order their reads depend on each other (``table`` among them). The
    load merges the landed reads of all of them, whoever landed them: the load steps queued behind it find their
    reads merged, so none waits through more than the load under way when it queued. The report is ``table``'s,
    with how many reads of each other table it merged."""
    table = table or TRANSACTIONS_LANDED
    if alongside and table not in alongside:
        raise ValueError(f"{table.name} is loaded in the order of {[each.name for each in alongside]}: name it there")
    pending = {each: area.landed(each.name) for each in alongside or (table,)}
    if only is not None:
        wanted = set(only)
        pending[table] = [member for member in pending[table] if member.directory in wanted]
    if not any(pending.values()) and not (api_log and api_log.pending):
        return LoadReport()
    reports = {}
    with warehouse.connect() as con:
        con.execute("set memory_limit = ?", [MEMORY_LIMIT])
        if api_log:  # first: what the run asked of MX is on record even when a load fails
            api_log.flush(con)
        area.attach(con)
        for each, landed in pending.items():
            groups = (_load_each_or_set_aside(con, area, each, group, run_id) for group in _groups(landed, group_rows))
            reports[each] = sum(groups, start=LoadReport())
        con.execute("delete from ops.landed_loads where loaded_at < $before", {"before": _now(con) - KEEP_LOADS})
    # Committed: their files go, with the warehouse already free for others.
    area.remove([member for report in reports.values() for member in report.committed])
    others = {
        each.name: len(report.members) for each, report in reports.items() if each is not table and report.members
    }
    return replace(reports.get(table, LoadReport()), alongside=others)


# Failures of the loader, not of the files it loads: a member is never set aside for them. Out of memory is not one
# of them: a member that runs out of the loader's memory alone does so at every load, and must not stop the others.
_NOT_THE_FILES = (duckdb.InterruptException, duckdb.FatalException, duckdb.TransactionException)


def _load_each_or_set_aside(con, area: LandingArea, table: LandedTable, group: list[LandedMember], run_id: str):
    """Load the group; when it fails, each member alone, so files that cannot be loaded (a truncated part, a
    member too large for the loader's memory) stop only their member. Such a member is set aside with the reason,
    quarantined, and its read recorded as failed (the watermark did not move: the next sync reads it again); the
    others load. A failure of the loader itself (an interrupt, a broken database, a conflict) fails the load with
    every file left for the next one."""
    try:
        return _load_group(con, area, table, group, run_id)
    except _NOT_THE_FILES:
        raise
    except duckdb.Error as exc:
        if len(group) > 1:
            each = (_load_each_or_set_aside(con, area, table, [member], run_id) for member in group)
            return sum(each, start=LoadReport())
        _set_aside(con, area, table, group[0], run_id, exc)
        return LoadReport()


def _set_aside(con, area: LandingArea, table: LandedTable, member: LandedMember, run_id: str, exc: Exception):
    reason = f"landed files could not be loaded ({member.directory}): {type(exc).__name__}: {exc}"
    _log.error(f"{reason}; set aside for a person to look at, and the member is read again by its next sync")
    manifest = member.manifest
    with _transaction(con):
        now = _now(con)
        write_quarantine(con, [QuarantinedRecord(table.spec.name, reason, member_guid=manifest.member_guid)],
                         run_id=run_id, now=now)  # fmt: skip
        table.record_failed(con, manifest, f"{table.read} load failed: {reason}", now)
    area.set_aside(member, reason)


def _groups(landed: list[LandedMember], group_rows: int) -> Iterator[list[LandedMember]]:
    group, rows = [], 0
    for member in landed:
        if group and rows + member.manifest.rows > group_rows:
            yield group
            group, rows = [], 0
        group.append(member)
        rows += member.manifest.rows
    if group:
        yield group


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("begin transaction")
    try:
        yield
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def _load_group(con, area: LandingArea, table: LandedTable, group: list[LandedMember], run_id: str) -> LoadReport:
    with merge_transaction(con):
        now = _now(con)  # the transaction's own time: first_fetched_at of what it inserts, never after it
        fresh = _not_loaded_yet(con, table, group)
        parts = [area.duckdb_path(member.part(name)) for member in fresh for name in member.manifest.parts]
        counts, quarantined = UpsertCounts(), 0
        if parts:
            # _row names a row by its part and its place there, so the merge can read it back by name
            con.execute(f"""create temp view landed as select *, (file_index::bigint << 32) + file_row_number as _row
                from read_parquet({sql_list(parts)}, hive_partitioning = 0)""")
            quarantined += _quarantine_refused(con, table, now)
            columns = ", ".join(table.spec.columns)
            counts = merge(con, table.spec, f"(select {columns}, _ordinal, _row from landed where reason is null)")
            con.execute("drop view landed")
        settling = {member.manifest.owner: member for member in fresh}  # the newest of each member
        for member in fresh:
            quarantined += _quarantine_unreadable(con, table, member, now)
        settled = table.settle(con, area, list(settling.values()), now)
        if fresh:
            con.executemany(
                "insert into ops.landed_loads values (?, ?, ?, ?, ?, ?)",
                [(table.name, m.manifest.run_id, m.manifest.owner, now, run_id, m.manifest.rows) for m in fresh],
            )
    members = tuple(member.manifest.owner for member in fresh)
    return LoadReport(members, counts, quarantined, settled, len(group) - len(fresh), committed=tuple(group))


def _not_loaded_yet(con: duckdb.DuckDBPyConnection, table: LandedTable, group: list[LandedMember]):
    loaded = set(
        con.execute(
            "select run_id, member_guid from ops.landed_loads where table_name = $table"
            " and list_contains($runs, run_id)",
            {"table": table.name, "runs": sorted({m.manifest.run_id for m in group})},
        ).fetchall()
    )
    return [m for m in group if (m.manifest.run_id, m.manifest.owner) not in loaded]


def _quarantine_refused(con: duckdb.DuckDBPyConnection, table: LandedTable, now: dt.datetime) -> int:
    """Each refused record once per read: a list read again after its pages shifted (``read_unshifted``) lands the
    records it had already landed, and a record MX lists twice is one record."""
    (refused,) = con.execute(
        """
        insert into ops.quarantine (quarantined_at, run_id, table_name, record_guid, member_guid, reason, payload)
        select distinct $now, run_id, $table,
            case when json_type(payload, '$.guid') = 'VARCHAR' then payload ->> 'guid' end, _member, reason, payload
        from landed where reason is not null
        """,
        {"now": now, "table": table.spec.name},
    ).fetchone()
    return refused


def _quarantine_unreadable(con, table: LandedTable, member: LandedMember, now: dt.datetime) -> int:
    manifest = member.manifest
    records = [
        QuarantinedRecord(table.spec.name, why, member_guid=manifest.member_guid) for why in manifest.page_rejects
    ]
    return write_quarantine(con, records, run_id=manifest.run_id, now=now)


def _settle_transactions(con, area: LandingArea, members: list[LandedMember], now: dt.datetime) -> Settled:
    """Mark what each complete read no longer listed, and record how every read ended, a few statements for all
    the members (one each would hold the warehouse ~10 ms a member)."""
    synced = [m for m in members if m.manifest.outcome == "synced"]
    listings = [
        VanishedListing(m.manifest.member_guid, m.manifest.listed_in_full, area.duckdb_path(m.listed),
                        m.manifest.finished_at)
        for m in synced
    ]  # fmt: skip
    removed = mark_vanished_in_bulk(con, listings, now=now)
    record_syncs(con, [_outcome(m.manifest) for m in members], now=now)
    return Settled(removed=removed)


def _outcome(manifest: Manifest) -> SyncOutcome:
    if manifest.outcome != "synced":
        return SyncOutcome(manifest.member_guid, manifest.user_guid, "failed", manifest.run_id, manifest.reason)
    return SyncOutcome(manifest.member_guid, manifest.user_guid, "synced", manifest.run_id,
                       watermark=manifest.watermark, aggregated_at=manifest.aggregated_at)  # fmt: skip


TRANSACTIONS_LANDED = LandedTable(TABLE, TRANSACTIONS, TRANSACTIONS_READ, _settle_transactions)


def _now(con: duckdb.DuckDBPyConnection) -> dt.datetime:
    ((now,),) = con.execute("select current_timestamp").fetchall()
    return now
