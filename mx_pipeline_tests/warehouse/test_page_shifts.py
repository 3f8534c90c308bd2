"""A list whose pages move while it is read (MX deletes or adds records between two of its pages) is read again from
page 1: every record MX still lists reaches the warehouse, and none it still lists is marked removed (found by an
outside-in audit: 5 of a member's history never loaded, or marked removed, in runs that all succeeded)."""

from decimal import Decimal

import pytest
import requests

from mx_pipeline.mx.errors import ListShifted
from mx_pipeline.mx.pagination import LIST_READS, Page
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.transaction_sync import SyncPolicy, sync_member_transactions
from mx_pipeline_tests.conftest import FAST_SANDBOX


@pytest.fixture
def sandbox():
    """Two years of history: a member's transactions take two pages of 1,000."""
    with running_sandbox(**FAST_SANDBOX, history_days=700) as handle:
        yield handle


class ShiftingMx:
    """The member's pages through our client; after page 1 of the first ``shifts`` reads, MX deletes its newest
    records (pendings it drops), so every older record moves up a page."""

    def __init__(self, sandbox, client, user_guid, member_guid, *, shifts=1, deleted=5):
        self.sandbox, self.client, self.user_guid, self.member_guid = sandbox, client, user_guid, member_guid
        self.shifts, self.deleted, self.reads = shifts, deleted, 0
        self.deleted_guids: set[str] = set()

    def __call__(self, **query):
        self.reads += 1
        for number, page in enumerate(
            self.client.list_member_transaction_pages(self.user_guid, self.member_guid, **query), 1
        ):
            yield page
            if number == 1 and self.shifts:
                self.shifts -= 1
                self._delete_newest()

    def _delete_newest(self):
        with self.sandbox.world.lock:
            rows = self.sandbox.world.transactions[self.member_guid]
            for row in sorted(rows.values(), key=lambda t: (t.date, t.guid), reverse=True)[: self.deleted]:
                del rows[row.guid]
                self.deleted_guids.add(row.guid)


def _sync(warehouse, sandbox, mx, run_id):
    with sandbox.world.lock:
        aggregated_at = sandbox.world.members[mx.member_guid].successfully_aggregated_at
    member = MemberToFetch(mx.member_guid, mx.user_guid, aggregated_at)
    return sync_member_transactions(warehouse, member, mx, policy=SyncPolicy(), run_id=run_id)


def _live(warehouse):
    with warehouse.connect() as con:
        return {g for (g,) in con.execute("select guid from raw.mx_transactions where removed_at is null").fetchall()}


def _at_mx(sandbox, member_guid):
    with sandbox.world.lock:
        return {t.guid for t in sandbox.world.transactions_of_member(member_guid)}


def _a_month_later(sandbox, client, user_guid, member_guid):
    requests.post(f"{sandbox.base_url}/_sandbox/clock/advance", json={"days": 30}, timeout=10).raise_for_status()
    client.aggregate_member(user_guid, member_guid)


def test_a_first_sync_whose_pages_shift_reads_again_and_loads_every_record(
    warehouse, sandbox, sandbox_client, mx_bank_member
):
    _a_month_later(sandbox, sandbox_client, *mx_bank_member)  # the history's updated_at is a month old
    mx = ShiftingMx(sandbox, sandbox_client, *mx_bank_member)
    result = _sync(warehouse, sandbox, mx, "run-1")
    assert result.error is None and mx.reads == 2
    # Every record MX lists, and the ones it deleted after page 1: the first read landed them, and they stay until a
    # read lists their dates again (the next reconcile), as any record MX deletes between two reads.
    assert _live(warehouse) == _at_mx(sandbox, mx_bank_member[1]) | mx.deleted_guids


def test_a_full_read_whose_pages_shift_marks_nothing_mx_still_lists_removed(
    warehouse, sandbox, sandbox_client, mx_bank_member
):
    first = ShiftingMx(sandbox, sandbox_client, *mx_bank_member, shifts=0)
    assert _sync(warehouse, sandbox, first, "run-1").error is None
    with warehouse.connect() as con:  # away over 6 months: the next read lists the whole history by date
        con.execute(
            "update ops.member_sync set transactions_watermark = timestamp '2020-01-01', synced_aggregated_at = null"
        )
    _a_month_later(sandbox, sandbox_client, *mx_bank_member)
    mx = ShiftingMx(sandbox, sandbox_client, *mx_bank_member)
    assert _sync(warehouse, sandbox, mx, "run-2").error is None
    assert _live(warehouse) == _at_mx(sandbox, mx_bank_member[1]) | mx.deleted_guids


def test_a_list_that_keeps_shifting_fails_the_read_and_a_later_one_loads_it_whole(
    warehouse, sandbox, sandbox_client, mx_bank_member
):
    _a_month_later(sandbox, sandbox_client, *mx_bank_member)
    mx = ShiftingMx(sandbox, sandbox_client, *mx_bank_member, shifts=LIST_READS, deleted=1)
    result = _sync(warehouse, sandbox, mx, "run-1")
    assert ListShifted.__name__ in result.error and "the list changed while it was read" in result.error
    assert _sync(warehouse, sandbox, mx, "run-2").error is None  # its reconcile finds the deleted ones vanished
    at_mx = _at_mx(sandbox, mx_bank_member[1])
    assert at_mx <= _live(warehouse) <= at_mx | mx.deleted_guids


class ShiftingPages:
    """A refused record on page 1; the first read finds the list changed before page 2."""

    def __init__(self):
        self.reads = 0

    def __call__(self, **query):
        self.reads += 1
        yield Page([_transaction("TRN-1"), _transaction("TRN-BAD", amount=None)])
        if self.reads == 1:
            raise ListShifted("the list changed while it was read: 3 records on page 1, 4 on page 2")
        yield Page([_transaction("TRN-2")])


def _transaction(guid, amount="12.34"):
    return {"guid": guid, "member_guid": "MBR-1", "account_guid": "ACT-1", "user_guid": "USR-1",
            "amount": Decimal(amount) if amount else None, "type": "DEBIT", "status": "POSTED",
            "currency_code": "USD", "date": "2026-11-20", "updated_at": "2026-11-20T12:00:00Z"}  # fmt: skip


def test_a_record_refused_by_a_read_done_again_is_quarantined_once(warehouse):
    mx = ShiftingPages()
    result = sync_member_transactions(
        warehouse, MemberToFetch("MBR-1", "USR-1", None), mx, policy=SyncPolicy(), run_id="run-1"
    )
    assert result.error is None and mx.reads == 2 and result.listed == 3
    with warehouse.connect() as con:
        raw = con.execute("select guid from raw.mx_transactions order by guid").fetchall()
        quarantined = con.execute("select record_guid, reason from ops.quarantine").fetchall()
    assert raw == [("TRN-1",), ("TRN-2",)]
    [(guid, reason)] = quarantined
    assert guid == "TRN-BAD" and "amount is missing or null" in reason
