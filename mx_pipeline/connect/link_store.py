"""What reconnect links and Connect callback states stand for: a small SQLite file both processes reach.

A token in a link names only a random id (``links.py`` signs it); who it is for and what it opens is kept here,
so nothing readable travels in a URL or lands in the warehouse (``ops.reconnect_notifications`` holds the id).

The policy a reconnect link follows:
- It is bound to its notification episode (member guid + episode number). Once the pipeline closes that
  episode (the member is healthy again, its connection ended at MX, or it was retired), the link is refused.
- Unopened, it lives 7 days from when its notification went out: end users open mail late. Only the POST of
  the link page's button opens it; a GET (mail scanners and link previews make them unasked) only checks.
- Once opened, it opens again only within 30 minutes (the same person finishing: MX's widget URL dies after
  10 minutes or at first use, so a reload needs a fresh one); after that it is refused as used.
A callback state lives an hour (a Connect session is long over by then); a reload of the same callback is the
same state, so the same occasion.

This is not the DuckDB warehouse, which the connect service never opens: SQLite in WAL mode with a busy
timeout, so the pipeline and the connect service read and write it at the same time. The file is created on
demand, 0600. Each store has a random id, made with it: the connect service shows it (and the link key id) on
``/healthz``, so a pipeline pointed at another data directory can tell (``defs/lifecycle/checks.py``).
"""

import datetime as dt
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

