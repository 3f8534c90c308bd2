"""The reads that land besides transactions: the client's users, a user's member list, a member's status and its
account list.

The loader (``landed.py``) merges their rows, then settles each read inside the load's transaction:

- a list (members, accounts): every record it showed that a wrong list retired is live again; a list read whole
  retires what we held before it began and it lacks (``retire.py``);
- a user MX confirmed deleted (its member list answered 404, and ``list_users`` by our id lacks it) is retired;
- every end user with no MX user yet that MX lists by our id is registered as that user (``end_users.py``);
- a read that failed is recorded as such, with its reason (``ops.member_sync``; a member list, ``ops.user_sync``).
"""

import datetime as dt
import itertools

import duckdb

from mx_pipeline.landing.area import LandedMember, LandingArea, Manifest
from mx_pipeline.warehouse import retire
from mx_pipeline.warehouse.end_users import register_listed
from mx_pipeline.warehouse.landed import TRANSACTIONS_LANDED, LandedTable, Settled
from mx_pipeline.warehouse.sql_literals import sql_list
from mx_pipeline.warehouse.sync_state import (
    ACCOUNTS_READ,
    MEMBER_LIST_READ,
    STATUS_READ,
    USER_LIST_READ,
    SyncOutcome,
    record_member_lists,
    record_syncs,
)
from mx_pipeline.warehouse.tables import ACCOUNTS, MEMBER_STATUS, MEMBERS, USERS


def _settle_users(con, area: LandingArea, lists: list[LandedMember], now: dt.datetime) -> Settled:
    listed = _listed(con, area, lists)
    reinstated = retire.reinstate_users(con, listed, now=now)
    retired = [
        guid
        for read in _read_whole(lists)
        for guid in retire.retire_users(
            con, retire.users_absent(con, listed, listed_from=read.manifest.listed_from),
            reason=retire.USER_REMOVED, run_id=read.manifest.run_id, now=now,
        )
    ]  # fmt: skip
    register_listed(con, now=now)
    return Settled(retired=tuple(retired), reinstated=tuple(reinstated))


def _settle_members(con, area: LandingArea, lists: list[LandedMember], now: dt.datetime) -> Settled:
    users_retired = [
        user
        for read in lists
        if read.manifest.outcome == "gone"
        for user in retire.retire_users(
            con, [read.manifest.user_guid], reason=retire.USER_REMOVED, run_id=read.manifest.run_id, now=now
        )
    ]
    settled = _settle_lists(con, area, lists, now, "raw.mx_members", retire.reinstate_members, retire.retire_members,
                            retire.MEMBER_REMOVED)  # fmt: skip
    by_run = itertools.groupby(sorted(lists, key=lambda read: read.manifest.run_id), lambda read: read.manifest.run_id)
    for run_id, reads in by_run:  # a list that failed has its reason; one read (or its user gone) has none
        reads = list(reads)
        outcomes = {r.manifest.user_guid: r.manifest.reason for r in reads}
        began = {r.manifest.user_guid: r.manifest.listed_from for r in reads}
        record_member_lists(con, outcomes, run_id=run_id, now=now, listed_at=began)
    return Settled(settled.removed, settled.retired, settled.reinstated, tuple(users_retired))


def _settle_accounts(con, area: LandingArea, members: list[LandedMember], now: dt.datetime) -> Settled:
    settled = _settle_lists(con, area, members, now, "raw.mx_accounts", retire.reinstate_accounts,
                            retire.retire_accounts, retire.ACCOUNT_REMOVED)  # fmt: skip
    _record_failed_reads(con, members, now)
    return settled


def _settle_lists(con, area: LandingArea, lists: list[LandedMember], now: dt.datetime, table: str, reinstate,
                  retire_them, reason: str) -> Settled:  # fmt: skip
    """Bring back what any list showed, then retire what each list read whole lacks: a few statements for all the
    lists (one read of every listed file, one look for what is absent), not a few per list."""
    listed = _listed(con, area, lists)
    reinstated = reinstate(con, listed, now=now)
    whole = [retire.WholeList(r.manifest.owner, r.manifest.listed_from, r.manifest.run_id) for r in _read_whole(lists)]
    absent = retire.absent_from_lists(con, table, whole, listed)
    retired = [
        guid
        for run_id, rows in itertools.groupby(absent, key=lambda row: row[1])
        for guid in retire_them(con, [guid for guid, _ in rows], reason=reason, run_id=run_id, now=now)
    ]
    return Settled(retired=tuple(retired), reinstated=tuple(reinstated))


def _read_whole(reads: list[LandedMember]) -> list[LandedMember]:
    """The reads that listed whole (only such a list may retire what it lacks)."""
    return [read for read in reads if read.manifest.outcome == "synced" and read.manifest.listed_from is not None]


def _settle_status(con, area: LandingArea, members: list[LandedMember], now: dt.datetime) -> Settled:
    _record_failed_reads(con, members, now)
    return Settled()


def _record_failed_reads(con: duckdb.DuckDBPyConnection, members: list[LandedMember], now: dt.datetime) -> None:
    failed = [
        SyncOutcome(m.manifest.member_guid, m.manifest.user_guid, "failed", m.manifest.run_id, m.manifest.reason)
        for m in members
        if m.manifest.outcome == "failed"
    ]
    record_syncs(con, failed, now=now)


def _listed(con: duckdb.DuckDBPyConnection, area: LandingArea, reads: list[LandedMember]) -> list[str]:
    """Every guid the reads listed, in one scan of their files."""
    files = [area.duckdb_path(read.listed) for read in reads if read.listed]  # a read that listed none has none
    if not files:
        return []
    files = sql_list(files)
    return [guid for (guid,) in con.execute(f"select guid from read_parquet({files})").fetchall()]


def _record_member_list_failed(con: duckdb.DuckDBPyConnection, manifest: Manifest, reason: str, now: dt.datetime):
    record_member_lists(con, {manifest.user_guid: reason}, run_id=manifest.run_id, now=now)


def _nothing_to_record(con, manifest: Manifest, reason: str, now: dt.datetime) -> None:
    """A users list that could not be loaded: its reason is quarantined; the next ingest lists the users again."""


EVERY_USER = "all"  # whose list the users list is: the client's, landed in user=all/
USERS_LANDED = LandedTable("users", USERS, USER_LIST_READ, _settle_users, _nothing_to_record)
MEMBERS_LANDED = LandedTable("members", MEMBERS, MEMBER_LIST_READ, _settle_members, _record_member_list_failed)
ACCOUNTS_LANDED = LandedTable("accounts", ACCOUNTS, ACCOUNTS_READ, _settle_accounts)
STATUS_LANDED = LandedTable("member_status", MEMBER_STATUS, STATUS_READ, _settle_status)
# Every landed table, in the order a load merges them: a user's list before its members, a member's list before
# its status, accounts and transactions, accounts before the transactions that name them.
EVERY_LANDED = (USERS_LANDED, MEMBERS_LANDED, STATUS_LANDED, ACCOUNTS_LANDED, TRANSACTIONS_LANDED)
