"""One day of a bank login's statement: what happened that day, drawn from the day's own stream.

A day's content depends only on the login and the date (never on when a member aggregated), so every member
linked to the login over time sees the same lines. Guids come from the member's stream (``MemberData.rng``).
A purchase made recently is PENDING and knows already how it will settle (``Settlement``); one old enough to have
settled comes as it settled, or not at all.
"""

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta

from mx_pipeline.sandbox.catalogue import EVERYDAY, MERCHANTS_BY_GUID, RETURNABLE_CATEGORIES, Merchant
from mx_pipeline.sandbox.categories import CATEGORIES_BY_NAME
from mx_pipeline.sandbox.records import Account, MemberData, Settlement, Transaction

PENDING_DAYS = 2  # card and debit spend from the last two days is still pending
VANISH_RATE = 0.1  # share of pending rows that disappear instead of posting
IN_PLACE_RATE = 0.2  # share that post under the same guid (MX: possible, "but more often" a new guid)
REFUND_RATE = 0.08  # share of days on which a recent purchase at a returnable merchant is returned
STATEMENT_CLOSING_DAY, PAYMENT_DAY = 14, 22  # the card's statement closes on the 14th and is paid on the 22nd
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)  # a "now" by which every purchase has settled
_EVERYDAY_MERCHANTS = [m for m, _ in EVERYDAY]
_EVERYDAY_CUM_WEIGHTS = []
_total = 0.0
for _, weight in EVERYDAY:
    _total += weight
    _EVERYDAY_CUM_WEIGHTS.append(_total)
# What one everyday purchase costs on average once settled (a vanished pending costs nothing).
MEAN_PURCHASE = (1 - VANISH_RATE) * sum(w * (m.low + m.high) / 2 for m, w in EVERYDAY) / _total


