"""Deterministic, realistic account and transaction data, generated lazily per member.

What a member sees is the history of its bank login, and two random streams keep that apart from the member:
- content (profile, accounts by name and type, every day's dates, amounts and descriptions, and how each pending
  row settles) comes from the ``BankLogin``: seeded by (sandbox seed, user guid, institution code, LOGIN), and
  per day, so it does not depend on when or how often a member aggregated;
- guids come from the member's own stream, seeded by (sandbox seed, member guid).
So a bank removed and linked again (a new member for the same login) shows the same history under new guids, as
at MX, and the same seed with the same sequence of calls gives the same data. Nothing is generated before a
member first connects.
Balances follow the transactions: each account opens at the start of its history (a card with what it owed
then) and moves with every posted row, so a balance is its opening balance plus its posted transactions.
MX facts encoded: amounts unsigned with CREDIT/DEBIT (MX transactions webhook doc); pending rows are "often
deleted and replaced with a new POSTED transaction (with a new guid)" (S25 ``status``), and some never post.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from mx_pipeline.sandbox.catalogue import CITIES, EMPLOYERS, LANDLORDS, MONTHLY
from mx_pipeline.sandbox.records import Account, BankLogin, MemberData, Settlement, Transaction
from mx_pipeline.sandbox.statement import (
    MEAN_PURCHASE,
    PENDING_DAYS,
    card_opening_balance,
    day_events,
    new_guid,
    purchases,
)

DAYS_PER_MONTH = 365.25 / 12
LOAN_MONTHS = 60  # an auto loan over five years
__all__ = ["PENDING_DAYS", "DataChanges", "add_posted_purchases", "advance_member_data", "start_member_data"]


@dataclass
class DataChanges:
    """What one aggregation did to a member's transactions (for webhook counts and the world's indexes)."""

    created: list[Transaction] = field(default_factory=list)
    updated: list[Transaction] = field(default_factory=list)
    removed: list[Transaction] = field(default_factory=list)


def bank_login_key(seed: int, user_guid: str, institution_code: str, login: str | None) -> str:
    """What makes two members the same bank login: the user, the institution and the LOGIN credential."""
    return f"{seed}:{user_guid}:{institution_code}:{login}"


def start_member_data(
    seed: int, member_guid: str, user_guid: str, now: datetime, bank: BankLogin | None = None
) -> MemberData:
    """Profile and accounts for a member on its first successful aggregation.

    ``bank`` is the login's shared history; without one the member is its own login (a private history).
    A profile is a household budget: pay comes biweekly, rent and bills are shares of it, and everyday spending
    fills what is left up to a spending ratio of 82-96% of income, so that checking stays in the black and the
    rest goes to savings.
    """
    bank = bank or BankLogin(key=f"{seed}:{member_guid}")
    rng = random.Random(bank.key)
    paycheck = round(rng.uniform(1700, 4600), 2)  # net, biweekly
    monthly_income = paycheck * 26 / 12
    has_savings, has_card, has_loan = rng.random() < 0.8, rng.random() < 0.75, rng.random() < 0.4
    profile = {
        "employer": rng.choice(EMPLOYERS),
        "paycheck": paycheck,
        "payday_parity": rng.randint(0, 1),  # biweekly Fridays
        "landlord": rng.choice(LANDLORDS),
        "rent": _round_to(monthly_income * rng.uniform(0.24, 0.32), 25),
        "rent_day": rng.randint(1, 5),
        "city": rng.choice(CITIES),
        "monthly": [
            (merchant, day, kind, round(rng.uniform(merchant.low, merchant.high), 2))
            for merchant, day, kind in MONTHLY
            if rng.random() < 0.75
        ],
        "loan_payment": round(monthly_income * rng.uniform(0.04, 0.08), 2) if has_loan else 0.0,
    }
    spending_ratio = rng.uniform(0.82, 0.96)
    fixed = profile["rent"] + profile["loan_payment"] + sum(amount for *_, amount in profile["monthly"])
    everyday = max(monthly_income * spending_ratio - fixed, monthly_income * 0.2)
    profile["purchases_per_day"] = everyday / (DAYS_PER_MONTH * MEAN_PURCHASE)
    profile["savings_transfer"] = _round_to(max(monthly_income * (1 - spending_ratio) / 2, 50), 25)
    specs = [("CHECKING", None, "Everyday Checking", round(monthly_income * rng.uniform(0.8, 1.5), 2))]
    if has_savings:
        specs.append(("SAVINGS", None, "High Yield Savings", round(rng.uniform(2000, 25000), 2)))
    if has_card:
        specs.append(("CREDIT_CARD", None, "Rewards Visa", 0.0))  # what it owes is set when its history starts
    if has_loan:
        original = round(profile["loan_payment"] * LOAN_MONTHS, 2)
        specs.append(("LOAN", "AUTO", "Auto Loan", round(original * rng.uniform(0.35, 0.9), 2)))
    guids = random.Random(f"{seed}:{member_guid}")
    accounts = [
        _account(rng, new_guid(guids, "ACT"), member_guid, user_guid, kind, subtype, name, balance, now)
        for kind, subtype, name, balance in specs
    ]
    for account in accounts:
        if account.type == "LOAN":
            account.original_balance = round(profile["loan_payment"] * LOAN_MONTHS, 2)
    profile["opening_balances"] = {a.type: a.balance for a in accounts}
    return MemberData(rng=guids, profile=profile, accounts=accounts, bank=bank)


def _round_to(amount: float, step: int) -> float:
    return float(max(step, round(amount / step) * step))


def _account(rng, guid, member_guid, user_guid, kind, subtype, name, balance, now) -> Account:
    is_card, is_loan = kind == "CREDIT_CARD", kind == "LOAN"
    return Account(
        guid=guid,
        member_guid=member_guid,
        user_guid=user_guid,
        name=name,
        type=kind,
        subtype=subtype,
        account_number=f"{rng.randint(0, 9999):04d}",
        routing_number=None if is_card or is_loan else "091000019",
        balance=balance,
        credit_limit=float(rng.choice((5000, 8000, 12000))) if is_card else None,
        apr=round(rng.uniform(15, 27), 2) if is_card else None,
        apy=round(rng.uniform(0.5, 4.5), 2) if kind == "SAVINGS" else None,
        interest_rate=round(rng.uniform(4, 9), 2) if is_loan else None,
        original_balance=None,
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
        if data.generated_through is None:
            day = today - timedelta(days=history_days)
            _open_card(data, day)
        else:
            day = data.generated_through + timedelta(days=1)
        while day <= today:
            changes.created.extend(day_events(data, day, now))
            changes.created.extend(_new_extra_purchases(data, day, now))  # the bank's extras of that day
            day += timedelta(days=1)
    changes.created.extend(_new_extra_purchases(data, today, now))
    data.generated_through = today
    _move_balances(data, changes, now)
    return changes


def _open_card(data: MemberData, history_start: date) -> None:
    """The card's balance when the history starts: its charges not yet paid by then (the statement pays them)."""
    for account in data.accounts:
        if account.type == "CREDIT_CARD":
            account.balance = round(card_opening_balance(data, history_start), 2)
            data.profile["opening_balances"]["CREDIT_CARD"] = account.balance


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
        created.extend(purchases(data, rng, day, now, 1, posted_at_once=extras[index]))
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
        guid=new_guid(guids, "TRN"),
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
