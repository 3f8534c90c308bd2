"""Generated data is realistic, deterministic by seed, and cheap enough for benchmarks."""

import itertools
from datetime import UTC, datetime, timedelta

from mx_pipeline.sandbox.datagen import advance_member_data, start_member_data

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def transactions(mx):
    user, _ = mx.connected_member()
    body = mx.get(f"/users/{user}/transactions", params={"records_per_page": 1000}).json()
    return [{k: v for k, v in t.items()} for t in body["transactions"]]


def test_the_same_seed_gives_the_same_data(start_sandbox):
    assert transactions(start_sandbox(seed=42)) == transactions(start_sandbox(seed=42))


def test_another_seed_gives_other_data(start_sandbox):
    first, second = transactions(start_sandbox(seed=1)), transactions(start_sandbox(seed=2))
    assert {t["guid"] for t in first}.isdisjoint({t["guid"] for t in second})


def test_recurring_merchants_and_biweekly_payroll_recur():
    data = start_member_data(0, "MBR-a", "USR-a", NOW)
    rows = advance_member_data(data, NOW, 120, []).created
    paychecks = sorted(t.date for t in rows if t.kind == "payroll")
    assert len(paychecks) >= 8
    assert {(b - a).days for a, b in itertools.pairwise(paychecks)} == {14}
    subscriptions = [t for t in rows if t.kind == "subscription"]
    by_merchant = {}
    for t in subscriptions:
        by_merchant.setdefault(t.merchant_guid, []).append(t)
    assert any(len(v) >= 3 for v in by_merchant.values())


def test_transfers_have_two_legs_in_opposite_directions():
    data = start_member_data(0, "MBR-b", "USR-b", NOW)
    rows = advance_member_data(data, NOW, 120, []).created
    transfers = [t for t in rows if t.kind == "transfer"]
    by_day = {}
    for t in transfers:
        by_day.setdefault((t.date, t.amount), set()).add(t.type)
    assert by_day and all(types == {"CREDIT", "DEBIT"} for types in by_day.values())


def test_pending_rows_post_under_a_new_guid_post_in_place_or_vanish():
    reposted = in_place = vanished = 0
    for n in range(30):
        data = start_member_data(0, f"MBR-{n}", "USR-c", NOW)
        pending = [t for t in advance_member_data(data, NOW, 5, []).created if t.status == "PENDING"]
        later = advance_member_data(data, NOW + timedelta(days=3), 5, pending)
        copies = [t for t in later.created if t.transacted_at in {p.transacted_at for p in pending}]
        assert all(t.status == "POSTED" and t.updated_at == NOW + timedelta(days=3) for t in later.updated)
        assert len(later.removed) + len(later.updated) == len(pending)
        reposted += len(copies)
        in_place += len(later.updated)
        vanished += len(later.removed) - len(copies)
    assert reposted > in_place > vanished > 0


def test_every_member_gets_a_full_history_of_two_to_five_hundred_transactions_in_120_days():
    # Generation speed is a benchmark's business (a timed test flakes on a loaded machine); the volume is ours:
    # a household's budget sets how often it buys (test_believable_bank), a few purchases a day.
    per_member = [
        len(advance_member_data(start_member_data(0, f"MBR-{n}", "USR-d", NOW), NOW, 120, []).created)
        for n in range(10)
    ]
    assert min(per_member) > 200 and max(per_member) < 600 and sum(per_member) > 3_000, per_member
