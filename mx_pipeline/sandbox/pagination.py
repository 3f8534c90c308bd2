"""MX's ``page`` / ``records_per_page`` rules and the ``pagination`` object (S11 components.parameters)."""

import math
from collections.abc import Sequence

from starlette.requests import Request

from mx_pipeline.sandbox.errors import MxError

DEFAULT_PER_PAGE = 25
MIN_PER_PAGE = 10  # below the documented range: the sandbox clamps to 10 (MX does not say)
MAX_1000 = 1000  # recordsPerPageMax1000: users, members, accounts, transactions, credentials, challenges, ...
MAX_100 = 100  # recordsPerPage: /categories/default and /institutions


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise MxError(400, f"{name} must be an integer.") from None


def page_request(request: Request, max_per_page: int = MAX_1000) -> tuple[int, int]:
    """(page, per_page): over the maximum falls back to 25, as the spec says; below 10 clamps to 10."""
    page = max(1, _int_param(request, "page") or 1)
    per_page = _int_param(request, "records_per_page")
    if per_page is None or per_page > max_per_page:
        per_page = DEFAULT_PER_PAGE
    return page, max(MIN_PER_PAGE, per_page)


def paginate(items: Sequence, page: int, per_page: int) -> tuple[Sequence, dict]:
    """The page's slice and MX's PaginationResponse (total_pages is 0 for an empty list: sandbox choice)."""
    total = len(items)
    start = (page - 1) * per_page
    pagination = {
        "current_page": page,
        "per_page": per_page,
        "total_entries": total,
        "total_pages": math.ceil(total / per_page),
    }
    return items[start : start + per_page], pagination


def paged_body(request: Request, plural: str, items: Sequence, to_json, max_per_page: int = MAX_1000) -> dict:
    """``{plural: [...], "pagination": {...}}`` for one page of ``items``."""
    page, per_page = page_request(request, max_per_page)
    chunk, pagination = paginate(items, page, per_page)
    return {plural: [to_json(item) for item in chunk], "pagination": pagination}
