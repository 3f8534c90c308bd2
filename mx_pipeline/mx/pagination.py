"""MX list endpoints, one page at a time.

MX paginates with ``page`` / ``records_per_page`` and answers ``{"<plural>": [...], "pagination":
{current_page, per_page, total_entries, total_pages}}``. ``iter_pages`` asks for the next page only when
the caller has consumed the previous one, so memory never grows with the length of a history.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import simplejson

from mx_pipeline.mx.errors import ListShifted, MalformedRecord, MalformedResponse

# records_per_page ranges per spec parameter: over the maximum MX silently falls back to 25.
MAX_PER_PAGE = 1000  # recordsPerPageMax1000: users, members, accounts, transactions, credentials, ...
MAX_PER_PAGE_SMALL = 100  # recordsPerPage: /categories/default, /institutions
LIST_READS = 3  # reads of one list whose pages keep shifting (``ListShifted``) before its read fails
T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    """One page of a list endpoint, its objects as received (numbers exact: ``Decimal``), unvalidated: a loader
    hands the whole page to the warehouse in one statement and judges its records there, set-based."""

    items: list[Any]

    def json(self) -> str:
        """The page's objects as one JSON array, numbers written exactly as MX sent them."""
        return simplejson.dumps(self.items, use_decimal=True, separators=(",", ":"))

    def discard(self) -> None:
        """Free the page's objects once they are used. The generators that yielded the page hold it until the next
        page has arrived, so a reader would otherwise hold two pages' objects while it waits on MX."""
        self.items.clear()

    def guids(self) -> set[str]:
        """The guids the page lists, a malformed record's included (MX still lists it)."""
        return {guid for item in self.items if isinstance(item, dict) and isinstance(guid := item.get("guid"), str)}


def iter_pages(
    fetch_page: Callable[[int], dict[str, Any] | None], list_key: str, *, path: str = ""
) -> Iterator[list[dict[str, Any]]]:
    """Yield each page's list of objects, starting at page 1, until the last page MX reports.

    MX pages by offset: a record added or deleted while the list is read moves every later record to another page,
    and one may be skipped. A page whose ``total_entries`` differs from page 1's raises ``ListShifted`` before it
    is yielded; the caller reads the list again."""
    page, first_count = 1, None
    while True:
        body = fetch_page(page)
        if body is None:  # 204: MX's way of saying "nothing here" on some list endpoints
            return
        items = body.get(list_key)
        if not isinstance(items, list):
            raise MalformedResponse(f"list body lacks a {list_key!r} array", method="GET", path=path)
        count = _total_entries(body)
        if page == 1:
            first_count = count
        elif None not in (count, first_count) and count != first_count:
            raise ListShifted(
                f"the list changed while it was read: {first_count} records on page 1, {count} on page {page}",
                method="GET",
                path=path,
            )
        total_pages = _total_pages(body, path)
        last = not items or page >= total_pages
        yield items  # the caller may free them: nothing below reads them again
        if last:
            return
        page += 1


def read_unshifted(read: Callable[[], T]) -> T:
    """``read()`` a list to its end, again from page 1 while its pages shift, up to ``LIST_READS`` times; then the
    last ``ListShifted`` goes on. What a shifted read took stays true (a record it listed was listed): a caller keeps
    it, and only a later read may find such a record gone."""
    for _ in range(LIST_READS - 1):
        try:
            return read()
        except ListShifted:
            continue
    return read()


def iter_records(
    pages: Iterator[Page], parse: Callable[[Any], Any], *, path: str, on_malformed: Callable | None = None
) -> Iterator[Any]:
    """Each object of ``pages`` parsed into a record; one that breaks the contract raises, or goes to
    ``on_malformed`` (and is skipped) when given."""
    for page in pages:
        for item in page.items:
            try:
                record = parse(item)
            except MalformedRecord as exc:
                exc.method, exc.path = "GET", path
                if on_malformed is None:
                    raise
                on_malformed(exc)
                continue
            yield record


def _total_entries(body: dict[str, Any]) -> int | None:
    """The list's record count as MX reported it with this page; None where it did not (only compared, never trusted
    for anything else)."""
    pagination = body.get("pagination")
    count = pagination.get("total_entries") if isinstance(pagination, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _total_pages(body: dict[str, Any], path: str) -> int:
    pagination = body.get("pagination")
    if pagination is None:
        return 1  # a few list endpoints answer without pagination: one page
    total = pagination.get("total_pages") if isinstance(pagination, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise MalformedResponse(f"pagination.total_pages is not a count: {total!r:.40}", method="GET", path=path)
    return total
