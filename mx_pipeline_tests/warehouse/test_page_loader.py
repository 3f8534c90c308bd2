"""The transactions hot path (issue 14, item 2): a page goes to DuckDB whole and is validated there, set-based."""

import datetime as dt
from decimal import Decimal

import simplejson

from mx_pipeline.mx.pagination import Page
from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.page_loader import TransactionPageLoader
from mx_pipeline.warehouse.transaction_sync import SyncPolicy, sync_member_transactions

from .conftest import make_transaction


def _payload(guid, **overrides) -> dict:
    return {**make_transaction(guid).payload, **overrides}


def _loader(warehouse, **kwargs) -> TransactionPageLoader:
    return TransactionPageLoader(warehouse, member_guid="MBR-1", run_id="run-1", **kwargs)


def _amounts(warehouse) -> dict[str, Decimal]:
    with warehouse.connect() as con:
        return dict(con.execute("select guid, amount from raw.mx_transactions").fetchall())


def _quarantine(warehouse) -> dict[str, tuple[str, str | None, dict]]:
    with warehouse.connect() as con:
        rows = con.execute("select record_guid, reason, member_guid, payload from ops.quarantine").fetchall()
    return {guid: (reason, member, simplejson.loads(payload)) for guid, reason, member, payload in rows}


def test_a_malformed_record_is_quarantined_with_its_reason_and_the_rest_of_the_page_loads(warehouse):
    page = Page(
        [
            _payload("TRN-1"),
            _payload("TRN-TEXT-AMOUNT", amount="12.50"),  # a quoted number breaks MX's contract
            _payload("TRN-SETTLING", status="SETTLING", account_guid=None),
            _payload("TRN-3"),
        ]
    )
    with warehouse.connect() as con:
        loader = _loader(warehouse)
        loader.add(page)
        loader.flush(con)
    assert loader.counts.inserted == 2 and loader.quarantined == 2
    assert set(_amounts(warehouse)) == {"TRN-1", "TRN-3"}
    refused = _quarantine(warehouse)
    assert refused["TRN-TEXT-AMOUNT"][0] == "amount: expected a number (got 12.50)"
    assert refused["TRN-TEXT-AMOUNT"][1] == "MBR-1" and refused["TRN-TEXT-AMOUNT"][2]["amount"] == "12.50"
    assert refused["TRN-SETTLING"][0] == (
        "account_guid is missing or null (got null); status: not one of PENDING, POSTED (got SETTLING)"
    )


def test_amounts_are_exact_and_one_the_column_would_round_is_quarantined_not_rounded(warehouse):
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
    loader = _loader(warehouse)
    loader.add(Page([_payload(guid, amount=Decimal(text)) for guid, text in amounts.items()]))
    loader.flush()
    assert _amounts(warehouse) == {
        guid: Decimal(text) for guid, text in amounts.items() if not guid.startswith(("TRN-TOO", "TRN-BEYOND"))
    }
    refused = _quarantine(warehouse)
    assert set(refused) == {"TRN-TOO-PRECISE", "TRN-TOO-LONG", "TRN-BEYOND-DOUBLE"}
    assert refused["TRN-TOO-PRECISE"][0].startswith("amount: more than 4 decimals or 14 integer digits")
    assert refused["TRN-TOO-LONG"][0].startswith("amount: more than 15 significant digits")
    assert refused["TRN-BEYOND-DOUBLE"][0].startswith("amount: more than 15 significant digits")


class _Counting:
    """A connection that counts the statements it runs."""

    def __init__(self, con):
        self.con, self.statements = con, 0

    def execute(self, *args):
        self.statements += 1
        return self.con.execute(*args)

    def __getattr__(self, name):
        return getattr(self.con, name)


def _statements_to_write(warehouse, pages: list[Page]) -> int:
    loader = _loader(warehouse, batch_size=10**9)
    for page in pages:
        loader.add(page)
    with warehouse.connect() as con:
        counting = _Counting(con)
        loader.flush(counting)
    return counting.statements


def test_a_batch_costs_the_same_statements_whatever_its_records_and_pages(warehouse):
    few = _statements_to_write(warehouse, [Page([_payload(f"TRN-A{i}") for i in range(3)])])
    many = _statements_to_write(warehouse, [Page([_payload(f"TRN-B{p}-{i}") for i in range(500)]) for p in range(4)])
    assert few == many <= 12
    assert len(_amounts(warehouse)) == 3 + 2000


def test_a_later_version_in_the_same_batch_wins_and_an_unchanged_re_read_is_not_rewritten(warehouse):
    early = _payload("TRN-1", updated_at="2026-11-20T12:00:00Z", amount=Decimal("1.00"))
    late = _payload("TRN-1", updated_at="2026-11-21T12:00:00Z", amount=Decimal("2.00"))
    loader = _loader(warehouse)
    loader.add(Page([late, early]))  # the later version first: newer wins, not the later row
    loader.flush()
    loader.add(Page([late]))
    assert loader.flush().unchanged == 1
    assert _amounts(warehouse) == {"TRN-1": Decimal("2.00")}
    assert loader.latest_updated_at == dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)


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
