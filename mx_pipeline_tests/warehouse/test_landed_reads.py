"""The client's users, a user's member list, a member's status and its account list are landed by the reading run
(judged, never touching the warehouse), then merged and settled by the loader: what a complete list lacks is
retired, what a wrong list retired comes back, our end users MX lists by our id are registered, a user MX deleted is
retired, a failed read is recorded, an older read never overwrites a newer one, and nothing is loaded twice."""

import datetime as dt
import shutil
from decimal import Decimal

import pytest
import simplejson

from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.records import RecordLanding
from mx_pipeline.mx.errors import MalformedRecord
from mx_pipeline.mx.records import Account, Member, MemberStatus, User
from mx_pipeline.warehouse import retire
from mx_pipeline.warehouse.connection import Warehouse
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.landed_reads import (
    ACCOUNTS_LANDED,
    EVERY_LANDED,
    EVERY_USER,
    MEMBERS_LANDED,
    STATUS_LANDED,
    USERS_LANDED,
)
from mx_pipeline.warehouse.rows import account_row, member_row, member_status_row, user_row
from mx_pipeline.warehouse.tables import ACCOUNTS, MEMBER_STATUS, MEMBERS, USERS

EARLIER = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _account(guid: str, balance: str = "100.00", **overrides) -> Account:
    payload = {"guid": guid, "member_guid": "MBR-1", "user_guid": "USR-1", "type": "CHECKING",
               "balance": Decimal(balance), "currency_code": "USD", "updated_at": "2026-11-20T10:00:00Z", **overrides}  # fmt: skip
    return Account.from_payload(payload)


@pytest.fixture
def area(warehouse) -> LandingArea:
    return LandingArea.beside(warehouse.path)


def _land(area, accounts, *, run_id="run-1", complete=True, outcome="synced", reason=None, rejects=()):
    landing = RecordLanding(area, ACCOUNTS_LANDED.name, ACCOUNTS, account_row,
                            run_id=run_id, member_guid="MBR-1", user_guid="USR-1")  # fmt: skip
    for account in accounts:
        landing.add(account)
    for reject in rejects:
        landing.reject(reject, "MBR-1")
    listed = {a.guid for a in accounts} | {r.payload["guid"] for r in rejects}
    landing.finish(
        outcome=outcome, reason=reason, listed_guids=listed, listed_from=dt.datetime.now(dt.UTC) if complete else None
    )
    return landing


def _load(warehouse, area):
    return load_landed(warehouse, area, run_id="loader", table=ACCOUNTS_LANDED)


def _live(warehouse) -> dict[str, Decimal]:
    with warehouse.connect() as con:
        return dict(con.execute("select guid, balance from raw.mx_accounts where removed_at is null").fetchall())


def test_accounts_land_without_the_warehouse_and_load_exact_with_refused_records_quarantined(warehouse, area):
    malformed = MalformedRecord("Account.balance: not a number", payload={"guid": "ACT-BAD", "balance": "lots"})
    landing = _land(
        area,
        [_account("ACT-1", "1234567.8912"), _account("XYZ-2"), _account("ACT-3", "-0.01")],
        rejects=[malformed],
    )
    assert landing.refused == 2 and not warehouse.path.exists()  # landing never opens the warehouse

    report = _load(warehouse, area)

    assert report.counts.inserted == 2 and report.quarantined == 2
    assert _live(warehouse) == {"ACT-1": Decimal("1234567.8912"), "ACT-3": Decimal("-0.0100")}
    with warehouse.connect() as con:
        refused = {g: (r, m, simplejson.loads(p)) for g, r, m, p in con.execute(
            "select record_guid, reason, member_guid, payload from ops.quarantine where table_name = 'raw.mx_accounts'"
        ).fetchall()}  # fmt: skip
    assert refused["ACT-BAD"] == ("Account.balance: not a number", "MBR-1", {"guid": "ACT-BAD", "balance": "lots"})
    assert refused["XYZ-2"][0].startswith("guid: ") and refused["XYZ-2"][2]["balance"] == 100.0
    assert not list(area.root_path.rglob("*.parquet"))  # committed, then deleted


def test_a_complete_list_retires_what_it_lacks_and_brings_back_what_a_wrong_list_retired(warehouse, area):
    _land(area, [_account("ACT-1"), _account("ACT-2"), _account("ACT-3")], run_id="run-1")
    _load(warehouse, area)
    with warehouse.connect() as con, retire.atomically(con):  # a wrong list retired ACT-3
        retire.retire_accounts(con, ["ACT-3"], reason=retire.ACCOUNT_REMOVED, run_id="wrong", now=EARLIER)

    _land(area, [_account("ACT-1"), _account("ACT-3")], run_id="run-2", complete=False)  # incomplete: judges nothing
    assert _load(warehouse, area).settled.reinstated == ("ACT-3",)
    assert set(_live(warehouse)) == {"ACT-1", "ACT-2", "ACT-3"}

    _land(area, [_account("ACT-1"), _account("ACT-3")], run_id="run-3")
    assert _load(warehouse, area).settled.retired == ("ACT-2",)
    assert set(_live(warehouse)) == {"ACT-1", "ACT-3"}


