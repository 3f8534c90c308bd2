"""MX's change filter reaches back at most 6 months (issue 10, item 8), against the sandbox's clock.

A member away longer (waiting months for a reconnect) is read again in full by date, and its watermark moves
again; whatever MX's clock says, our client never sends a range the sandbox refuses.
"""

import datetime as dt
from decimal import Decimal

import requests

from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.transaction_sync import SyncPolicy, sync_member_transactions


class RecordingMx:
    """The member's transaction list through our client, recording each query."""

    def __init__(self, client, user_guid, member_guid):
        self.client, self.user_guid, self.member_guid = client, user_guid, member_guid
        self.queries: list[dict] = []

    def __call__(self, **query):
        self.queries.append({k: v for k, v in query.items() if v is not None})
        return self.client.list_member_transaction_pages(self.user_guid, self.member_guid, **query)


def _aggregated_at(sandbox, member_guid) -> dt.datetime:
    with sandbox.world.lock:
        return sandbox.world.members[member_guid].successfully_aggregated_at


def _sync(warehouse, mx: RecordingMx, aggregated_at: dt.datetime, run_id: str):
    member = MemberToFetch(mx.member_guid, mx.user_guid, aggregated_at)
    return sync_member_transactions(warehouse, member, mx, policy=SyncPolicy(), run_id=run_id)


def _advance(sandbox, days: int) -> None:
    requests.post(f"{sandbox.base_url}/_sandbox/clock/advance", json={"days": days}, timeout=10).raise_for_status()


def _watermark(warehouse):
    with warehouse.connect() as con:
        return con.execute("select transactions_watermark, last_outcome from ops.member_sync").fetchone()


def _live(warehouse) -> list[tuple[str, Decimal]]:
    with warehouse.connect() as con:
        rows = con.execute(
            "select guid, amount from raw.mx_transactions where removed_at is null order by guid"
        ).fetchall()
    return [(guid, Decimal(amount)) for guid, amount in rows]


def _truth(sandbox, member_guid, since: dt.date) -> list[tuple[str, Decimal]]:
    with sandbox.world.lock:
        rows = sandbox.world.transactions_of_member(member_guid)
    return sorted((t.guid, Decimal(str(t.amount))) for t in rows if t.date >= since)


def test_a_member_back_after_seven_months_is_read_again_in_full_and_its_watermark_moves(
    warehouse, sandbox, sandbox_client, mx_bank_member
):
    mx = RecordingMx(sandbox_client, *mx_bank_member)
    assert _sync(warehouse, mx, _aggregated_at(sandbox, mx_bank_member[1]), "run-1").error is None
    _advance(sandbox, 213)  # seven months waiting for a reconnect
    sandbox_client.aggregate_member(*mx_bank_member)  # the user reconnects
    back_at = _aggregated_at(sandbox, mx_bank_member[1])

    mx.queries.clear()
    result = _sync(warehouse, mx, back_at, "run-2")
    assert result.error is None
    today = back_at.date()
    assert mx.queries == [{"from_date": today - dt.timedelta(days=731), "to_date": today + dt.timedelta(days=6)}]
    assert _watermark(warehouse) == (back_at, "synced")
    # the full read settled everything it covers: the warehouse lists what the sandbox lists, amount by amount
    assert _live(warehouse) == _truth(sandbox, mx_bank_member[1], since=today - dt.timedelta(days=730))

    mx.queries.clear()
    _advance(sandbox, 1)
    sandbox_client.aggregate_member(*mx_bank_member)
    assert _sync(warehouse, mx, _aggregated_at(sandbox, mx_bank_member[1]), "run-3").error is None
    assert mx.queries[0]["from_updated_at"] == today  # incremental again, from the watermark's day


def test_no_range_we_send_is_refused_whatever_mx_s_clock_says(warehouse, sandbox, sandbox_client, mx_bank_member):
    mx = RecordingMx(sandbox_client, *mx_bank_member)
    aggregated_at = _aggregated_at(sandbox, mx_bank_member[1])
    _sync(warehouse, mx, aggregated_at, "run-1")
    _advance(sandbox, 213)  # MX's today moves on; the member has not aggregated since, so ours cannot tell
    result = _sync(warehouse, mx, aggregated_at, "run-2")
    assert result.error is None
    changed = mx.queries[1]
    assert (changed["to_updated_at"] - changed["from_updated_at"]).days <= 180  # a range MX judges as sent
