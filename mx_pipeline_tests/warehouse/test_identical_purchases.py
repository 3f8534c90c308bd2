"""Identical purchases are two purchases; a copy MX re-issues under a new guid is one (issue 10, item 4).

Against the sandbox, with the loader writing one row per batch: only a guid MX stopped listing leaves the marts,
whatever batches, fetches or resumed syncs the rows arrived in. The warehouse is compared with the sandbox's
own transactions amount by amount.
"""

import dataclasses
from decimal import Decimal

import pytest
import requests

from mx_pipeline.mx.errors import MalformedResponse
from mx_pipeline.mx.pagination import Page
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.models import load_models, load_reference, run_model
from mx_pipeline.warehouse.transaction_sync import ONE_DAY, SyncPolicy, sync_member_transactions
from mx_pipeline_tests.conftest import FAST_SANDBOX


@pytest.fixture
def sandbox():
    """The FAST sandbox with 35 days of history: purchases weeks old, and few enough rows for batches of one."""
    with running_sandbox(**FAST_SANDBOX, history_days=35) as handle:
        yield handle


class CountingMx:
    """The member's transaction list through our client, counting each list call; may break part-way once."""

    def __init__(self, client, user_guid, member_guid):
        self.client, self.user_guid, self.member_guid = client, user_guid, member_guid
        self.queries: list[dict] = []
        self.break_after: int | None = None

    def __call__(self, **query):
        self.queries.append({k: v for k, v in query.items() if v is not None})
        pages = self.client.list_member_transaction_pages(self.user_guid, self.member_guid, **query)
        for served, payload in enumerate(item for page in pages for item in page.items):
            if self.break_after is not None and served == self.break_after:
                self.break_after = None
                raise MalformedResponse("HTTP 200 body is not valid JSON (512 bytes)", method="GET", path="/t")
            yield Page([payload])  # a page a record, so a read can break between any two


def _sync(warehouse, sandbox, mx: CountingMx, run_id: str, batch_size: int = 1):
    with sandbox.world.lock:
        aggregated_at = sandbox.world.members[mx.member_guid].successfully_aggregated_at
    member = MemberToFetch(mx.member_guid, mx.user_guid, aggregated_at)
    return sync_member_transactions(warehouse, member, mx, policy=SyncPolicy(), run_id=run_id, batch_size=batch_size)


def _two_days_later(sandbox, sandbox_client, member):
    """Two days pass at MX and the member aggregates: the watermark moves past the rows before them."""
    requests.post(f"{sandbox.base_url}/_sandbox/clock/advance", json={"days": 2}, timeout=10).raise_for_status()
    sandbox_client.aggregate_member(*member)


def _fct(warehouse) -> list[tuple[str, Decimal]]:
    with warehouse.connect() as con:
        load_reference(con)
        models = load_models()
        needed = {"marts.fct_transactions"}
        for model in reversed(models):  # fct and what it reads, nothing else
            if model.name in needed:
                needed |= model.reads
        for model in models:
            if model.name in needed:
                run_model(con, model, run_id="test")
        rows = con.execute("select transaction_guid, amount from marts.fct_transactions order by 1").fetchall()
    return [(guid, Decimal(amount)) for guid, amount in rows]


def _truth(sandbox, member_guid) -> list[tuple[str, Decimal]]:
    """Every transaction the sandbox lists for the member, signed the warehouse's way (debits negative)."""
    with sandbox.world.lock:
        rows = sandbox.world.transactions_of_member(member_guid)
    signed = [(t.guid, Decimal(str(t.amount)) * (-1 if t.type == "DEBIT" else 1)) for t in rows]
    return sorted(signed)


def _old_purchase(sandbox, member_guid, days_old=20):
    """A posted everyday purchase dated ``days_old`` days or more before the sandbox's today."""
    with sandbox.world.lock:
        today = sandbox.world.now().date()
        rows = sandbox.world.transactions_of_member(member_guid)
    old = [t for t in rows if t.kind == "spend" and t.status == "POSTED" and (today - t.date).days >= days_old]
    return sorted(old, key=lambda t: (t.date, t.guid), reverse=True)[0]


