"""Deterministic, realistic account and transaction data, generated lazily per member.

Each member gets its own ``random.Random`` seeded by (sandbox seed, member guid), so the same seed and the same
sequence of aggregations give the same data, and nothing is generated before a member first connects.
MX facts encoded: amounts unsigned with CREDIT/DEBIT (MX transactions webhook doc); pending rows are "often
deleted and replaced with a new POSTED transaction (with a new guid)" (S25 ``status``), and some never post.
"""

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from mx_pipeline.sandbox.catalogue import CITIES, EMPLOYERS, EVERYDAY, LANDLORDS, MONTHLY, Merchant
from mx_pipeline.sandbox.categories import CATEGORIES_BY_NAME
from mx_pipeline.sandbox.records import Account, MemberData, Transaction

PENDING_DAYS = 2  # card and debit spend from the last two days is still pending
VANISH_RATE = 0.1  # share of pending rows that disappear instead of posting
IN_PLACE_RATE = 0.2  # share that post under the same guid (MX: possible, "but more often" a new guid)
_EVERYDAY_MERCHANTS = [m for m, _ in EVERYDAY]
_EVERYDAY_CUM_WEIGHTS = []
_total = 0.0
for _, weight in EVERYDAY:
    _total += weight
    _EVERYDAY_CUM_WEIGHTS.append(_total)


@dataclass
class DataChanges:
    """What one aggregation did to a member's transactions (for webhook counts and the world's indexes)."""

    created: list[Transaction] = field(default_factory=list)
    updated: list[Transaction] = field(default_factory=list)
    removed: list[Transaction] = field(default_factory=list)


