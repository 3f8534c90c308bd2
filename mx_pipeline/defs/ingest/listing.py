"""What MX no longer has, found while reading: complete lists, and 404s a fresh list must confirm.

Only a complete list proves that something we had is gone (``warehouse/retire.py`` does the retiring): a
:class:`Listing` records the guids one MX list returned and whether every page was read and every record's
guid known. A 404 on a member's own read is only a suspicion (:class:`Suspects`): the member is retired when
a fresh complete list of its user lacks it too, and the 404 is quarantined like any bad read otherwise. A 404
on a user's member list is settled the same way, by a complete ``list_users`` filtered by our id for it.
A load retires and reinstates in its one transaction; :class:`Confirmation` in one of its own.
"""

import datetime as dt
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from mx_pipeline.mx import READ_FAILURES, MalformedRecord, MalformedResponse, MxClient, MxError, NotFound
from mx_pipeline.mx.pagination import read_unshifted
from mx_pipeline.warehouse import Warehouse, retire


class RecordSink(Protocol):
    """Where a list's records go: a read's landing (``landing/records.py``), or a user's list taken apart into its
    members' landings (``accounts.py``)."""

    def add(self, record: Any) -> None: ...

    def reject(self, error: MalformedRecord, member_guid: str | None = None) -> None: ...

    def reject_page(self, reason: str, member_guid: str | None = None) -> None: ...


class Listing:
    """The guids one MX list returned, and whether it is complete: every page read, every record's guid known.

    Only a complete list proves that something we had is gone. Records go to ``load`` when one is given.
    """

    def __init__(self, load: RecordSink | None = None, member_guid: str | None = None) -> None:
        self.load, self.member_guid = load, member_guid
        self.started_at = utc_now()
        self.guids: set[str] = set()
        self.complete = True
        self.not_found: NotFound | None = None  # the 404 a list answered, when its owner may be gone
        self.failure: MxError | None = None  # why the list could not be read (after the transport's retries)

    def on_malformed(self, exc: MalformedRecord) -> None:
        if self.load is not None:
            self.load.reject(exc, self.member_guid)
        guid = exc.payload.get("guid") if isinstance(exc.payload, dict) else None
        if isinstance(guid, str):
            self.guids.add(guid)  # MX still lists it, whatever is wrong with it
        else:
            self.complete = False

    def read(self, records: Callable[[], Iterable], *, on_not_found: Callable[[NotFound], None] | None = None):
        """Read ``records()`` to the end, again while its pages shift. A page that fails leaves the list incomplete: a
        404 goes to ``on_not_found`` when given and is quarantined otherwise; any other error is kept in ``failure``
        (the read failed: the caller records it), and an unreadable body is quarantined as well."""

        def read_to_the_end() -> None:
            for record in records():
                self.guids.add(record.guid)
                if self.load is not None:
                    self.load.add(record)  # a list read again lands a record again: the load keeps its newest

        try:
            read_unshifted(read_to_the_end)
        except READ_FAILURES as exc:
            self.complete = False
            if isinstance(exc, NotFound) and on_not_found is not None:
                on_not_found(exc)
                return
            if not isinstance(exc, NotFound):
                self.failure = exc
            if isinstance(exc, (NotFound, MalformedResponse)) and self.load is not None:
                self.load.reject_page(f"{type(exc).__name__}: {exc}", self.member_guid)


def list_members(client: MxClient, user_guid: str, load: RecordSink | None = None) -> Listing:
    """The user's members; a 404 (the user may be gone) is kept in ``not_found`` for :func:`users_gone` to settle."""
    listing = Listing(load)
    listing.read(
        lambda: client.list_members(user_guid, on_malformed=listing.on_malformed),
        on_not_found=lambda exc: setattr(listing, "not_found", exc),
    )
    return listing


def retire_absent_members(con, listings: dict[str, Listing], run_id: str) -> list[str]:
    """Retire every member we had that a complete list of its user no longer shows (and bring back any retired
    member a list shows again), all in one transaction."""
    listed = {guid for listing in listings.values() for guid in listing.guids}
    whole = [
        retire.WholeList(user, listing.started_at, run_id) for user, listing in listings.items() if listing.complete
    ]
    with retire.atomically(con):
        retire.reinstate_members(con, listed, now=utc_now())
        absent = [guid for guid, _ in retire.absent_from_lists(con, "raw.mx_members", whole, listed)]
        return retire.retire_members(con, absent, reason=retire.MEMBER_REMOVED, run_id=run_id, now=utc_now())


