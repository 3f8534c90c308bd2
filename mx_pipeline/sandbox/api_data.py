"""MX institutions, accounts, transactions, default categories and merchants (S11 read endpoints)."""

import calendar
from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import Response

from mx_pipeline.sandbox.catalogue import MERCHANTS_BY_GUID, merchant_json
from mx_pipeline.sandbox.categories import CATEGORIES_BY_GUID, DEFAULT_CATEGORIES, category_json
from mx_pipeline.sandbox.endpoint import mx_json
from mx_pipeline.sandbox.errors import MxError, not_found
from mx_pipeline.sandbox.institutions import INSTITUTIONS, credentials_json, institution_json
from mx_pipeline.sandbox.pagination import MAX_100, paged_body
from mx_pipeline.sandbox.records import Member, Transaction
from mx_pipeline.sandbox.wire import account_json, transaction_json
from mx_pipeline.sandbox.world import World

DEFAULT_FROM_DAYS = 120  # S11 fromDate: "Defaults to 120 days ago"
DEFAULT_TO_DAYS = 5  # S11 toDate: "Defaults to 5 days forward ... to capture pending transactions"
# S11 on from/to_updated_at and from/to_created_at: "Maximum date range limit is 6 months". MX does not say how
# it is enforced; the sandbox answers 400, counts calendar months, and reads a missing upper bound as today.
MAX_RANGE_MONTHS = 6


def _institution(code: str):
    institution = INSTITUTIONS.get(code)
    if institution is None:
        raise not_found("Institution")
    return institution


def list_institutions(request: Request, world: World, body) -> Response:
    """GET /institutions (10..100 per page) with the ``name`` search."""
    name = (request.query_params.get("name") or "").lower()
    matches = [i for i in INSTITUTIONS.values() if name in i.name.lower() or name in i.code]
    return mx_json(paged_body(request, "institutions", matches, institution_json, MAX_100))


def read_institution(request: Request, world: World, body) -> Response:
    return mx_json({"institution": institution_json(_institution(request.path_params["institution_code"]))})


def list_institution_credentials(request: Request, world: World, body) -> Response:
    institution = _institution(request.path_params["institution_code"])
    return mx_json(paged_body(request, "credentials", credentials_json(institution), lambda c: c))


def list_member_accounts(request: Request, world: World, body) -> Response:
    user = world.user(request.path_params["user_guid"])
    member = world.member(user.guid, request.path_params["member_guid"])
    accounts = world.accounts_of_member(member)
    return mx_json(paged_body(request, "accounts", accounts, lambda a: account_json(a, member, user)))


def list_user_accounts(request: Request, world: World, body) -> Response:
    user = world.user(request.path_params["user_guid"])
    pairs = [(a, m) for m in world.members_of(user.guid) for a in world.accounts_of_member(m)]
    return mx_json(paged_body(request, "accounts", pairs, lambda pair: account_json(pair[0], pair[1], user)))


def read_account(request: Request, world: World, body) -> Response:
    user = world.user(request.path_params["user_guid"])
    account = world.account(user.guid, request.path_params["account_guid"])
    if "member_guid" in request.path_params and account.member_guid != request.path_params["member_guid"]:
        raise not_found("Account")
    return mx_json({"account": account_json(account, world.member_by_guid(account.member_guid), user)})


def _date_param(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise MxError(400, f"{name} must be a date in the format YYYY-MM-DD.") from None


def months_after(day: date, months: int) -> date:
    """The same day ``months`` calendar months later (the month's last day when it is shorter)."""
    year, month = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _bounded(request: Request, low: str, high: str, today: date) -> tuple[date | None, date | None]:
    """A ``low``..``high`` range of at most 6 months; ``high`` defaults to today when only ``low`` is given."""
    start, end = _date_param(request, low), _date_param(request, high)
    if start and months_after(start, MAX_RANGE_MONTHS) < (end or today):
        raise MxError(
            400, f"{low} and {high} may be at most {MAX_RANGE_MONTHS} months apart ({high} defaults to today)."
        )
    return start, end


def filtered_transactions(request: Request, rows: list[Transaction], today: date) -> list[Transaction]:
    """Apply MX's transaction list filters; newest first (date, then transacted_at, then guid)."""
    from_date = _date_param(request, "from_date") or today - timedelta(days=DEFAULT_FROM_DAYS)
    to_date = _date_param(request, "to_date") or today + timedelta(days=DEFAULT_TO_DAYS)
    from_updated, to_updated = _bounded(request, "from_updated_at", "to_updated_at", today)
    from_created, to_created = _bounded(request, "from_created_at", "to_created_at", today)
    categories = set(request.query_params.getlist("category_guid[]"))
    categories |= {request.query_params["category_guid"]} if "category_guid" in request.query_params else set()
    top_levels = set(request.query_params.getlist("top_level_category_guid[]"))
    if "top_level_category_guid" in request.query_params:
        top_levels.add(request.query_params["top_level_category_guid"])
    top_names = {CATEGORIES_BY_GUID[g].name for g in top_levels if g in CATEGORIES_BY_GUID}

    def keep(txn: Transaction) -> bool:
        if not from_date <= txn.date <= to_date:
            return False
        updated, created = txn.updated_at.date(), txn.created_at.date()
        if (from_updated and updated < from_updated) or (to_updated and updated > to_updated):
            return False
        if (from_created and created < from_created) or (to_created and created > to_created):
            return False
        if categories and txn.category_guid not in categories:
            return False
        return not top_levels or CATEGORIES_BY_GUID[txn.category_guid].top_level_name in top_names

    kept = [t for t in rows if keep(t)]
    kept.sort(key=lambda t: (t.date, t.transacted_at, t.guid), reverse=True)
    return kept


def _transactions_body(request: Request, world: World, user, members: list[Member], account_guid=None) -> Response:
    rows = [t for m in members for t in world.transactions_of_member(m.guid)]
    if account_guid:
        rows = [t for t in rows if t.account_guid == account_guid]
    includes = frozenset(x.strip() for x in request.query_params.get("includes", "").split(",") if x.strip())
    kept = filtered_transactions(request, rows, world.now().date())
    return mx_json(paged_body(request, "transactions", kept, lambda t: transaction_json(t, user, includes)))


def list_user_transactions(request: Request, world: World, body) -> Response:
    user = world.user(request.path_params["user_guid"])
    return _transactions_body(request, world, user, world.members_of(user.guid))


def list_member_transactions(request: Request, world: World, body) -> Response:
    user = world.user(request.path_params["user_guid"])
    return _transactions_body(request, world, user, [world.member(user.guid, request.path_params["member_guid"])])


def list_account_transactions(request: Request, world: World, body) -> Response:
    user = world.user(request.path_params["user_guid"])
    account = world.account(user.guid, request.path_params["account_guid"])
    member = world.member_by_guid(account.member_guid)
    return _transactions_body(request, world, user, [member], account.guid)


def list_default_categories(request: Request, world: World, body) -> Response:
    """GET /categories/default pages 10..100; the per-user variant pages 10..1000 (S11 parameters)."""
    max_per_page = MAX_100 if "user_guid" not in request.path_params else 1000
    if "user_guid" in request.path_params:
        world.user(request.path_params["user_guid"])
    return mx_json(paged_body(request, "categories", list(DEFAULT_CATEGORIES), category_json, max_per_page))


def read_merchant(request: Request, world: World, body) -> Response:
    merchant = MERCHANTS_BY_GUID.get(request.path_params["merchant_guid"])
    if merchant is None:
        raise not_found("Merchant")
    return mx_json({"merchant": merchant_json(merchant)})
