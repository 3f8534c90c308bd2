"""The transactions hot path: pages are judged by DuckDB a batch at a time and landed as Parquet (never touching the
warehouse), then the loader merges whole members in bulk, idempotently, deleting files only after its commit."""

import datetime as dt
import shutil
from decimal import Decimal

import duckdb
import pytest
import simplejson

from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.parser import release_parser
from mx_pipeline.landing.transactions import TransactionLanding
from mx_pipeline.mx.pagination import Page
from mx_pipeline.mx.transport import ApiCall
from mx_pipeline.warehouse import ApiCallLog, landed
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.read_plan import plan_transaction_reads
from mx_pipeline.warehouse.transaction_sync import SyncPolicy, extract_member_transactions, sync_member_transactions

from .conftest import make_transaction


def _payload(guid, **overrides) -> dict:
    return {**make_transaction(guid).payload, **overrides}


@pytest.fixture
def area(warehouse) -> LandingArea:
    return LandingArea.beside(warehouse.path)


def _land(area, pages: list[Page], *, run_id="run-1", member_guid="MBR-1", **finish) -> TransactionLanding:
    landing = TransactionLanding(area, run_id=run_id, member_guid=member_guid, user_guid="USR-1", batch_size=10**9)
    for page in pages:
        landing.add(page)
    landing.finish(outcome="synced", **finish)
    return landing


def _load(warehouse, area, **kwargs) -> landed.LoadReport:
    return load_landed(warehouse, area, run_id="loader", **kwargs)


def _amounts(warehouse) -> dict[str, Decimal]:
    with warehouse.connect() as con:
        return dict(con.execute("select guid, amount from raw.mx_transactions").fetchall())


def _quarantine(warehouse) -> dict[str, tuple[str, str | None, dict]]:
    with warehouse.connect() as con:
        rows = con.execute("select record_guid, reason, member_guid, payload from ops.quarantine").fetchall()
    return {guid: (reason, member, simplejson.loads(payload)) for guid, reason, member, payload in rows}


def test_a_malformed_record_is_quarantined_with_its_reason_and_the_rest_of_the_page_loads(warehouse, area):
    page = Page(
        [
            _payload("TRN-1"),
            _payload("TRN-TEXT-AMOUNT", amount="12.50"),  # a quoted number breaks MX's contract
            _payload("TRN-SETTLING", status="SETTLING", account_guid=None),
            _payload("TRN-3"),
        ]
    )
    landing = _land(area, [page])
    assert landing.refused == 2 and _amounts(warehouse) == {}  # landing never writes the warehouse
    report = _load(warehouse, area)
    assert report.counts.inserted == 2 and report.quarantined == 2
    assert set(_amounts(warehouse)) == {"TRN-1", "TRN-3"}
    refused = _quarantine(warehouse)
    assert refused["TRN-TEXT-AMOUNT"][0] == "amount: expected a number (got 12.50)"
    assert refused["TRN-TEXT-AMOUNT"][1] == "MBR-1" and refused["TRN-TEXT-AMOUNT"][2]["amount"] == "12.50"
    assert refused["TRN-SETTLING"][0] == (
        "account_guid is missing or null (got null); status: not one of PENDING, POSTED (got SETTLING)"
    )


def test_amounts_are_exact_and_one_the_column_would_round_is_quarantined_not_rounded(warehouse, area):
    amounts = {
        "TRN-CENTS": "12.34",
        "TRN-TENTH": "0.1",
        "TRN-SUB-CENT": "0.0049",  # four decimals: DECIMAL(18, 4) holds it exactly
        "TRN-LARGE": "99999999999.99",
        "TRN-WHOLE": "7",
        "TRN-TOO-PRECISE": "12.345678",  # DECIMAL(18, 4) would make it 12.3457
        "TRN-TOO-LONG": "1234567890123.4567",  # 17 digits: a double (DuckDB's JSON number) cannot hold them
        "TRN-BEYOND-DOUBLE": "0.1000000000000000055",  # read as a double, it would look like a plain 0.1
    }
    _land(area, [Page([_payload(guid, amount=Decimal(text)) for guid, text in amounts.items()])])
    _load(warehouse, area)
    assert _amounts(warehouse) == {
        guid: Decimal(text) for guid, text in amounts.items() if not guid.startswith(("TRN-TOO", "TRN-BEYOND"))
    }
    refused = _quarantine(warehouse)
    assert set(refused) == {"TRN-TOO-PRECISE", "TRN-TOO-LONG", "TRN-BEYOND-DOUBLE"}
    assert refused["TRN-TOO-PRECISE"][0].startswith("amount: more than 4 decimals or 14 integer digits")
    assert refused["TRN-TOO-LONG"][0].startswith("amount: more than 15 significant digits")
    assert refused["TRN-BEYOND-DOUBLE"][0].startswith("amount: more than 15 significant digits")
    # The reason quotes what MX sent, not the double DuckDB read it as (1234567890123.4568, 0.1), to 18 decimals.
    assert refused["TRN-TOO-LONG"][0].endswith("(got 1234567890123.4567)")
    assert refused["TRN-BEYOND-DOUBLE"][0].endswith("(got 0.100000000000000006)")


