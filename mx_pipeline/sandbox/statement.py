"""One day of a bank login's statement: what happened that day, drawn from the day's own stream.

A day's content depends only on the login and the date (never on when a member aggregated), so every member
linked to the login over time sees the same lines. Guids come from the member's stream (``MemberData.rng``).
A purchase made recently is PENDING and knows already how it will settle (``Settlement``); one old enough to have
settled comes as it settled, or not at all.
"""

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta

from mx_pipeline.sandbox.catalogue import EVERYDAY, Merchant
from mx_pipeline.sandbox.categories import CATEGORIES_BY_NAME
from mx_pipeline.sandbox.records import Account, MemberData, Settlement, Transaction

PENDING_DAYS = 2  # card and debit spend from the last two days is still pending
VANISH_RATE = 0.1  # share of pending rows that disappear instead of posting
IN_PLACE_RATE = 0.2  # share that post under the same guid (MX: possible, "but more often" a new guid)
_EVERYDAY_MERCHANTS = [m for m, _ in EVERYDAY]
_EVERYDAY_CUM_WEIGHTS = []
_total = 0.0
for _, weight in EVERYDAY:
    _total += weight
    _EVERYDAY_CUM_WEIGHTS.append(_total)


def new_guid(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _accounts_by_type(data: MemberData) -> dict[str, Account]:
    return {a.type: a for a in data.accounts}


def day_events(data: MemberData, day: date, now: datetime) -> list[Transaction]:
    """Everything on the login's statement for ``day``, drawn from that day's own stream."""
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
    events.extend(purchases(data, rng, day, now, count))
    return events


def purchases(
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
        guid=new_guid(data.rng, "TRN"),
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
