"""Per-member sync: the window of transactions to read, the rows that vanished upstream, and the outcome.

Incremental reads use ``from_updated_at`` (MX's change filter, date precision) from the day the watermark of
the last *complete* sync falls on in any time zone MX may count days in (``MX_DAY_MARGIN``), so a change made
late on the watermark's day is read again, but nothing a whole day older. MX allows that filter a range of at
most 6 months: a member away longer (waiting months for a reconnect) is read again in full by date, which also
settles everything it covers. When every row we hold dated in the recent window was updated on or after that
day (the days after a member connected: its whole history carries that day's ``updated_at``), the changes read
lists the window in full too, and is the only read.

Deletions are different: MX deletes pending transactions (after posting, usually under a new guid, or after 14
days), and may re-issue a posted one under a new guid, without any update a change filter could see. So every
read that lists *everything* dated in a range (the recent window, a full read) marks removed (never deletes)
each live row in that range which MX no longer lists; ``fetched_at`` moves with it, since the row now says
something new. A copy re-issued long after its date arrives by the change filter as a guid new to us, dated
before the recent window: the days such rows are dated are listed again by date, and settled the same way.
Being no longer listed is the only reason a row leaves the marts, so two identical purchases MX still lists
are two, whatever batches or syncs they arrived in.

A read that fails after the transport's retries (a member's status, accounts or transactions, a user's member
list) is recorded with the read and the reason (``ops.member_sync``, ``ops.user_sync``); within one run the first
failure of a member stands whatever its later reads do, so the run's check and ``member_health`` tell it. The
freshness sensor reads failed members and users again once ``backoff`` has passed since their last attempt.
"""

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import duckdb

from mx_pipeline.warehouse.connection import registered
from mx_pipeline.warehouse.refresh_state import Ledger, WarehouseLedger
from mx_pipeline.warehouse.removal import mark_removed
from mx_pipeline.warehouse.sql_literals import sql_list

PENDING_AHEAD_DAYS = 5  # MX's own default to_date: pending rows can be dated a few days ahead
# MX on from_updated_at/to_updated_at: "Maximum date range limit is 6 months"; six months are never under 181 days.
MAX_UPDATED_AT_RANGE_DAYS = 180
# MX does not say in which time zone its dates are days; UTC-12 is the furthest behind any is: an instant falls on
# a day no earlier than its UTC date 12 hours before.
MX_DAY_MARGIN = dt.timedelta(hours=12)
# Late rows' days at most this many days apart are listed again in one read; at most this many reads a sync.
LATE_DAYS_MERGE_GAP = 7
MAX_LATE_RANGES = 4

DateRange = tuple[dt.date, dt.date]  # inclusive
RETRY_TAG = "sync_retry"  # the trigger of a run that reads again what failed to sync
# The reads a sync is made of, as a failure's reason names them.
STATUS_READ, ACCOUNTS_READ, TRANSACTIONS_READ, MEMBER_LIST_READ = "status", "accounts", "transactions", "member list"
USER_LIST_READ = "user list"


@dataclass(frozen=True)
class TransactionWindow:
    """What to ask MX for one member's transactions."""

    history_from: dt.date  # oldest date any read covers
    to_date: dt.date
    # None: read the whole history by date (no complete sync yet, or the watermark is past MX's 6 months)
    from_updated_at: dt.date | None
    to_updated_at: dt.date  # sent with from_updated_at, so the range MX judges is the one checked here
    reconcile_from: dt.date  # pending rows dated from here to ``to_date`` are checked against MX's list
    last_synced_at: dt.datetime | None = None  # end of the last complete sync: rows first fetched since are new
    # The changes read lists the recent window in full: every row we hold dated there (live or removed) was
    # updated since ``from_updated_at``, and a row new to us was made after the last complete sync.
    changes_cover_recent: bool = False

    @property
    def is_full_read(self) -> bool:
        return self.from_updated_at is None

    @property
    def listed_in_full(self) -> DateRange:
        """The dates one by-date read lists in full: the whole history, or the reconcile window."""
        return (self.history_from if self.is_full_read else self.reconcile_from), self.to_date


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
    ((watermark, last_synced_at, oldest_pending),) = con.execute(
        """
        select
            (select transactions_watermark from ops.member_sync where member_guid = $member),
            (select last_synced_at from ops.member_sync where member_guid = $member),
            (select min(date) from raw.mx_transactions
             where member_guid = $member and status = 'PENDING' and removed_at is null)
        """,
        {"member": member_guid},
    ).fetchall()
    history_from = today - dt.timedelta(days=history_days)
    look_back_from = reconcile_from = today - dt.timedelta(days=lookback_days)
    if oldest_pending is not None:
        # A pending row older than the look-back would otherwise never be checked again: widen to it.
        reconcile_from = max(history_from, min(reconcile_from, oldest_pending))
    from_updated_at = None
    if watermark is not None:
        from_updated_at = (watermark - MX_DAY_MARGIN).astimezone(dt.UTC).date() - dt.timedelta(days=overlap_days)
    if from_updated_at is not None and (today - from_updated_at).days > MAX_UPDATED_AT_RANGE_DAYS:
        from_updated_at = None  # further back than MX's change filter reaches: read everything by date
    to_date = today + dt.timedelta(days=PENDING_AHEAD_DAYS)
    covered = (
        from_updated_at is not None
        and reconcile_from == look_back_from  # no older pending row: the last complete sync listed these days
        and _updated_since(con, member_guid, (reconcile_from, to_date), from_updated_at)
    )
    return TransactionWindow(
        history_from=history_from,
        to_date=to_date,
        from_updated_at=from_updated_at,
        to_updated_at=today,
        reconcile_from=reconcile_from,
        last_synced_at=last_synced_at,
        changes_cover_recent=covered,
    )