def users_gone(
    client: MxClient,
    listings: dict[str, Listing],
    ids: dict[str, str],
    load: RecordSink | None = None,
    strangers: Collection[str] = (),
) -> list[str]:
    """The users whose member list answered 404 and whom a complete ``list_users`` by our id (``ids``: user guid
    -> our id) no longer shows: deleted at MX. A stranger (a guid neither MX's lists nor our registrations ever gave
    us: an event named it) is gone when MX's read of that user answers 404 too; it holds nothing of ours to retire,
    and reading it again cannot help. The others' 404 becomes their list's ``failure``, quarantined in ``load``.
    Asks MX only."""
    missing = {user_guid: listing for user_guid, listing in listings.items() if listing.not_found is not None}
    gone = []
    for user_guid in missing:
        if user_guid in strangers:
            if _unknown_to_mx(client, user_guid):
                gone.append(user_guid)
            continue
        if (user_id := ids.get(user_guid)) is None:
            continue
        check = Listing()
        check.read(lambda i=user_id, c=check: client.list_users(id=i, on_malformed=c.on_malformed))
        if check.complete and user_guid not in check.guids:
            gone.append(user_guid)
    for user_guid, listing in missing.items():
        if user_guid not in gone:
            listing.failure = listing.not_found
            if load is not None:
                load.reject_page(f"{type(listing.not_found).__name__}: {listing.not_found}")
    return gone


def _unknown_to_mx(client: MxClient, user_guid: str) -> bool:
    try:
        client.read_user(user_guid)
    except NotFound:
        return True
    except READ_FAILURES:
        pass
    return False


class Suspects:
    """Members whose own read (status, accounts, transactions) answered 404.

    Each is retired if a fresh complete list of its user lacks it too (:meth:`confirm`, once the reads are done;
    the load retires); the 404 itself is a failed, quarantined read, so one bad read retires nothing. The threads
    reading a step's members share one: each notes only its own members (one dict item each, an atomic store).
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

    def confirm(self, client: MxClient, ids: dict[str, str]) -> "Confirmation":
        """Read the fresh lists that settle the suspects (``ids``: user guid -> our id); asks MX only."""
        users = sorted({user_guid for user_guid, _ in self.not_found.values()})
        listings = {user_guid: list_members(client, user_guid) for user_guid in users}
        gone = users_gone(client, listings, ids)
        for listing in listings.values():  # what the retiring needs travels to the writing step; errors stay here
            listing.not_found = listing.failure = None
        return Confirmation({m: user for m, (user, _) in self.not_found.items()}, listings, gone)


@dataclass(frozen=True)
class Confirmation:
    """What MX's fresh lists said of a step's suspects; :meth:`retire` writes it, on the warehouse alone."""

    suspects: dict[str, str]  # member guid -> user guid: the members whose own read answered 404
    listings: dict[str, Listing]  # user guid -> its member list, read after the 404s
    users_gone: list[str]  # users deleted at MX: their members are gone too

    def members_gone(self) -> set[str]:
        """The suspects MX confirmed gone: a complete fresh list of their user lacks them, or their user is gone."""
        return {
            member
            for member, user in self.suspects.items()
            if user in self.users_gone or (self.listings[user].complete and member not in self.listings[user].guids)
        }

    def retire(self, wh: Warehouse, run_id: str) -> list[str]:
        """Retire the members (and users) confirmed gone; returns the members retired."""
        if not self.suspects:
            return []
        with wh.connect() as con, retire.atomically(con):
            retire.retire_users(con, self.users_gone, reason=retire.USER_REMOVED, run_id=run_id, now=utc_now())
        with wh.connect() as con:
            retired = retire_absent_members(con, self.listings, run_id)
        retired += [member for member, user in self.suspects.items() if user in self.users_gone]
        return sorted(retired)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