class _Counting:
    """A connection that counts the statements it runs."""

    def __init__(self, con):
        self.con, self.statements = con, 0

    def execute(self, *args):
        self.statements += 1
        return self.con.execute(*args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def _statements_to_load(warehouse, area, monkeypatch, pages: list[Page], member_guid: str) -> int:
    _land(area, pages, member_guid=member_guid)
    counted = []
    real_connect = warehouse.connect

    def counting_connect(**kwargs):
        class Counted:
            def __enter__(self):
                self.inner = real_connect(**kwargs)
                counted.append(_Counting(self.inner.__enter__()))
                return counted[-1]

            def __exit__(self, *exc):
                return self.inner.__exit__(*exc)

        return Counted()

    monkeypatch.setattr(warehouse, "connect", counting_connect)
    _load(warehouse, area)
    monkeypatch.undo()
    return sum(c.statements for c in counted)


def test_a_load_costs_the_same_statements_whatever_its_records_and_pages(warehouse, area, monkeypatch):
    few = _statements_to_load(warehouse, area, monkeypatch, [Page([_payload(f"TRN-A{i}") for i in range(3)])], "MBR-A")
    many_pages = [Page([_payload(f"TRN-B{p}-{i}") for i in range(500)]) for p in range(4)]
    many = _statements_to_load(warehouse, area, monkeypatch, many_pages, "MBR-B")
    assert few == many <= 20
    assert len(_amounts(warehouse)) == 3 + 2000


def test_a_later_version_wins_whatever_its_place_and_an_unchanged_re_read_is_not_rewritten(warehouse, area):
    early = _payload("TRN-1", updated_at="2026-11-20T12:00:00Z", amount=Decimal("1.00"))
    late = _payload("TRN-1", updated_at="2026-11-21T12:00:00Z", amount=Decimal("2.00"))
    landing = _land(area, [Page([late, early])])  # the later version first: newer wins, not the later row
    assert _load(warehouse, area).counts.inserted == 1
    _land(area, [Page([late])], run_id="run-2")
    assert _load(warehouse, area).counts.unchanged == 1
    assert _amounts(warehouse) == {"TRN-1": Decimal("2.00")}
    assert landing.latest_updated_at == dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)


def _landed_files(area) -> list[str]:
    return sorted(p.name for p in (area.root_path / "transactions").rglob("*") if p.is_file())


def test_a_member_loaded_and_found_again_after_a_crash_is_deleted_unread(warehouse, area, tmp_path):
    _land(area, [Page([_payload("TRN-1"), _payload("TRN-BAD", type="REFUND")])])
    kept = tmp_path / "kept"
    shutil.copytree(area.root_path, kept)  # the files as a loader killed after its commit, before its delete, left them
    first = _load(warehouse, area)
    assert first.counts.inserted == 1 and first.quarantined == 1 and _landed_files(area) == []
    shutil.copytree(kept, area.root_path, dirs_exist_ok=True)
    again = _load(warehouse, area)
    assert again.already_loaded == 1 and again.counts == landed.UpsertCounts() and again.quarantined == 0
    assert _landed_files(area) == [] and len(_quarantine(warehouse)) == 1