def _updated_since(con: duckdb.DuckDBPyConnection, member_guid: str, days: DateRange, since: dt.date) -> bool:
    """Whether every row of the member dated in ``days`` (a day more on either side), live or removed, carries
    an ``updated_at`` MX counts on ``since`` or later."""
    ((oldest, unknown),) = con.execute(
        """
        select min(updated_at), count(*) filter (where updated_at is null) from raw.mx_transactions
        where member_guid = $member and date between $from and $to
        """,
        {"member": member_guid, "from": days[0] - dt.timedelta(days=1), "to": days[1] + dt.timedelta(days=1)},
    ).fetchall()
    return not unknown and (oldest is None or (oldest - MX_DAY_MARGIN).astimezone(dt.UTC).date() >= since)


def coalesce_days(days: Iterable[dt.date], *, merge_gap_days: int, max_ranges: int) -> list[DateRange]:
    """Sorted inclusive ranges covering ``days``: days at most ``merge_gap_days`` apart share a range, and the
    closest ranges merge until at most ``max_ranges`` are left."""
    ranges: list[list[dt.date]] = []
    for day in sorted(set(days)):
        if ranges and (day - ranges[-1][1]).days <= merge_gap_days:
            ranges[-1][1] = day
        else:
            ranges.append([day, day])
    while len(ranges) > max(max_ranges, 1):
        gaps = [(ranges[i + 1][0] - ranges[i][1], i) for i in range(len(ranges) - 1)]
        _, i = min(gaps)
        ranges[i : i + 2] = [[ranges[i][0], ranges[i + 1][1]]]
    return [(start, end) for start, end in ranges]


@dataclass(frozen=True)
class VanishedListing:
    """One read that listed whole dates: what :func:`mark_vanished_in_bulk` judges the member's rows by."""

    member_guid: str
    listed_in_full: tuple[DateRange, ...]  # the dates it listed in full
    listed: str  # a Parquet file of the guids it listed (DuckDB's path)
    listed_at: dt.datetime  # when it ended: only rows fetched by then are its to judge


def mark_vanished_in_bulk(con: duckdb.DuckDBPyConnection, listings: list[VanishedListing], *, now: dt.datetime) -> int:
    """Mark removed every live row of each listing's member, dated in a range MX listed in full, that the listing
    lacks, in one statement. Only rows fetched by the listing's end are judged: a row fetched after it (a newer read
    loaded in the same batch) is not the listing's to judge. One listing a member."""
    import pandas as pd  # inside runs only: the code server never loads pandas (test_definitions.py)

    ranges = pd.DataFrame(
        [(x.member_guid, start, end, x.listed_at) for x in listings for start, end in x.listed_in_full],
        columns=["member_guid", "from_date", "to_date", "listed_at"],
    ).astype({"member_guid": object})
    if ranges.empty:
        return 0
    ranges["listed_at"] = pd.to_datetime(ranges["listed_at"], utc=True)
    files = pd.DataFrame([(x.listed, x.member_guid) for x in listings], columns=["filename", "member_guid"])
    with registered(con, "vanish_ranges", ranges), registered(con, "vanish_files", files):
        con.execute(
            f"""
            create or replace temp table vanish_listed as
            select f.member_guid, l.guid
            from read_parquet({sql_list(list(files["filename"]))}, filename = true, hive_partitioning = 0) as l
            join vanish_files as f using (filename)
            """
        )
        # No cleanup on a failure: the caller's transaction is aborted then, and its rollback drops the table (a
        # statement there would fail too, hiding the failure the loader sets a member aside for).
        marked = mark_removed(
            con,
            """
            t.removed_at is null
            and exists (select 1 from vanish_ranges as r where r.member_guid = t.member_guid
                        and t.date between r.from_date and r.to_date and t.fetched_at <= r.listed_at)
            and not exists (select 1 from vanish_listed as l where l.member_guid = t.member_guid
                            and l.guid = t.guid)
            """,
            now=now,
            # seen gone when the listing ended: a later read that lists the row again is newer, an earlier not
            observed_at="(select max(r.listed_at) from vanish_ranges as r where r.member_guid = t.member_guid)",
        )
        con.execute("drop table vanish_listed")
    return marked


