"""What MX no longer has, found while reading: complete lists, and 404s a fresh list must confirm.

Only a complete list proves that something we had is gone (``warehouse/retire.py`` does the retiring): a
:class:`Listing` records the guids one MX list returned and whether every page was read and every record's
guid known. A 404 on a member's own read is only a suspicion (:class:`Suspects`): the member is retired when
a fresh complete list of its user lacks it too, and the 404 is quarantined like any bad read otherwise.
"""

import datetime as dt
from collections.abc import Callable, Iterable

from mx_pipeline.mx import MalformedRecord, MalformedResponse, MxClient, NotFound
from mx_pipeline.warehouse import RawLoader, Warehouse, retire


class Listing:
    """The guids one MX list returned, and whether it is complete: every page read, every record's guid known.

    Only a complete list proves that something we had is gone. Records go to ``load`` when one is given.
    """

    def __init__(self, load: RawLoader | None = None, member_guid: str | None = None) -> None:
        self.load, self.member_guid = load, member_guid
        self.started_at = utc_now()
        self.guids: set[str] = set()
        self.complete = True

    def on_malformed(self, exc: MalformedRecord) -> None:
        if self.load is not None:
            self.load.reject(exc, self.member_guid)
        guid = exc.payload.get("guid") if isinstance(exc.payload, dict) else None
        if isinstance(guid, str):
            self.guids.add(guid)  # MX still lists it, whatever is wrong with it
        else:
            self.complete = False

    def read(self, records: Callable[[], Iterable], *, on_not_found: Callable[[NotFound], None] | None = None):
        """Read ``records()`` to the end. A page that fails leaves the list incomplete and is quarantined (a 404
        goes to ``on_not_found`` instead, when given)."""
        try:
            for record in records():
                self.guids.add(record.guid)
                if self.load is not None:
                    self.load.add(record)
        except (MalformedResponse, NotFound) as exc:
            self.complete = False
            if isinstance(exc, NotFound) and on_not_found is not None:
                on_not_found(exc)
            elif self.load is not None:
                self.load.reject_page(f"{type(exc).__name__}: {exc}", self.member_guid)


def list_members(client: MxClient, user_guid: str, load: RawLoader | None = None) -> Listing:
    listing = Listing(load)
    listing.read(lambda: client.list_members(user_guid, on_malformed=listing.on_malformed))
    return listing


def retire_absent_members(con, listings: dict[str, Listing], run_id: str) -> list[str]:
    """Retire every member we had that a complete list of its user no longer shows (and bring back any retired
    member a list shows again)."""
    retire.reinstate_members(con, {guid for listing in listings.values() for guid in listing.guids}, now=utc_now())
    return [
        guid
        for user_guid, listing in listings.items()
        if listing.complete
        for guid in retire.retire_members(
            con,
            retire.members_absent(con, user_guid, listing.guids, listed_from=listing.started_at),
            reason=retire.MEMBER_REMOVED,
            run_id=run_id,
            now=utc_now(),
        )
    ]


def retire_absent_accounts(con, listings: dict[str, Listing], run_id: str) -> list[str]:
    """Retire every account we had that a complete list of its member's accounts no longer shows."""
    return [
        guid
        for member_guid, listing in listings.items()
        if listing.complete
        for guid in retire.retire_accounts(
            con,
            retire.accounts_absent(con, member_guid, listing.guids, listed_from=listing.started_at),
            reason=retire.ACCOUNT_REMOVED,
            run_id=run_id,
            now=utc_now(),
        )
    ]


class Suspects:
    """Members whose own read (status, accounts, transactions) answered 404.

    Each is retired if a fresh complete list of its user lacks it too; otherwise the 404 is quarantined like
    any unreadable read: one bad read retires nothing.
    """

    def __init__(self) -> None:
        self.not_found: dict[str, tuple[str, NotFound]] = {}  # member guid -> (user guid, the 404)

    def noter(self, member_guid: str, user_guid: str) -> Callable[[NotFound], None]:
        return lambda exc: self.not_found.__setitem__(member_guid, (user_guid, exc))

    def watching(self, member, list_transactions: Callable[..., Iterable]) -> Callable[..., Iterable]:
        """``list_transactions``, noting the member when MX answers 404 (the error still propagates)."""

        def listing(**query):
            try:
                yield from list_transactions(**query)
            except NotFound as exc:
                self.not_found[member.guid] = (member.user_guid, exc)
                raise

        return listing

    def settle(self, client: MxClient, wh: Warehouse, load: RawLoader | None, run_id: str) -> list[str]:
        """Confirm against fresh lists; retire the members confirmed gone, quarantine the rest in ``load``."""
        if not self.not_found:
            return []
        users = sorted({user_guid for user_guid, _ in self.not_found.values()})
        listings = {user_guid: list_members(client, user_guid) for user_guid in users}
        with wh.connect() as con:
            retired = retire_absent_members(con, listings, run_id)
        for member_guid, (_, exc) in self.not_found.items():
            if member_guid not in retired and load is not None:
                load.reject_page(f"{type(exc).__name__}: {exc}", member_guid)
        return retired


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
