"""Many members' small reads land together (one judgement, one write of parts, one of listed guids) into each
member's own directory: the loader takes them exactly as reads landed one by one, refused rows quarantined under
their own member, lists settled each on its own, and a batch is landed when the step's reads end in an error."""

import datetime as dt
from decimal import Decimal

import pytest

from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.batch import LandingBatch
from mx_pipeline.mx.errors import MalformedRecord
from mx_pipeline.mx.records import Account
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.landed_reads import ACCOUNTS_LANDED
from mx_pipeline.warehouse.rows import account_row
from mx_pipeline.warehouse.tables import ACCOUNTS


def _account(member: str, n: int, balance: str = "10.00") -> Account:
    return Account.from_payload({"guid": f"ACT-{member}-{n}", "member_guid": member, "user_guid": "USR-1",
                                 "type": "CHECKING", "balance": Decimal(balance), "currency_code": "USD"})  # fmt: skip


@pytest.fixture
def area(warehouse) -> LandingArea:
    return LandingArea.beside(warehouse.path)


def _batch(area, run_id="run-1", **kwargs) -> LandingBatch:
    return LandingBatch(area, ACCOUNTS_LANDED.name, ACCOUNTS, account_row, run_id=run_id, **kwargs)


def _read(batch: LandingBatch, member: str, accounts: list[Account], *, rejects=(), outcome="synced", reason=None):
    landing = batch.landing(member_guid=member, user_guid="USR-1")
    for account in accounts:
        landing.add(account)
    for reject in rejects:
        landing.reject(reject, member)
    listed = [a.guid for a in accounts] + [r.payload["guid"] for r in rejects]
    landing.finish(outcome=outcome, reason=reason, listed_guids=listed, listed_from=dt.datetime.now(dt.UTC))
    return landing


def _live(warehouse) -> dict[str, Decimal]:
    with warehouse.connect() as con:
        return dict(con.execute("select guid, balance from raw.mx_accounts where removed_at is null").fetchall())


def test_a_batch_lands_each_members_read_in_its_own_directory_and_loads_amount_by_amount(warehouse, area):
    bad_balance = MalformedRecord("Account.balance: not a number", payload={"guid": "ACT-B-9", "balance": "lots"})
    with _batch(area) as batch:
        a = _read(batch, "MBR-A", [_account("MBR-A", 1, "1234567.8912"), _account("MBR-A", 2, "-0.01")])
        b = _read(batch, "MBR-B", [_account("MBR-B", 1, "5.00")], rejects=[bad_balance])
        c = _read(batch, "MBR-C", [])  # a member with no accounts: no part, no listed file, still a read
        assert not list(area.root_path.rglob("manifest.json"))  # nothing lands before the batch does
    assert not warehouse.path.exists()  # landing never opens the warehouse

    landed = {m.manifest.member_guid: m for m in area.landed(ACCOUNTS_LANDED.name)}
    assert {member: (m.manifest.rows, len(m.manifest.parts)) for member, m in landed.items()} == {
        "MBR-A": (2, 1), "MBR-B": (2, 1), "MBR-C": (0, 0),
    }  # fmt: skip
    assert landed["MBR-C"].listed is None and (a.refused, b.refused, c.refused) == (0, 1, 0)
    assert all(m.directory == area.member_directory("accounts", "run-1", guid) for guid, m in landed.items())

    report = load_landed(warehouse, area, run_id="loader", table=ACCOUNTS_LANDED)

    assert sorted(report.members) == ["MBR-A", "MBR-B", "MBR-C"] and report.quarantined == 1
    assert _live(warehouse) == {"ACT-MBR-A-1": Decimal("1234567.8912"), "ACT-MBR-A-2": Decimal("-0.0100"),
                                "ACT-MBR-B-1": Decimal("5.0000")}  # fmt: skip
    with warehouse.connect() as con:
        assert con.execute("select record_guid, member_guid from ops.quarantine").fetchall() == [("ACT-B-9", "MBR-B")]


def test_rows_pandera_refuses_are_quarantined_under_the_member_whose_read_brought_them(warehouse, area):
    with _batch(area) as batch:
        _read(batch, "MBR-A", [_account("MBR-A", 1)])
        refused = Account.from_payload({"guid": "XYZ-1", "member_guid": "MBR-B", "user_guid": "USR-1"})
        _read(batch, "MBR-B", [refused, _account("MBR-B", 2)])

    report = load_landed(warehouse, area, run_id="loader", table=ACCOUNTS_LANDED)

    assert report.quarantined == 1 and set(_live(warehouse)) == {"ACT-MBR-A-1", "ACT-MBR-B-2"}
    with warehouse.connect() as con:
        ((guid, member, reason),) = con.execute(
            "select record_guid, member_guid, reason from ops.quarantine"
        ).fetchall()
    assert (guid, member) == ("XYZ-1", "MBR-B") and reason.startswith("guid: ")