def failure_reason(read: str, exc: Exception) -> str:
    return f"{read} read failed: {type(exc).__name__}: {exc}"


def read_again_next_run(con: duckdb.DuckDBPyConnection, member_guids: Iterable[str]) -> None:
    """These members are read on their next run even if MX has not aggregated them since (never skipped as
    unchanged): what we hold of them may be wrong."""
    con.execute(
        "update ops.member_sync set synced_aggregated_at = null where member_guid in (select unnest($members))",
        {"members": sorted(set(member_guids))},
    )


@dataclass(frozen=True)
class SyncOutcome:
    """How one member's read ended (synced | skipped | failed), as :func:`record_syncs` records it."""

    member_guid: str
    user_guid: str
    outcome: str
    run_id: str
    reason: str | None = None
    watermark: dt.datetime | None = None  # a sync's new transactions watermark
    aggregated_at: dt.datetime | None = None  # MX's successfully_aggregated_at the sync read under


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
    aggregated_at: dt.datetime | None = None,
) -> None:
    """Record one member's outcome: :func:`record_syncs` of one."""
    record_syncs(con, [SyncOutcome(member_guid, user_guid, outcome, run_id, reason, watermark, aggregated_at)], now=now)


def record_syncs(con: duckdb.DuckDBPyConnection, outcomes: list[SyncOutcome], *, now: dt.datetime) -> None:
    """Record each member's outcome, in one statement (one outcome per member); only a sync may move the watermark
    forward.

    A failure recorded earlier in the same run stands (a later failure adds its reason): the member's status or
    accounts could not be read even if its transactions then were. ``aggregated_at``: MX's
    successfully_aggregated_at the sync read under; kept only while no read of the member has failed since, so a
    member is skipped as unchanged (``members.py``) only when its last complete sync saw that aggregation.
    """
    if not outcomes:
        return
    rows = [_sync_row(o, now) for o in outcomes]
    columns = {name: [row[i] for row in rows] for i, name in enumerate(_SYNC_COLUMNS)}
    unnested = ", ".join(f"unnest(${name}::{_SYNC_TYPES.get(name, 'varchar')}[]) as {name}" for name in _SYNC_COLUMNS)
    # Lists bound as parameters rather than a registered frame: a caller may still hold a result on ``con``.
    con.execute(
        f"""
            insert into ops.member_sync as s ({", ".join(_SYNC_COLUMNS)})
            select {unnested}
            on conflict (member_guid) do update set
                user_guid = excluded.user_guid,
                transactions_watermark = greatest(s.transactions_watermark, excluded.transactions_watermark),
                last_synced_at = coalesce(excluded.last_synced_at, s.last_synced_at),
                synced_aggregated_at = case
                    when excluded.last_outcome = 'skipped' then s.synced_aggregated_at
                    when s.last_outcome = 'failed' and s.last_run_id = excluded.last_run_id then null
                    else excluded.synced_aggregated_at end,
                last_outcome = case when s.last_outcome = 'failed' and s.last_run_id = excluded.last_run_id
                                    then 'failed' else excluded.last_outcome end,
                last_reason = case when s.last_outcome = 'failed' and s.last_run_id = excluded.last_run_id
                                   then s.last_reason || coalesce('; ' || case when excluded.last_outcome = 'failed'
                                                                               then excluded.last_reason end, '')
                                   else excluded.last_reason end,
                last_attempt_at = excluded.last_attempt_at,
                last_run_id = excluded.last_run_id
            """,
        columns,
    )


