"""Deterministic, realistic account and transaction data, generated lazily per member.

What a member sees is the history of its bank login, and two random streams keep that apart from the member:
- content (profile, accounts by name and type, every day's dates, amounts and descriptions, and how each pending
  row settles) comes from the ``BankLogin``: seeded by (sandbox seed, user guid, institution code, LOGIN), and
  per day, so it does not depend on when or how often a member aggregated;
- guids come from the member's own stream, seeded by (sandbox seed, member guid).
So a bank removed and linked again (a new member for the same login) shows the same history under new guids, as
at MX, and the same seed with the same sequence of calls gives the same data. Nothing is generated before a
member first connects.
MX facts encoded: amounts unsigned with CREDIT/DEBIT (MX transactions webhook doc); pending rows are "often
deleted and replaced with a new POSTED transaction (with a new guid)" (S25 ``status``), and some never post.
"""

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from mx_pipeline.sandbox.catalogue import CITIES, EMPLOYERS, EVERYDAY, LANDLORDS, MONTHLY, Merchant
from mx_pipeline.sandbox.categories import CATEGORIES_BY_NAME
from mx_pipeline.sandbox.records import Account, BankLogin, MemberData, Settlement, Transaction

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


def bank_login_key(seed: int, user_guid: str, institution_code: str, login: str | None) -> str:
    """What makes two members the same bank login: the user, the institution and the LOGIN credential."""
    return f"{seed}:{user_guid}:{institution_code}:{login}"