def test_a_failed_read_is_recorded_with_its_reason_and_retires_nothing(warehouse, area):
    _land(area, [_account("ACT-1"), _account("ACT-2")], run_id="run-1")
    _load(warehouse, area)

    reason = "accounts read failed: ServerError: 503"
    _land(area, [_account("ACT-1")], run_id="run-2", outcome="failed", reason=reason)
    report = _load(warehouse, area)

    assert report.settled.retired == () and set(_live(warehouse)) == {"ACT-1", "ACT-2"}
    with warehouse.connect() as con:
        outcome = con.execute("select last_outcome, last_reason, last_run_id from ops.member_sync").fetchall()
    assert outcome == [("failed", reason, "run-2")]


def test_a_member_found_again_after_its_load_committed_is_deleted_unread(warehouse, area, tmp_path):
    landing = _land(area, [_account("ACT-1", "5.00")])
    shutil.copytree(landing.directory, tmp_path / "copy")  # as a loader killed between its commit and the delete
    _load(warehouse, area)
    with warehouse.connect() as con:
        con.execute("update raw.mx_accounts set balance = 6")  # a later version, from another load
    shutil.copytree(tmp_path / "copy", landing.directory)

    report = _load(warehouse, area)

    assert report.already_loaded == 1 and report.counts.written == 0
    assert _live(warehouse) == {"ACT-1": Decimal("6.0000")}
    assert not list(area.root_path.rglob("*.parquet"))


class _Overtaken(Warehouse):
    """A warehouse another loader reaches first: it loads and removes everything landed, after this loader listed
    the landed reads and before it connects (as two load steps let in at once by the orchestrator)."""

    def __init__(self, path, area):
        super().__init__(path)
        self.area = area

    def connect(self, **kwargs):
        load_landed(Warehouse(self.path), self.area, run_id="first-loader", table=ACCOUNTS_LANDED)
        return super().connect(**kwargs)


def test_a_loader_overtaken_by_another_finds_its_reads_loaded_and_ends_well(warehouse, area):
    _land(area, [_account("ACT-1", "5.00")])

    report = load_landed(_Overtaken(warehouse.path, area), area, run_id="second-loader", table=ACCOUNTS_LANDED)

    assert (report.members, report.already_loaded) == ((), 1)  # found loaded: nothing merged twice
    assert _live(warehouse) == {"ACT-1": Decimal("5.0000")}
    assert not list(area.root_path.rglob("*.parquet"))


def test_a_manifest_removed_between_the_listing_and_its_read_is_no_read(area, monkeypatch):
    _land(area, [_account("ACT-1", "5.00")])
    gone = f"{area.root}/accounts/run=run-0/member=MBR-0/manifest.json"  # a loader removed it since the glob
    listed = area.fs.glob(f"{area.root}/accounts/run=*/*=*/manifest.json")
    monkeypatch.setattr(area.fs, "glob", lambda pattern: [gone, *listed])

    assert [member.manifest.run_id for member in area.landed(ACCOUNTS_LANDED.name)] == ["run-1"]


def _land_status(area, connection_status: str, *, run_id: str) -> None:
    landing = RecordLanding(area, STATUS_LANDED.name, MEMBER_STATUS, lambda s, load: member_status_row(s, "USR-1", load),
                            run_id=run_id, member_guid="MBR-1", user_guid="USR-1")  # fmt: skip
    landing.add(MemberStatus.from_payload({"guid": "MBR-1", "connection_status": connection_status}))
    landing.finish(outcome="synced")


def test_a_status_a_killed_run_landed_earlier_never_overwrites_a_newer_one(warehouse, area, tmp_path):
    _land_status(area, "CONNECTED", run_id="killed")  # read first; its run was killed before its load
    older = next(area.root_path.rglob("run=killed"))
    shutil.move(older, tmp_path / "older")
    _land_status(area, "CHALLENGED", run_id="later")
    shutil.move(tmp_path / "older", older)  # both are loaded by the next load, the older read as well

    report = load_landed(warehouse, area, run_id="loader", table=STATUS_LANDED)

    assert len(report.members) == 2
    with warehouse.connect() as con:
        assert con.execute("select connection_status, run_id from raw.mx_member_status").fetchall() == [
            ("CHALLENGED", "later")
        ]


def _land_member_list(area, user_guid: str, members: list[str], *, run_id: str, outcome="synced", reason=None):
    landing = RecordLanding(area, MEMBERS_LANDED.name, MEMBERS, member_row,
                            run_id=run_id, member_guid=None, user_guid=user_guid)  # fmt: skip
    for guid in members:
        landing.add(Member.from_payload({"guid": guid, "user_guid": user_guid, "connection_status": "CONNECTED"}))
    complete = outcome == "synced"
    landing.finish(outcome=outcome, reason=reason, listed_guids=members,
                   listed_from=dt.datetime.now(dt.UTC) if complete else None)  # fmt: skip