def _sync_row(o: SyncOutcome, now: dt.datetime) -> tuple:
    synced = o.outcome == "synced"
    return (
        o.member_guid, o.user_guid, o.watermark if synced else None, now if synced else None, o.outcome, o.reason,
        now, o.run_id, o.aggregated_at if synced else None,
    )  # fmt: skip


_SYNC_TYPES = {c: "timestamptz" for c in ("transactions_watermark", "last_synced_at", "last_attempt_at",
                                          "synced_aggregated_at")}  # fmt: skip
_SYNC_COLUMNS = (
    "member_guid", "user_guid", "transactions_watermark", "last_synced_at", "last_outcome", "last_reason",
    "last_attempt_at", "last_run_id", "synced_aggregated_at",
)  # fmt: skip


def record_member_lists(
    con: duckdb.DuckDBPyConnection,
    outcomes: dict[str, str | None],
    *,
    run_id: str,
    now: dt.datetime,
    listed_at: Mapping[str, dt.datetime | None] | None = None,
) -> None:
    """Record each user's member-list read, in one statement: user guid -> the reason it failed, or None when it
    was listed; ``listed_at``: when each list read whole began (None: not read whole)."""
    if not outcomes:
        return
    began = [(listed_at or {}).get(user) for user in outcomes]
    con.execute(
        """
        insert or replace into ops.user_sync
            (user_guid, last_outcome, last_reason, last_attempt_at, last_run_id, listed_at)
        select user_guid, case when reason is null then 'listed' else 'failed' end, reason, $now, $run_id, listed_at
        from (select unnest($users::varchar[]) as user_guid, unnest($reasons::varchar[]) as reason,
                     unnest($began::timestamptz[]) as listed_at)
        """,
        {"users": list(outcomes), "reasons": list(outcomes.values()), "began": began, "now": now, "run_id": run_id},
    )


def failed_reads(con: duckdb.DuckDBPyConnection, run_ids: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """(members, users) whose last read failed in one of ``run_ids`` and has not succeeded since, with the reason."""
    runs = {"runs": sorted(set(run_ids))}
    members = con.execute(
        "select member_guid, last_reason from ops.member_sync"
        " where last_outcome = 'failed' and list_contains($runs, last_run_id) order by 1",
        runs,
    ).fetchall()
    users = con.execute(
        "select user_guid, last_reason from ops.user_sync"
        " where last_outcome = 'failed' and list_contains($runs, last_run_id) order by 1",
        runs,
    ).fetchall()
    return dict(members), dict(users)


@dataclass(frozen=True)
class ReadsToRetry:
    """Members and users whose last read failed, each with the time of that attempt, due to be read again."""

    members: list[tuple[str, dt.datetime]]
    users: list[tuple[str, dt.datetime]]

    def __bool__(self) -> bool:
        return bool(self.members or self.users)


def reads_to_retry(
    con: duckdb.DuckDBPyConnection,
    *,
    now: dt.datetime,
    backoff: dt.timedelta,
    limit: int,
    ledger: Ledger | None = None,
) -> ReadsToRetry:
    """At most ``limit`` members and ``limit`` users, oldest failure first, whose last read failed at least
    ``backoff`` ago; never one MX no longer has, nor a member a refresh run holds (it reads the member anyway).
    ``ledger``: where the claims are (the warehouse's by default)."""
    params = {"before": now - backoff, "limit": limit}
    with (ledger or WarehouseLedger(con)).visible(con, attempts_since=None):
        members = con.execute(
            """
            select s.member_guid, s.last_attempt_at from ops.member_sync as s
            join raw.mx_members as m on m.guid = s.member_guid
            where s.last_outcome = 'failed' and s.last_attempt_at <= $before and m.removed_at is null
              and s.user_guid not in (select guid from raw.mx_users where removed_at is not null)
              and s.member_guid not in (select member_guid from refresh_claims)
            order by s.last_attempt_at, s.member_guid
            limit $limit
            """,
            params,
        ).fetchall()
    users = con.execute(
        """
        select u.user_guid, u.last_attempt_at from ops.user_sync as u
        where u.last_outcome = 'failed' and u.last_attempt_at <= $before
          and u.user_guid not in (select guid from raw.mx_users where removed_at is not null)
        order by u.last_attempt_at, u.user_guid
        limit $limit
        """,
        params,
    ).fetchall()
    return ReadsToRetry(members, users)