def test_a_load_that_fails_commits_nothing_keeps_the_files_and_the_next_load_does_it_all(warehouse, area, monkeypatch):
    _land(area, [Page([_payload("TRN-1"), _payload("TRN-BAD", type="REFUND")])], listed_in_full=[], listed_guids=set())

    def killed(*args, **kwargs):
        raise RuntimeError("killed while settling")

    monkeypatch.setattr(landed, "record_syncs", killed)
    with pytest.raises(RuntimeError, match="killed while settling"):
        _load(warehouse, area)
    assert _amounts(warehouse) == {} and _quarantine(warehouse) == {}
    assert _landed_files(area) == ["listed.parquet", "manifest.json", "part-00001.parquet"]
    monkeypatch.undo()
    report = _load(warehouse, area)
    assert report.counts.inserted == 1 and report.quarantined == 1 and _landed_files(area) == []
    with warehouse.connect() as con:
        assert con.execute("select count(*) from ops.member_sync where last_outcome = 'synced'").fetchone() == (1,)


def test_a_read_a_killed_run_landed_is_loaded_by_the_next_and_its_older_listing_removes_nothing_newer(warehouse, area):
    in_range = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    older = Page([_payload("TRN-OLD", date="2026-11-20")])
    _land(area, [older], run_id="killed-run", listed_in_full=[in_range], listed_guids={"TRN-OLD"})
    newer = Page([_payload("TRN-OLD", date="2026-11-20"), _payload("TRN-NEW", date="2026-11-21")])
    _land(area, [newer], run_id="next-run", listed_in_full=[in_range], listed_guids={"TRN-OLD", "TRN-NEW"})
    report = _load(warehouse, area)
    assert report.members == ("MBR-1", "MBR-1") and report.removed == 0
    with warehouse.connect() as con:
        live = con.execute("select guid from raw.mx_transactions where removed_at is null order by 1").fetchall()
        (run,) = con.execute("select last_run_id from ops.member_sync").fetchone()
    assert live == [("TRN-NEW",), ("TRN-OLD",)] and run == "next-run"


def test_an_unreadable_manifest_is_left_with_its_files_and_the_other_members_load(warehouse, area, caplog):
    _land(area, [Page([_payload("TRN-1")])], member_guid="MBR-1")
    _land(area, [Page([_payload("TRN-2", member_guid="MBR-2")])], member_guid="MBR-2")
    manifest = area.root_path / "transactions" / "run=run-1" / "member=MBR-1" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    report = _load(warehouse, area)
    assert report.members == ("MBR-2",) and set(_amounts(warehouse)) == {"TRN-2"}
    assert manifest.exists() and "not a readable manifest" in caplog.text


def test_a_landing_area_at_an_fsspec_url_lands_and_loads_the_same(warehouse):
    area = LandingArea("memory://landing-test")
    try:
        _land(area, [Page([_payload("TRN-1"), _payload("TRN-BAD", type="REFUND")])])
        assert area.fs.exists("/landing-test/transactions/run=run-1/member=MBR-1/manifest.json")
        report = load_landed(warehouse, area, run_id="loader")
        assert report.counts.inserted == 1 and report.quarantined == 1
        assert not area.fs.glob("/landing-test/transactions/**/*.parquet")
    finally:
        area.fs.rm("/landing-test", recursive=True)


def test_reads_after_the_parser_handed_back_its_memory_parse_on_a_new_database(warehouse, area):
    _land(area, [Page([_payload("TRN-1", amount=Decimal("-4.10"))])], member_guid="MBR-1")
    release_parser()
    release_parser()  # nothing open: nothing to do
    _land(area, [Page([_payload("TRN-2", amount=Decimal("0.0100"))])], member_guid="MBR-2")
    assert _load(warehouse, area).counts.inserted == 2
    assert _amounts(warehouse) == {"TRN-1": Decimal("-4.10"), "TRN-2": Decimal("0.01")}