def _copy_in_sandbox(sandbox, original, *, replaces: bool):
    """Give ``original`` a twin under a new guid, changed now; ``replaces``: MX stops listing the original
    (a re-issue), else both are listed (a second identical purchase)."""
    world = sandbox.world
    with world.lock:
        now = world.now()
        copy = dataclasses.replace(original, guid=world.new_guid("TRN"), created_at=now, updated_at=now)
        rows = world.transactions[original.member_guid]
        if replaces:
            del rows[original.guid]
        rows[copy.guid] = copy
    return copy


def _removed(warehouse, guid):
    with warehouse.connect() as con:
        return con.execute("select removed_at is not null from raw.mx_transactions where guid = ?", [guid]).fetchone()


def test_two_identical_purchases_in_one_first_sync_both_count_with_a_batch_of_one(
    warehouse, sandbox, sandbox_client, mx_bank_member
):
    coffee = _old_purchase(sandbox, mx_bank_member[1])
    second = _copy_in_sandbox(sandbox, coffee, replaces=False)
    result = _sync(warehouse, sandbox, CountingMx(sandbox_client, *mx_bank_member), "run-1")
    assert result.error is None and result.removed == 0
    fct = _fct(warehouse)
    assert fct == _truth(sandbox, mx_bank_member[1])
    assert {coffee.guid, second.guid} <= {guid for guid, _ in fct}


def test_identical_purchases_across_a_resumed_first_sync_both_count(warehouse, sandbox, sandbox_client, mx_bank_member):
    coffee = _old_purchase(sandbox, mx_bank_member[1])
    second = _copy_in_sandbox(sandbox, coffee, replaces=False)
    mx = CountingMx(sandbox_client, *mx_bank_member)
    mx.break_after = 5  # the first sync stores a few rows, then a page breaks
    assert _sync(warehouse, sandbox, mx, "run-1").error
    assert _sync(warehouse, sandbox, mx, "run-2").error is None  # resumed: the whole history again
    fct = _fct(warehouse)
    assert fct == _truth(sandbox, mx_bank_member[1])
    assert {coffee.guid, second.guid} <= {guid for guid, _ in fct}


def test_a_late_identical_purchase_counts_and_a_late_re_issued_copy_counts_once(
    warehouse, sandbox, sandbox_client, mx_bank_member
):
    mx = CountingMx(sandbox_client, *mx_bank_member)
    _sync(warehouse, sandbox, mx, "run-1", batch_size=1000)
    _two_days_later(sandbox, sandbox_client, mx_bank_member)
    _sync(warehouse, sandbox, mx, "run-2", batch_size=1000)  # the watermark moves past the first day's rows
    assert _fct(warehouse) == _truth(sandbox, mx_bank_member[1])
    coffee = _old_purchase(sandbox, mx_bank_member[1], days_old=20)
    fare = _old_purchase(sandbox, mx_bank_member[1], days_old=30)
    second_coffee = _copy_in_sandbox(sandbox, coffee, replaces=False)  # reported by the bank weeks late
    re_issued = _copy_in_sandbox(sandbox, fare, replaces=True)  # MX re-issues the fare under a new guid
    _two_days_later(sandbox, sandbox_client, mx_bank_member)

    mx.queries.clear()
    assert _sync(warehouse, sandbox, mx, "run-3").error is None
    assert _removed(warehouse, fare.guid) == (True,) and _removed(warehouse, re_issued.guid) == (False,)
    assert _removed(warehouse, coffee.guid) == (False,) and _removed(warehouse, second_coffee.guid) == (False,)
    assert _fct(warehouse) == _truth(sandbox, mx_bank_member[1])  # amount by amount: the fare once, both coffees
    # changed + recent, then the late days by date (more than a week apart: one read each)
    assert mx.queries[2:] == [
        {"from_date": fare.date - ONE_DAY, "to_date": fare.date + ONE_DAY},
        {"from_date": coffee.date - ONE_DAY, "to_date": coffee.date + ONE_DAY},
    ]

    mx.queries.clear()
    _two_days_later(sandbox, sandbox_client, mx_bank_member)
    _sync(warehouse, sandbox, mx, "run-4")
    assert len(mx.queries) == 2  # nothing late arrived: no extra read
    assert _fct(warehouse) == _truth(sandbox, mx_bank_member[1])