def _guid(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def start_member_data(seed: int, member_guid: str, user_guid: str, now: datetime) -> MemberData:
    """Profile and accounts for a member on its first successful aggregation."""
    rng = random.Random(f"{seed}:{member_guid}")
    profile = {
        "employer": rng.choice(EMPLOYERS),
        "paycheck": round(rng.uniform(1400, 4200), 2),
        "payday_parity": rng.randint(0, 1),  # biweekly Fridays
        "landlord": rng.choice(LANDLORDS),
        "rent": float(rng.choice(range(900, 2600, 25))),
        "rent_day": rng.randint(1, 5),
        "savings_transfer": float(rng.choice((100, 150, 200, 250, 300, 500))),
        "spend_level": rng.uniform(0.7, 1.4),
        "city": rng.choice(CITIES),
        "monthly": [m for m in MONTHLY if rng.random() < 0.75],
    }
    specs = [("CHECKING", None, "Everyday Checking")]
    if rng.random() < 0.8:
        specs.append(("SAVINGS", None, "High Yield Savings"))
    if rng.random() < 0.75:
        specs.append(("CREDIT_CARD", None, "Rewards Visa"))
    if rng.random() < 0.4:
        specs.append(("LOAN", "AUTO", "Auto Loan"))
    accounts = [_account(rng, member_guid, user_guid, kind, subtype, name, now) for kind, subtype, name in specs]
    return MemberData(rng=rng, profile=profile, accounts=accounts)


def _account(rng, member_guid, user_guid, kind, subtype, name, now) -> Account:
    is_card, is_loan = kind == "CREDIT_CARD", kind == "LOAN"
    balance = {
        "CHECKING": rng.uniform(800, 6000),
        "SAVINGS": rng.uniform(2000, 25000),
        "CREDIT_CARD": rng.uniform(200, 3000),
        "LOAN": rng.uniform(6000, 24000),
    }[kind]
    return Account(
        guid=_guid(rng, "ACT"),
        member_guid=member_guid,
        user_guid=user_guid,
        name=name,
        type=kind,
        subtype=subtype,
        account_number=f"{rng.randint(0, 9999):04d}",
        routing_number=None if is_card or is_loan else "091000019",
        balance=round(balance, 2),
        credit_limit=float(rng.choice((5000, 8000, 12000))) if is_card else None,
        apr=round(rng.uniform(15, 27), 2) if is_card else None,
        apy=round(rng.uniform(0.5, 4.5), 2) if kind == "SAVINGS" else None,
        interest_rate=round(rng.uniform(4, 9), 2) if is_loan else None,
        original_balance=round(balance * 1.6, 2) if is_loan else None,
        created_at=now,
        updated_at=now,
    )


def advance_member_data(
    data: MemberData, now: datetime, history_days: int, pending: list[Transaction], *, with_transactions: bool = True
) -> DataChanges:
    """Settle old pending rows and write every day since the last aggregation (plus a little of today)."""
    changes = DataChanges()
    if not with_transactions:
        return changes
    rng = data.rng
    for txn in pending:
        if (now.date() - txn.date).days < PENDING_DAYS:
            continue
        draw = rng.random()
        if draw < IN_PLACE_RATE:
            _post_in_place(rng, txn, now)
            changes.updated.append(txn)
            continue
        changes.removed.append(txn)
        if draw >= IN_PLACE_RATE + VANISH_RATE:
            changes.created.append(_posted_copy(rng, txn, now))
    today = now.date()
    first_day = today - timedelta(days=history_days) if data.generated_through is None else data.generated_through
    day = first_day + timedelta(days=1) if data.generated_through is not None else first_day
    while day <= today:
        changes.created.extend(_day_events(data, day, now))
        day += timedelta(days=1)
    if data.generated_through == today:
        # A second aggregation on the same day still finds a fresh pending purchase or two.
        changes.created.extend(purchases_on(data, today, now, count=rng.randint(1, 2)))
    data.generated_through = today
    _move_balances(data, changes, now)
    return changes


def _settled_amount(rng: random.Random, pending: Transaction) -> float:
    if pending.merchant_category_code in (5812, 5814) and rng.random() < 0.5:
        return round(pending.amount * rng.uniform(1.1, 1.25), 2)  # the tip lands when a restaurant charge posts
    return pending.amount


def _post_in_place(rng: random.Random, txn: Transaction, now: datetime) -> None:
    txn.amount = _settled_amount(rng, txn)
    txn.status = "POSTED"
    txn.posted_at = min(now, datetime.combine(txn.date + timedelta(days=1), time(12), UTC))
    txn.original_description = txn.original_description.removeprefix("PENDING ")
    txn.updated_at = now


def _posted_copy(rng: random.Random, pending: Transaction, now: datetime) -> Transaction:
    amount = _settled_amount(rng, pending)
    posted_at = min(now, datetime.combine(pending.date + timedelta(days=1), time(12), UTC))
    return Transaction(
        guid=_guid(rng, "TRN"),
        account_guid=pending.account_guid,
        member_guid=pending.member_guid,
        user_guid=pending.user_guid,
        amount=amount,
        type=pending.type,
        status="POSTED",
        description=pending.description,
        original_description=pending.original_description.removeprefix("PENDING "),
        category_guid=pending.category_guid,
        merchant_guid=pending.merchant_guid,
        merchant_category_code=pending.merchant_category_code,
        transacted_at=pending.transacted_at,
        posted_at=posted_at,
        created_at=now,
        updated_at=now,
        kind=pending.kind,
    )


def _accounts_by_type(data: MemberData) -> dict[str, Account]:
    return {a.type: a for a in data.accounts}


def _day_events(data: MemberData, day: date, now: datetime) -> list[Transaction]:
    profile, rng, accounts = data.profile, data.rng, _accounts_by_type(data)
    checking = accounts["CHECKING"]
    events: list[Transaction] = []

    def add(account, amount, kind_of_flow, description, raw, category, merchant=None, hour=None, txn_kind="bill"):
        events.append(
            _make(data, account, day, now, amount, kind_of_flow, description, raw, category, merchant, hour, txn_kind)
        )

    if day.weekday() == 4 and day.isocalendar().week % 2 == profile["payday_parity"]:
        employer = profile["employer"]
        raw = f"{employer.upper()} PAYROLL PPD ID: {rng.randint(1000000, 9999999)}"
        add(checking, profile["paycheck"], "CREDIT", f"{employer} Payroll", raw, "Paycheck", hour=9, txn_kind="payroll")
    if day.day == profile["rent_day"]:
        raw = f"{profile['landlord'].upper()} ACH DEBIT"
        add(checking, profile["rent"], "DEBIT", profile["landlord"], raw, "Mortgage & Rent", hour=7)
    for merchant, day_of_month, kind in profile["monthly"]:
        if day.day == day_of_month:
            amount = round(rng.uniform(merchant.low, merchant.high), 2)
            target = accounts.get("CREDIT_CARD", checking) if kind == "subscription" else checking
            add(
                target,
                amount,
                "DEBIT",
                merchant.name,
                merchant.raw_descriptor,
                merchant.category_name,
                merchant,
                6,
                kind,
            )
    if "SAVINGS" in accounts and day.day == 16:
        amount, savings = profile["savings_transfer"], accounts["SAVINGS"]
        add(
            checking,
            amount,
            "DEBIT",
            "Transfer to Savings",
            f"ONLINE TRANSFER TO SAV ...{savings.account_number}",
            "Transfer",
            hour=8,
            txn_kind="transfer",
        )
        add(
            savings,
            amount,
            "CREDIT",
            "Transfer from Checking",
            f"ONLINE TRANSFER FROM CHK ...{checking.account_number}",
            "Transfer",
            hour=8,
            txn_kind="transfer",
        )
    if "SAVINGS" in accounts and day.day == 28:
        interest = round(accounts["SAVINGS"].balance * (accounts["SAVINGS"].apy or 1) / 1200, 2)
        add(
            accounts["SAVINGS"],
            interest,
            "CREDIT",
            "Interest Payment",
            "INTEREST PAID",
            "Interest Income",
            hour=3,
            txn_kind="interest",
        )
    if "CREDIT_CARD" in accounts and day.day == 22:
        card = accounts["CREDIT_CARD"]
        amount = round(rng.uniform(300, 1500), 2)
        add(
            checking,
            amount,
            "DEBIT",
            "Credit Card Payment",
            f"MXBANK CARD ONLINE PMT ****{card.account_number}",
            "Credit Card Payment",
            hour=10,
            txn_kind="transfer",
        )
        add(
            card,
            amount,
            "CREDIT",
            "Payment Thank You",
            "PAYMENT - THANK YOU",
            "Credit Card Payment",
            hour=10,
            txn_kind="transfer",
        )
    if "LOAN" in accounts and day.day == 10:
        amount = round((accounts["LOAN"].original_balance or 10000) / 60, 2)
        add(checking, amount, "DEBIT", "Auto Loan Payment", "MXBANK AUTO LOAN PMT", "Auto Payment", hour=5)
    if rng.random() < 0.02:
        add(
            checking,
            float(rng.choice((2.5, 3.0, 12.0))),
            "DEBIT",
            "ATM Fee",
            "NON-NETWORK ATM FEE",
            "ATM Fee",
            txn_kind="fee",
        )
    count = int(rng.random() * 8 * profile["spend_level"])
    events.extend(purchases_on(data, day, now, count))
    return events


def purchases_on(data: MemberData, day: date, now: datetime, count: int) -> list[Transaction]:
    """``count`` everyday purchases on ``day`` (pending when recent), drawn from the member's RNG."""
    rng, accounts = data.rng, _accounts_by_type(data)
    payment_accounts = [accounts["CHECKING"], *([accounts["CREDIT_CARD"]] if "CREDIT_CARD" in accounts else [])]
    merchants = rng.choices(_EVERYDAY_MERCHANTS, cum_weights=_EVERYDAY_CUM_WEIGHTS, k=count)
    result = []
    for merchant in merchants:
        account = payment_accounts[0] if rng.random() < 0.45 else payment_accounts[-1]
        amount = round(rng.uniform(merchant.low, merchant.high), 2)
        raw = merchant.raw_descriptor.format(
            store=rng.randint(100, 9999), city=data.profile["city"], ref=f"{rng.getrandbits(32):08X}"
        )
        result.append(
            _make(
                data,
                account,
                day,
                now,
                amount,
                "DEBIT",
                merchant.name,
                raw,
                merchant.category_name,
                merchant,
                None,
                "spend",
            )
        )
    return result


def _make(
    data, account, day, now, amount, flow, description, raw, category_name, merchant: Merchant | None, hour, txn_kind
) -> Transaction:
    rng = data.rng
    transacted_at = datetime.combine(
        day, time(hour if hour is not None else rng.randint(7, 22), rng.randint(0, 59)), UTC
    )
    transacted_at = min(transacted_at, now - timedelta(minutes=1))
    is_pending = txn_kind == "spend" and (now.date() - day).days < PENDING_DAYS
    category = CATEGORIES_BY_NAME[category_name]
    return Transaction(
        guid=_guid(rng, "TRN"),
        account_guid=account.guid,
        member_guid=account.member_guid,
        user_guid=account.user_guid,
        amount=round(amount, 2),
        type=flow,
        status="PENDING" if is_pending else "POSTED",
        description=description,
        original_description=("PENDING " if is_pending else "") + raw,
        category_guid=category.guid,
        merchant_guid=merchant.guid if merchant else None,
        merchant_category_code=merchant.mcc if merchant else None,
        transacted_at=transacted_at,
        posted_at=None if is_pending else min(now, datetime.combine(day, time(12), UTC) + timedelta(days=1)),
        created_at=now,
        updated_at=now,
        kind=txn_kind,
    )


def _move_balances(data: MemberData, changes: DataChanges, now: datetime) -> None:
    by_guid = {a.guid: a for a in data.accounts}
    for txn in [*changes.created, *changes.updated]:
        if txn.status != "POSTED":
            continue
        account = by_guid[txn.account_guid]
        is_debt = account.type in ("CREDIT_CARD", "LOAN")
        grows = (txn.type == "DEBIT") == is_debt
        account.balance = round(account.balance + (txn.amount if grows else -txn.amount), 2)
    for account in data.accounts:
        account.imported_at = now
        account.updated_at = now
