"""``raw.mx_accounts`` from the landing area: each member's account list, merged by the loader, then settled.

Settling a member's list, inside the load's transaction (``landed.py``): every account it listed that a wrong
list retired is live again; a list read whole retires what we held before it began and it lacks
(``retire.py``); a read that failed is recorded as such, with its reason (``ops.member_sync``).
"""

import datetime as dt

import duckdb

from mx_pipeline.landing.area import LandedMember, LandingArea
from mx_pipeline.warehouse import retire
from mx_pipeline.warehouse.landed import LandedTable, Settled
from mx_pipeline.warehouse.sql_literals import sql_literal
from mx_pipeline.warehouse.sync_state import ACCOUNTS_READ, SyncOutcome, record_syncs
from mx_pipeline.warehouse.tables import ACCOUNTS

TABLE = "accounts"


def _settle_accounts(con, area: LandingArea, members: list[LandedMember], now: dt.datetime) -> Settled:
    listed = {member.manifest.member_guid: _listed_guids(con, area, member) for member in members}
    reinstated = retire.reinstate_accounts(con, {guid for guids in listed.values() for guid in guids}, now=now)
    retired = []
    for member in members:
        manifest = member.manifest
        if manifest.outcome == "synced" and manifest.listed_from is not None:
            absent = retire.accounts_absent(
                con, manifest.member_guid, listed[manifest.member_guid], listed_from=manifest.listed_from
            )
            retired += retire.retire_accounts(
                con, absent, reason=retire.ACCOUNT_REMOVED, run_id=manifest.run_id, now=now
            )
    failed = [
        SyncOutcome(m.manifest.member_guid, m.manifest.user_guid, "failed", m.manifest.run_id, m.manifest.reason)
        for m in members
        if m.manifest.outcome != "synced"
    ]
    record_syncs(con, failed, now=now)
    return Settled(retired=tuple(retired), reinstated=tuple(reinstated))


def _listed_guids(con: duckdb.DuckDBPyConnection, area: LandingArea, member: LandedMember) -> list[str]:
    path = sql_literal(area.duckdb_path(member.listed))
    return [guid for (guid,) in con.execute(f"select guid from read_parquet({path})").fetchall()]


ACCOUNTS_LANDED = LandedTable(TABLE, ACCOUNTS, ACCOUNTS_READ, _settle_accounts)