def new_guid(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _accounts_by_type(data: MemberData) -> dict[str, Account]:
    return {a.type: a for a in data.accounts}


def day_events(data: MemberData, day: date, now: datetime) -> list[Transaction]:
    """Everything on the login's statement for ``day``: the day's own lines, a refund, the card's payment."""
    return [
        *_own_lines(data, day, now, data.rng),
        *_refunds(data, day, now, data.rng),
        *_card_payment(data, day, now, data.rng),
    ]


def card_opening_balance(data: MemberData, history_start: date) -> float:
    """What the card owes when the history starts: charges not yet paid (paid in full on the 22nd, see below)."""
    first_payment = _payment_day_on_or_after(history_start)
    return max(0.0, _card_net_charges(data, _cycle_start(first_payment), history_start - timedelta(days=1)))


def _own_lines(data: MemberData, day: date, now: datetime, guids: random.Random) -> list[Transaction]:
    """The lines drawn from the day's own stream: pay, rent, bills, transfers, interest, fees and purchases."""
    profile, accounts = data.profile, _accounts_by_type(data)
    rng = random.Random(f"{data.bank.key}:{day.isoformat()}")
    checking = accounts["CHECKING"]
    events: list[Transaction] = []

    def add(account, amount, kind_of_flow, description, raw, category, merchant=None, hour=None, txn_kind="bill"):
        row = _make(
            data,
            rng,
            account,
            day,
            now,
            amount,
            kind_of_flow,
            description,
            raw,
            category,
            merchant,
            hour,
            txn_kind,
            guids=guids,
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
    for merchant, day_of_month, kind, amount in profile["monthly"]:
        if day.day == day_of_month:
            if merchant.category_name == "Utilities":  # metered: moves a little with the season
                amount = round(amount * rng.uniform(0.88, 1.12), 2)
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
        raw = f"ONLINE TRANSFER TO SAV ...{savings.account_number}"
        add(checking, amount, "DEBIT", "Transfer to Savings", raw, "Transfer", hour=8, txn_kind="transfer")
        raw = f"ONLINE TRANSFER FROM CHK ...{checking.account_number}"
        add(savings, amount, "CREDIT", "Transfer from Checking", raw, "Transfer", hour=8, txn_kind="transfer")
    if "SAVINGS" in accounts and day.day == 28:
        # From the opening balance, not today's: the interest must not depend on when the member aggregated.
        interest = round(profile["opening_balances"]["SAVINGS"] * (accounts["SAVINGS"].apy or 1) / 1200, 2)
        savings = accounts["SAVINGS"]
        add(
            savings,
            interest,
            "CREDIT",
            "Interest Payment",
            "INTEREST PAID",
            "Interest Income",
            hour=3,
            txn_kind="interest",
        )
    if "LOAN" in accounts and day.day == 10:
        amount = profile["loan_payment"]
        add(checking, amount, "DEBIT", "Auto Loan Payment", "MXBANK AUTO LOAN PMT", "Auto Payment", hour=5)
    if rng.random() < 0.02:
        fee = float(rng.choice((2.5, 3.0, 12.0)))
        add(checking, fee, "DEBIT", "ATM Fee", "NON-NETWORK ATM FEE", "ATM Fee", txn_kind="fee")
    count = int(rng.random() * 2 * profile["purchases_per_day"] + 0.5)
    events.extend(purchases(data, rng, day, now, count, guids=guids))
    return events


def _refunds(data: MemberData, day: date, now: datetime, guids: random.Random) -> list[Transaction]:
    """Now and then a purchase from a few days back is returned: a credit at the same merchant, same account."""
    rng = random.Random(f"{data.bank.key}:{day.isoformat()}:refund")
    if rng.random() >= REFUND_RATE:
        return []
    bought_on = day - timedelta(days=rng.randint(3, 12))
    returnable = [
        t
        for t in _settled_lines(data, bought_on)
        if t.kind == "spend" and MERCHANTS_BY_GUID[t.merchant_guid].category_name in RETURNABLE_CATEGORIES
    ]
    if not returnable:
        return []
    bought = rng.choice(returnable)
    amount = bought.amount if rng.random() < 0.7 else round(bought.amount * rng.uniform(0.2, 0.6), 2)
    merchant = MERCHANTS_BY_GUID[bought.merchant_guid]
    account = next(a for a in data.accounts if a.guid == bought.account_guid)
    raw = f"RETURN {bought.original_description}"
    row = _make(
        data,
        rng,
        account,
        day,
        now,
        amount,
        "CREDIT",
        merchant.name,
        raw,
        merchant.category_name,
        merchant,
        None,
        "refund",
        guids=guids,
    )
    return [row] if row is not None else []


def _card_payment(data: MemberData, day: date, now: datetime, guids: random.Random) -> list[Transaction]:
    """On the 22nd checking pays the card's statement in full: what was charged, net of returns, in the cycle
    that closed on the 14th. Derived from the cycle's days, so it too depends only on the login and the date."""
    accounts = _accounts_by_type(data)
    if "CREDIT_CARD" not in accounts or day.day != PAYMENT_DAY:
        return []
    amount = round(_card_net_charges(data, _cycle_start(day), day.replace(day=STATEMENT_CLOSING_DAY)), 2)
    if amount <= 0:
        return []
    card, checking = accounts["CREDIT_CARD"], accounts["CHECKING"]
    rng = random.Random(f"{data.bank.key}:{day.isoformat()}:payment")
    legs = [
        (checking, "DEBIT", "Credit Card Payment", f"MXBANK CARD ONLINE PMT ****{card.account_number}"),
        (card, "CREDIT", "Payment Thank You", "PAYMENT - THANK YOU"),
    ]
    rows = [
        _make(
            data,
            rng,
            account,
            day,
            now,
            amount,
            flow,
            description,
            raw,
            "Credit Card Payment",
            None,
            10,
            "transfer",
            guids=guids,
        )
        for account, flow, description, raw in legs
    ]
    return [r for r in rows if r is not None]


def _payment_day_on_or_after(day: date) -> date:
    if day.day <= PAYMENT_DAY:
        return day.replace(day=PAYMENT_DAY)
    return (day.replace(day=1) + timedelta(days=32)).replace(day=PAYMENT_DAY)


def _cycle_start(payment_day: date) -> date:
    """The first day of the statement a payment on ``payment_day`` pays (the day after the previous closing)."""
    return (payment_day.replace(day=1) - timedelta(days=1)).replace(day=STATEMENT_CLOSING_DAY + 1)


def _settled_lines(data: MemberData, day: date) -> list[Transaction]:
    """The day's own lines as they end up (settled, vanished ones gone), without touching the member's guids."""
    return _own_lines(data, day, _END_OF_TIME, random.Random(0))


def _card_net_charges(data: MemberData, first: date, last: date) -> float:
    """Charges on the card from ``first`` to ``last`` (inclusive), net of returns, as they settle."""
    card = _accounts_by_type(data)["CREDIT_CARD"]
    total, day = 0.0, first
    while day <= last:
        rows = [*_settled_lines(data, day), *_refunds(data, day, _END_OF_TIME, random.Random(0))]
        total += sum(t.amount if t.type == "DEBIT" else -t.amount for t in rows if t.account_guid == card.guid)
        day += timedelta(days=1)
    return total


def purchases(
    data: MemberData,
    rng: random.Random,
    day: date,
    now: datetime,
    count: int,
    *,
    posted_at_once: bool = False,
    guids: random.Random | None = None,
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
            guids=guids,
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
    guids: random.Random | None = None,
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
        guid=new_guid(guids or data.rng, "TRN"),
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