def test_extraction_lands_what_mx_listed_and_leaves_the_warehouse_to_the_loader(warehouse, area):
    def pages(**query):
        yield Page([_payload("TRN-1"), _payload("TRN-2")])

    member = MemberToFetch("MBR-1", "USR-1", dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    with warehouse.connect() as con:
        plan = plan_transaction_reads(con, area, [member], SyncPolicy(), run_id="run-1")
    read = extract_member_transactions(area, plan, member, pages)
    assert read.error is None and read.listed == 2
    assert _amounts(warehouse) == {} and "manifest.json" in _landed_files(area)
    assert _load(warehouse, area).counts.inserted == 2


def test_a_reader_holds_one_pages_objects_while_it_waits_on_mx_for_the_next(warehouse, area):
    held_when_asked = []

    def pages(**query):
        sent = []
        for n in range(3):
            held_when_asked.append([len(page.items) for page in sent])
            sent.append(Page([_payload(f"TRN-{n}-{i}") for i in range(2)]))
            yield sent[-1]

    member = MemberToFetch("MBR-1", "USR-1", dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    with warehouse.connect() as con:
        plan = plan_transaction_reads(con, area, [member], SyncPolicy(), run_id="run-1")
    read = extract_member_transactions(area, plan, member, pages)
    assert held_when_asked == [[], [0], [0, 0]]  # each page's objects freed once landed, before the next is asked
    assert read.listed == 6 and _load(warehouse, area).counts.inserted == 6


def test_a_sync_keeps_a_malformed_listed_record_from_looking_vanished_and_moves_the_watermark(warehouse):
    def pages(**query):
        yield Page([_payload("TRN-OK", updated_at="2026-11-22T08:00:00Z"), _payload("TRN-BAD", type="REFUND")])

    member = MemberToFetch("MBR-1", "USR-1", dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    with warehouse.connect() as con:  # TRN-BAD was loaded by an earlier run
        con.execute(
            "insert into raw.mx_transactions (guid, member_guid, account_guid, user_guid, status, type, amount, date,"
            " updated_at, payload, run_id, fetched_at) values ('TRN-BAD', 'MBR-1', 'ACT-1', 'USR-1', 'POSTED',"
            " 'DEBIT', 1, date '2026-11-20', now(), '{}', 'run-0', now())"
        )
    result = sync_member_transactions(warehouse, member, pages, policy=SyncPolicy(), run_id="run-1")
    assert result.error is None and result.listed == 2 and result.quarantined == 1 and result.removed == 0
    with warehouse.connect() as con:
        removed = con.execute("select guid from raw.mx_transactions where removed_at is not null").fetchall()
        (watermark,) = con.execute(
            "select transactions_watermark from ops.member_sync where member_guid = 'MBR-1'"
        ).fetchone()
    assert removed == [] and watermark == dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC)


def test_a_member_synced_page_by_page_matches_the_sandbox_amount_by_amount(
    warehouse, sandbox, sandbox_client, mx_bank_member
):
    user_guid, member_guid = mx_bank_member
    with sandbox.world.lock:
        aggregated_at = sandbox.world.members[member_guid].successfully_aggregated_at
        truth = {
            t.guid: (Decimal(str(t.amount)), t.type, t.date) for t in sandbox.world.transactions_of_member(member_guid)
        }
    pages = lambda **query: sandbox_client.list_member_transaction_pages(user_guid, member_guid, **query)  # noqa: E731
    member = MemberToFetch(member_guid, user_guid, aggregated_at)
    result = sync_member_transactions(warehouse, member, pages, policy=SyncPolicy(), run_id="run-1")
    assert result.error is None and result.quarantined == 0
    with warehouse.connect() as con:
        rows = con.execute("select guid, amount, type, date from raw.mx_transactions").fetchall()
    assert {guid: (amount, kind, day) for guid, amount, kind, day in rows} == truth


def test_a_member_whose_files_cannot_be_read_is_set_aside_with_its_reason_and_the_others_load(warehouse, area):
    _land(area, [Page([_payload("TRN-1")])], member_guid="MBR-1")
    _land(area, [Page([_payload("TRN-2", member_guid="MBR-2")])], member_guid="MBR-2")
    part = area.root_path / "transactions" / "run=run-1" / "member=MBR-1" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:100])  # truncated on disk
    report = _load(warehouse, area)
    assert report.members == ("MBR-2",) and set(_amounts(warehouse)) == {"TRN-2"}
    (reason, member, _), *_ = _quarantine_rows(warehouse)
    assert member == "MBR-1" and reason.startswith("landed files could not be loaded") and "member=MBR-1" in reason
    with warehouse.connect() as con:
        outcome = con.execute("select last_outcome, last_reason from ops.member_sync where member_guid = 'MBR-1'")
        (last_outcome, last_reason) = outcome.fetchone()
    assert last_outcome == "failed" and last_reason.startswith("transactions load failed")
    assert part.exists() and (part.parent / "unloadable.json").exists()  # kept for a person to look at
    assert _load(warehouse, area) == landed.LoadReport()  # and never in the way again