LINK_UNOPENED_LIFETIME = dt.timedelta(days=7)
LINK_REOPEN_WINDOW = dt.timedelta(minutes=30)
CALLBACK_STATE_LIFETIME = dt.timedelta(hours=1)
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
create table if not exists store (id text not null);
create table if not exists links (
    link_id         text primary key,
    member_guid     text not null,
    episode         integer not null,
    user_id         text,
    user_guid       text not null,
    connect_mode    text not null,
    issued_at       text not null,
    expires_at      text not null,  -- while unopened
    first_opened_at text,
    closed_at       text,
    closed_why      text,           -- ClosedWhy
    unique (member_guid, episode)
);
create table if not exists callback_states (
    state_id    text primary key,
    user_id     text not null,
    user_guid   text not null,
    mode        text not null,
    member_guid text,
    return_to   text,
    issued_at   text not null,
    expires_at  text not null
);
"""


@dataclass(frozen=True)
class ConnectIntent:
    """Who is connecting what, in which mode, and where the user goes afterwards."""

    user_id: str
    user_guid: str
    mode: str
    member_guid: str | None = None
    return_to: str | None = None


class ClosedWhy(StrEnum):
    """Why an episode (and so its links) closed."""

    RECOVERED = "recovered"  # the member is healthy again
    ENDED = "ended"  # its connection ended at MX (closed, discontinued)
    RETIRED = "retired"  # MX no longer has the member


class InvalidLink(Exception):
    """A link or callback state that opens nothing; ``page`` tells the user why in plain words, no identifiers."""

    status = 410
    page = "This link no longer works. Please reconnect your bank from the app."

    def __init__(self, page: str | None = None) -> None:
        super().__init__(page or self.page)
        self.page = page or self.page


class ClosedLink(InvalidLink):
    PAGES = {
        ClosedWhy.RECOVERED: "Your bank connection is working again, so there is nothing to do. "
        "You can close this window.",
        ClosedWhy.ENDED: "This bank connection has ended, so there is nothing to fix here. "
        "You can connect your bank again from the app.",
        ClosedWhy.RETIRED: "This bank connection no longer exists, so there is nothing to fix here. "
        "You can connect your bank again from the app.",
    }

    def __init__(self, why: str | None) -> None:
        super().__init__(self.PAGES.get(why or "", self.PAGES[ClosedWhy.RECOVERED]))


class ExpiredLink(InvalidLink):
    page = "This link has expired (links in our messages work for 7 days). Please reconnect your bank from the app."


class UsedLink(InvalidLink):
    page = "This link has already been used. If your bank connection still needs attention, please fix it from the app."


class UnknownLink(InvalidLink):
    """Well signed, yet this store does not know it: it was issued by a pipeline using another store."""

    page = "We could not open this link. Please reconnect your bank from the app."


class ExpiredState(InvalidLink):
    status = 400
    page = "This sign-in took too long and has timed out. Please start again from the app."


class UnknownState(InvalidLink):
    status = 400
    page = "We could not finish connecting your bank. Please start again from the app."


@dataclass(frozen=True)
class ReconnectLink:
    link_id: str
    member_guid: str
    episode: int
    user_id: str | None
    user_guid: str
    connect_mode: str

    def intent(self) -> ConnectIntent:
        return ConnectIntent(self.user_id or "", self.user_guid, self.connect_mode, self.member_guid)


@dataclass(frozen=True)
class LinkRequest:
    """The link an episode's notification carries: for whom, opening Connect in which mode."""

    member_guid: str
    episode: int
    user_id: str | None
    user_guid: str
    connect_mode: str


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LinkStore:
    """The link store at ``path``; ``clock`` tells the time (tests pass their own)."""

    def __init__(self, path: Path, *, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.path, self._clock = Path(path), clock
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite's -wal/-shm files follow its mode
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            con.execute(f"pragma busy_timeout = {BUSY_TIMEOUT_MS}")
            con.execute("pragma journal_mode = wal")  # kept by the file: readers and one writer at a time, no waits
            con.executescript(_SCHEMA)
        finally:
            con.close()
        with self._transaction() as con:
            con.execute(
                "insert into store (id) select ? where not exists (select 1 from store)", [secrets.token_hex(8)]
            )
            (self.store_id,) = con.execute("select id from store").fetchone()

    # --- reconnect links (the pipeline issues and closes them; the connect service opens them) ---------------

    def issue(self, requests: Iterable[LinkRequest]) -> dict[tuple[str, int], str]:
        """The link id of each request's episode, issued once per episode: {(member guid, episode): link id}.

        Asked again (a pending notification refreshed), an episode keeps its link; an unopened one takes the mode
        the member's latest read asks for.
        """
        clock, issued = self._clock(), {}
        now, expires = _text(clock), _text(clock + LINK_UNOPENED_LIFETIME)
        with self._transaction() as con:
            for r in requests:
                found = con.execute(
                    "select link_id from links where member_guid = ? and episode = ?", [r.member_guid, r.episode]
                ).fetchone()
                if found:
                    con.execute(
                        "update links set user_id = ?, user_guid = ?, connect_mode = ?"
                        " where link_id = ? and first_opened_at is null and closed_at is null",
                        [r.user_id, r.user_guid, r.connect_mode, found[0]],
                    )
                    issued[(r.member_guid, r.episode)] = found[0]
                    continue
                link_id = secrets.token_urlsafe(16)
                con.execute(
                    "insert into links (link_id, member_guid, episode, user_id, user_guid, connect_mode, issued_at,"
                    " expires_at) values (?, ?, ?, ?, ?, ?, ?, ?)",
                    [link_id, r.member_guid, r.episode, r.user_id, r.user_guid, r.connect_mode, now, expires],
                )
                issued[(r.member_guid, r.episode)] = link_id
        return issued

    def sent(self, link_ids: Iterable[str]) -> None:
        """Their notifications went out now: an unopened link lives its 7 days from now (it may have waited)."""
        expires = _text(self._clock() + LINK_UNOPENED_LIFETIME)
        with self._transaction() as con:
            con.executemany(
                "update links set expires_at = max(expires_at, ?)"
                " where link_id = ? and first_opened_at is null and closed_at is null",
                [(expires, link_id) for link_id in link_ids],
            )

    def open_episodes(self) -> list[tuple[str, int]]:
        """(member guid, episode) of every link not closed yet: the episodes the pipeline must say are closed."""
        with self._transaction() as con:
            return [tuple(row) for row in con.execute("select member_guid, episode from links where closed_at is null")]

    def close(self, closed: Mapping[tuple[str, int], ClosedWhy]) -> int:
        """Close the links of these episodes ({(member guid, episode): why}); how many closed now."""
        now = _text(self._clock())
        with self._transaction() as con:
            before = con.total_changes
            con.executemany(
                "update links set closed_at = ?, closed_why = ?"
                " where member_guid = ? and episode = ? and closed_at is null",
                [(now, str(why), guid, episode) for (guid, episode), why in closed.items()],
            )
            return con.total_changes - before

    def open(self, link_id: str, *, only_check: bool = False) -> ReconnectLink:
        """The link, opened now; refused (an :class:`InvalidLink`) when closed, expired, used or unknown.

        ``only_check``: the same verdict without opening it (no window starts): what a GET, which mail scanners
        and link previews make unasked, may do.
        """
        now = self._clock()
        with self._transaction() as con:
            row = con.execute(
                "select member_guid, episode, user_id, user_guid, connect_mode, expires_at, first_opened_at,"
                " closed_at, closed_why from links where link_id = ?",
                [link_id],
            ).fetchone()
            if row is None:
                raise UnknownLink()
            *fields, expires_at, first_opened_at, closed_at, closed_why = row
            if closed_at is not None:
                raise ClosedLink(closed_why)
            if first_opened_at is None:
                if now >= _time(expires_at):
                    raise ExpiredLink()
                if not only_check:
                    con.execute("update links set first_opened_at = ? where link_id = ?", [_text(now), link_id])
            elif now >= _time(first_opened_at) + LINK_REOPEN_WINDOW:
                raise UsedLink()
            return ReconnectLink(link_id, *fields)

    # --- Connect callback states (the connect service alone) ------------------------------------------------

    def save_state(self, intent: ConnectIntent) -> str:
        """A new state id for one Connect session of ``intent`` (states expired a day ago are let go)."""
        now, state_id = self._clock(), secrets.token_urlsafe(16)
        with self._transaction() as con:
            con.execute("delete from callback_states where expires_at < ?", [_text(now - dt.timedelta(days=1))])
            con.execute(
                "insert into callback_states values (?, ?, ?, ?, ?, ?, ?, ?)",
                [state_id, intent.user_id, intent.user_guid, intent.mode, intent.member_guid, intent.return_to,
                 _text(now), _text(now + CALLBACK_STATE_LIFETIME)],
            )  # fmt: skip
        return state_id

    def read_state(self, state_id: str) -> ConnectIntent:
        with self._transaction() as con:
            row = con.execute(
                "select user_id, user_guid, mode, member_guid, return_to, expires_at from callback_states"
                " where state_id = ?",
                [state_id],
            ).fetchone()
        if row is None:
            raise UnknownState()
        if self._clock() >= _time(row[-1]):
            raise ExpiredState()
        return ConnectIntent(*row[:-1])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One short connection and write transaction (``begin immediate``: writers queue, never deadlock)."""
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            con.execute(f"pragma busy_timeout = {BUSY_TIMEOUT_MS}")
            con.execute("begin immediate")
            try:
                yield con
            except BaseException:
                con.execute("rollback")
                raise
            con.execute("commit")
        finally:
            con.close()


def _text(moment: dt.datetime) -> str:
    """A time as sortable text: UTC, always with microseconds."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)