def _guid(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def start_member_data(
    seed: int, member_guid: str, user_guid: str, now: datetime, bank: BankLogin | None = None
) -> MemberData:
    """Profile and accounts for a member on its first successful aggregation.

    ``bank`` is the login's shared history; without one the member is its own login (a private history).
    """
    bank = bank or BankLogin(key=f"{seed}:{member_guid}")
    rng = random.Random(bank.key)
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
    guids = random.Random(f"{seed}:{member_guid}")
    accounts = [
        _account(rng, _guid(guids, "ACT"), member_guid, user_guid, kind, subtype, name, now)
        for kind, subtype, name in specs
    ]
    profile["opening_balances"] = {a.type: a.balance for a in accounts}
    return MemberData(rng=guids, profile=profile, accounts=accounts, bank=bank)


def _account(rng, guid, member_guid, user_guid, kind, subtype, name, now) -> Account:
    is_card, is_loan = kind == "CREDIT_CARD", kind == "LOAN"
    balance = {
        "CHECKING": rng.uniform(800, 6000),
        "SAVINGS": rng.uniform(2000, 25000),
        "CREDIT_CARD": rng.uniform(200, 3000),
        "LOAN": rng.uniform(6000, 24000),
    }[kind]
    return Account(
        guid=guid,
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
    for txn in pending:
        if (now.date() - txn.date).days < PENDING_DAYS:
            continue
        settlement = txn.settles_as or Settlement("REISSUED", txn.amount)
        if settlement.outcome == "IN_PLACE":
            _post_in_place(txn, settlement.amount, now)
            changes.updated.append(txn)
            continue
        changes.removed.append(txn)
        if settlement.outcome == "REISSUED":
            changes.created.append(_posted_copy(data.rng, txn, settlement.amount, now))
    today = now.date()
    if data.generated_through == today:
        # A second aggregation on the same day still finds a fresh pending purchase or two, at the bank.
        _bank_purchases_today(data.bank, today)
    else:
        day = today - timedelta(days=history_days) if data.generated_through is None else data.generated_through
        day += timedelta(days=0 if data.generated_through is None else 1)
        while day <= today:
            changes.created.extend(_day_events(data, day, now))
            day += timedelta(days=1)
    changes.created.extend(_new_extra_purchases(data, today, now))
    data.generated_through = today
    _move_balances(data, changes, now)
    return changes


def _bank_purchases_today(bank: BankLogin, today: date) -> None:
    extras = bank.extra_purchases.setdefault(today, [])
    count = random.Random(f"{bank.key}:{today}:extras:{len(extras)}").randint(1, 2)
    extras.extend([False] * count)


def add_posted_purchases(data: MemberData, now: datetime, count: int) -> list[Transaction]:
    """``count`` purchases posted at once today, at the bank (a re-link of the login finds them too)."""
    data.bank.extra_purchases.setdefault(now.date(), []).extend([True] * count)
    return _new_extra_purchases(data, now.date(), now)


def _new_extra_purchases(data: MemberData, day: date, now: datetime) -> list[Transaction]:
    """The bank's extra purchases on ``day`` this member has not shown yet."""
    extras = data.bank.extra_purchases.get(day, [])
    seen = data.extras_shown.get(day, 0)
    if extras:
        data.extras_shown[day] = len(extras)
    created = []
    for index in range(seen, len(extras)):
        rng = random.Random(f"{data.bank.key}:{day}:extra:{index}")
        created.extend(_purchases(data, rng, day, now, 1, posted_at_once=extras[index]))
    return created


def _post_in_place(txn: Transaction, amount: float, now: datetime) -> None:
    txn.amount = amount
    txn.status = "POSTED"
    txn.posted_at = min(now, datetime.combine(txn.date + timedelta(days=1), time(12), UTC))
    txn.original_description = txn.original_description.removeprefix("PENDING ")
    txn.updated_at = now


def _posted_copy(guids: random.Random, pending: Transaction, amount: float, now: datetime) -> Transaction:
    posted_at = min(now, datetime.combine(pending.date + timedelta(days=1), time(12), UTC))
    return Transaction(
        guid=_guid(guids, "TRN"),
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
    """Everything on the login's statement for ``day``, drawn from that day's own stream, then its extras."""
    profile, accounts = data.profile, _accounts_by_type(data)
    rng = random.Random(f"{data.bank.key}:{day.isoformat()}")
    checking = accounts["CHECKING"]
    events: list[Transaction] = []

    def add(account, amount, kind_of_flow, description, raw, category, merchant=None, hour=None, txn_kind="bill"):
        row = _make(
            data, rng, account, day, now, amount, kind_of_flow, description, raw, category, merchant, hour, txn_kind
        )
        if row is not None:
            events.append(row)

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
        # From the opening balance, not today's: the interest must not depend on when the member aggregated.
        interest = round(profile["opening_balances"]["SAVINGS"] * (accounts["SAVINGS"].apy or 1) / 1200, 2)
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
    events.extend(_purchases(data, rng, day, now, count))
    events.extend(_new_extra_purchases(data, day, now))
    return events


def _purchases(
    data: MemberData, rng: random.Random, day: date, now: datetime, count: int, *, posted_at_once: bool = False
) -> list[Transaction]:
    """``count`` everyday purchases on ``day`` (pending when recent unless ``posted_at_once``), drawn from ``rng``."""
    accounts = _accounts_by_type(data)
    payment_accounts = [accounts["CHECKING"], *([accounts["CREDIT_CARD"]] if "CREDIT_CARD" in accounts else [])]
    merchants = rng.choices(_EVERYDAY_MERCHANTS, cum_weights=_EVERYDAY_CUM_WEIGHTS, k=count)
    result = []
    for merchant in merchants:
        account = payment_accounts[0] if rng.random() < 0.45 else payment_accounts[-1]
        amount = round(rng.uniform(merchant.low, merchant.high), 2)
        raw = merchant.raw_descriptor.format(
            store=rng.randint(100, 9999), city=data.profile["city"], ref=f"{rng.getrandbits(32):08X}"
        )
        row = _make(
            data,
            rng,
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
            posted_at_once=posted_at_once,
        )
        if row is not None:
            result.append(row)
    return result


def _settlement(rng: random.Random, amount: float, merchant: Merchant | None) -> Settlement:
    """How a pending purchase will settle, decided when it is made so every view of the login agrees."""
    draw, tipped, tip = rng.random(), rng.random() < 0.5, rng.uniform(1.1, 1.25)
    if merchant is not None and merchant.mcc in (5812, 5814) and tipped:
        amount = round(amount * tip, 2)  # the tip lands when a restaurant charge posts
    if draw < IN_PLACE_RATE:
        return Settlement("IN_PLACE", amount)
    return Settlement("VANISHES" if draw < IN_PLACE_RATE + VANISH_RATE else "REISSUED", amount)


def _make(
    data,
    rng,
    account,
    day,
    now,
    amount,
    flow,
    description,
    raw,
    category_name,
    merchant: Merchant | None,
    hour,
    txn_kind,
    *,
    posted_at_once: bool = False,
) -> Transaction | None:
    """One statement line; a purchase old enough to have settled comes as it settled (or not at all)."""
    transacted_at = datetime.combine(
        day, time(hour if hour is not None else rng.randint(7, 22), rng.randint(0, 59)), UTC
    )
    transacted_at = min(transacted_at, now - timedelta(minutes=1))
    amount = round(amount, 2)
    settlement = None
    if txn_kind == "spend" and not posted_at_once:
        settlement = _settlement(rng, amount, merchant)
    is_pending = settlement is not None and (now.date() - day).days < PENDING_DAYS
    if settlement is not None and not is_pending:
        if settlement.outcome == "VANISHES":
            return None
        amount, settlement = settlement.amount, None
    category = CATEGORIES_BY_NAME[category_name]
    return Transaction(
        guid=_guid(data.rng, "TRN"),
        account_guid=account.guid,
        member_guid=account.member_guid,
        user_guid=account.user_guid,
        amount=amount,
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
        settles_as=settlement,
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