def _quarantine_rows(warehouse) -> list[tuple[str, str, str | None]]:
    with warehouse.connect() as con:
        return con.execute("select reason, member_guid, payload from ops.quarantine").fetchall()


def test_an_interrupted_load_sets_nothing_aside_and_the_next_load_takes_every_member(warehouse, area, monkeypatch):
    _land(area, [Page([_payload("TRN-1")])], member_guid="MBR-1")
    _land(area, [Page([_payload("TRN-2", member_guid="MBR-2")])], member_guid="MBR-2")

    def interrupted(*args, **kwargs):
        raise duckdb.InterruptException("INTERRUPT Error: Interrupted!")

    monkeypatch.setattr(landed, "merge", interrupted)
    api_log = ApiCallLog("run-1")
    api_log(ApiCall(dt.datetime.now(dt.UTC), "GET", "/users/{user_guid}/members/{member_guid}/transactions", 200,
                    20.0, 1, "req-1", "USR-1", "MBR-1", None))  # fmt: skip
    with pytest.raises(duckdb.InterruptException):  # the loader, not the files, failed: nothing is set aside
        _load(warehouse, area, api_log=api_log)
    assert _quarantine_rows(warehouse) == [] and _amounts(warehouse) == {}
    assert not list(area.root_path.rglob("unloadable.json"))
    with warehouse.connect() as con:  # what the run asked of MX is on record all the same
        assert con.execute("select request_id from ops.api_calls").fetchall() == [("req-1",)]
    monkeypatch.undo()
    report = _load(warehouse, area)
    assert set(report.members) == {"MBR-1", "MBR-2"} and set(_amounts(warehouse)) == {"TRN-1", "TRN-2"}


def test_a_member_too_large_for_the_loaders_memory_is_set_aside_and_never_stops_the_others(
    warehouse, area, monkeypatch
):
    _land(area, [Page([_payload("TRN-1")])], member_guid="MBR-1")
    _land(area, [Page([_payload("TRN-2", member_guid="MBR-2")])], member_guid="MBR-2")
    merge = landed.merge

    def out_of_memory_with_mbr_1(con, spec, source):
        ((big,),) = con.execute("select count(*) filter (where _member = 'MBR-1') from landed").fetchall()
        if big:  # as it would at every load: the member, not the moment, is too large
            raise duckdb.OutOfMemoryException("could not allocate block of size 256.0 KiB (256.0 MiB/256.0 MiB used)")
        return merge(con, spec, source)

    monkeypatch.setattr(landed, "merge", out_of_memory_with_mbr_1)
    report = _load(warehouse, area)
    assert report.members == ("MBR-2",) and set(_amounts(warehouse)) == {"TRN-2"}
    ((reason, member, _),) = _quarantine_rows(warehouse)
    assert member == "MBR-1" and "OutOfMemoryException" in reason
    assert _load(warehouse, area) == landed.LoadReport()  # set aside: never in the way again


def test_a_group_too_large_for_memory_loads_its_members_one_by_one(warehouse, area, monkeypatch):
    _land(area, [Page([_payload("TRN-1")])], member_guid="MBR-1")
    _land(area, [Page([_payload("TRN-2", member_guid="MBR-2")])], member_guid="MBR-2")
    merge, merged_alone = landed.merge, []

    def out_of_memory_unless_alone(con, spec, source):
        (members,) = con.execute("select count(distinct _member) from landed").fetchone()
        if members > 1:
            raise duckdb.OutOfMemoryException("could not allocate block of size 256.0 KiB")
        merged_alone.append(members)
        return merge(con, spec, source)

    monkeypatch.setattr(landed, "merge", out_of_memory_unless_alone)
    report = _load(warehouse, area)
    assert set(report.members) == {"MBR-1", "MBR-2"} and merged_alone == [1, 1]
    assert set(_amounts(warehouse)) == {"TRN-1", "TRN-2"} and _quarantine_rows(warehouse) == []