def _live_members(warehouse) -> set[str]:
    with warehouse.connect() as con:
        return {g for (g,) in con.execute("select guid from raw.mx_members where removed_at is null").fetchall()}


def test_member_lists_land_per_user_and_settle_retirements_failures_and_users_mx_deleted(warehouse, area):
    with warehouse.connect() as con:
        con.execute("insert into raw.mx_users (guid, id, payload, run_id, fetched_at)"
                    " select 'USR-' || i, 'user-' || i, '{}', 'run-0', now() from range(1, 4) as t (i)")  # fmt: skip
    _land_member_list(area, "USR-1", ["MBR-1", "MBR-2"], run_id="run-1")
    _land_member_list(area, "USR-2", ["MBR-3"], run_id="run-1")
    assert {p.parent.name for p in area.root_path.rglob("manifest.json")} == {"user=USR-1", "user=USR-2"}
    assert set(load_landed(warehouse, area, run_id="loader", table=MEMBERS_LANDED).members) == {"USR-1", "USR-2"}
    assert _live_members(warehouse) == {"MBR-1", "MBR-2", "MBR-3"}

    _land_member_list(area, "USR-1", ["MBR-1"], run_id="run-2")  # MBR-2 was deleted at MX
    _land_member_list(area, "USR-2", [], run_id="run-2", outcome="gone")  # its list answered 404; list_users agreed
    _land_member_list(area, "USR-3", [], run_id="run-2", outcome="failed", reason="member list read failed: 503")
    report = load_landed(warehouse, area, run_id="loader", table=MEMBERS_LANDED)

    assert (report.settled.retired, report.settled.owners_retired) == (("MBR-2",), ("USR-2",))
    assert _live_members(warehouse) == {"MBR-1"}  # MBR-3 with its user
    with warehouse.connect() as con:
        assert con.execute("select user_guid, last_outcome, last_reason from ops.user_sync order by 1").fetchall() == [
            ("USR-1", "listed", None),
            ("USR-2", "listed", None),
            ("USR-3", "failed", "member list read failed: 503"),
        ]


def test_a_complete_users_list_registers_our_end_users_it_shows_and_retires_the_users_it_lacks(warehouse, area):
    with warehouse.connect() as con:
        con.execute("insert into ops.end_users (id, source, mx_user_guid, registered_at) values"
                    " ('a', 'csv', null, null), ('b', 'csv', null, null), ('c', 'csv', 'USR-C', now())")  # fmt: skip
    landing = RecordLanding(area, USERS_LANDED.name, USERS, user_row,
                            run_id="run-1", member_guid=None, user_guid=EVERY_USER)  # fmt: skip
    users = [User.from_payload({"guid": "USR-A", "id": "a"}), User.from_payload({"guid": "USR-X", "id": "x"})]
    for user in users:
        landing.add(user)
    landing.finish(outcome="synced", listed_guids=["USR-A", "USR-X"], listed_from=dt.datetime.now(dt.UTC))

    report = load_landed(warehouse, area, run_id="loader", table=USERS_LANDED)

    assert report.counts.inserted == 2 and report.settled.retired == ("USR-C",)  # registered, then deleted at MX
    with warehouse.connect() as con:
        registered = con.execute("select id, mx_user_guid, retired_at is not null from ops.end_users order by id")
        assert registered.fetchall() == [("a", "USR-A", False), ("b", None, False), ("c", "USR-C", True)]


def test_a_load_merges_every_landed_table_in_order_whoever_landed_them(warehouse, area):
    """Steps queued for the warehouse find their reads merged by the load before them: none waits for two."""
    _land_member_list(area, "USR-1", ["MBR-1"], run_id="queued-1")  # landed by runs waiting behind this load
    _land_status(area, "CHALLENGED", run_id="queued-2")
    _land(area, [_account("ACT-1", "7.00")], run_id="this-run")

    report = load_landed(warehouse, area, run_id="loader", table=ACCOUNTS_LANDED, alongside=EVERY_LANDED)

    assert report.members == ("MBR-1",) and report.alongside == {"members": 1, "member_status": 1}
    assert _live_members(warehouse) == {"MBR-1"} and _live(warehouse) == {"ACT-1": Decimal("7.0000")}
    with warehouse.connect() as con:
        loads = con.execute("select table_name, run_id, loaded_by from ops.landed_loads").fetchall()
    assert sorted(loads) == [
        ("accounts", "this-run", "loader"), ("member_status", "queued-2", "loader"), ("members", "queued-1", "loader")
    ]  # fmt: skip
    assert not list(area.root_path.rglob("*.parquet"))
    # The queued steps' own loads then find nothing left: their reads are in the warehouse already.
    assert load_landed(warehouse, area, run_id="queued-2", table=STATUS_LANDED, alongside=EVERY_LANDED).members == ()


def test_a_load_names_its_own_table_among_those_it_merges(warehouse, area):
    with pytest.raises(ValueError, match="accounts is loaded in the order of"):
        load_landed(warehouse, area, run_id="loader", table=ACCOUNTS_LANDED, alongside=(USERS_LANDED,))