def test_each_list_in_a_batch_retires_only_what_its_own_member_lacks(warehouse, area):
    with _batch(area, run_id="run-1") as batch:
        for member in ("MBR-A", "MBR-B", "MBR-C"):
            _read(batch, member, [_account(member, 1), _account(member, 2)])
    load_landed(warehouse, area, run_id="loader-1", table=ACCOUNTS_LANDED)

    with _batch(area, run_id="run-2") as batch:
        _read(batch, "MBR-A", [_account("MBR-A", 1)])  # MX stopped listing ACT-MBR-A-2
        _read(batch, "MBR-B", [_account("MBR-B", 1), _account("MBR-B", 2)])
        _read(batch, "MBR-C", [])  # a whole list of nothing: every account the member had is gone
    report = load_landed(warehouse, area, run_id="loader-2", table=ACCOUNTS_LANDED)

    assert sorted(report.settled.retired) == ["ACT-MBR-A-2", "ACT-MBR-C-1", "ACT-MBR-C-2"]
    assert set(_live(warehouse)) == {"ACT-MBR-A-1", "ACT-MBR-B-1", "ACT-MBR-B-2"}


def test_a_batch_lands_when_it_is_full_and_a_read_too_long_for_it_lands_alone(warehouse, area):
    with _batch(area, reads=2) as batch:
        _read(batch, "MBR-A", [_account("MBR-A", 1)])
        _read(batch, "MBR-B", [_account("MBR-B", 1)])
        assert len(area.landed(ACCOUNTS_LANDED.name)) == 2  # full: landed at once
        long_read = batch.landing(member_guid="MBR-C", user_guid="USR-1")
        long_read.batch_size = 2  # two parts of its own, then the rest
        for n in range(5):
            long_read.add(_account("MBR-C", n))
        long_read.finish(outcome="synced", listed_guids=[f"ACT-MBR-C-{n}" for n in range(5)])
        assert len(area.landed(ACCOUNTS_LANDED.name)) == 3  # it did not wait for the batch

    (long_landed,) = [m for m in area.landed(ACCOUNTS_LANDED.name) if m.manifest.member_guid == "MBR-C"]
    assert len(long_landed.manifest.parts) == 3 and long_landed.manifest.rows == 5
    load_landed(warehouse, area, run_id="loader", table=ACCOUNTS_LANDED)
    assert len(_live(warehouse)) == 7


def test_reads_finished_before_an_error_are_landed_as_the_error_goes_on(warehouse, area):
    with pytest.raises(RuntimeError, match="a bug in the step"), _batch(area) as batch:
        _read(batch, "MBR-A", [_account("MBR-A", 1)])
        _read(batch, "MBR-B", [], outcome="failed", reason="accounts read failed: 503")
        raise RuntimeError("a bug in the step")

    outcomes = {m.manifest.member_guid: m.manifest.outcome for m in area.landed(ACCOUNTS_LANDED.name)}
    assert outcomes == {"MBR-A": "synced", "MBR-B": "failed"}
    load_landed(warehouse, area, run_id="loader", table=ACCOUNTS_LANDED)
    with warehouse.connect() as con:
        failed = con.execute("select member_guid, last_reason from ops.member_sync where last_outcome = 'failed'")
        assert failed.fetchall() == [("MBR-B", "accounts read failed: 503")]


def test_a_batch_lands_at_an_fsspec_url_and_loads_the_same(warehouse):
    area = LandingArea("memory://batch-test")
    try:
        with _batch(area) as batch:
            _read(batch, "MBR-A", [_account("MBR-A", 1, "12.34")])
            _read(batch, "MBR-B", [])
        assert area.fs.exists("/batch-test/accounts/run=run-1/member=MBR-B/manifest.json")
        report = load_landed(warehouse, area, run_id="loader", table=ACCOUNTS_LANDED)
        assert sorted(report.members) == ["MBR-A", "MBR-B"] and _live(warehouse) == {"ACT-MBR-A-1": Decimal("12.34")}
        assert not area.fs.glob("/batch-test/accounts/**/*.parquet")
    finally:
        area.fs.rm("/batch-test", recursive=True)
