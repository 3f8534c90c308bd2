"""``ops.member_events``: what the connect service spooled, parsed and stored in arrival order.

The same key again is a copy (MX redelivering what we did not acknowledge, or a crash handing the same spooled
file over twice) and is skipped, but only within the dedupe window (``DEDUPE_WINDOW``, longer than MX's day of
retries) and only while no other event of the same member was stored in between. Otherwise it is a new event:
a member CHALLENGED, then CONNECTED, then CHALLENGED again the same day sends the same bytes twice, and so
does one CHALLENGED again weeks later.

An event only says "look at this member again": the run it triggers re-reads the status from MX. Each
event is judged on its own: one that cannot be stored as an event (unparsable, or holding text no database
stores) goes to ``ops.quarantine`` with the reason and the bytes received, never dropped and never in the
way of the events behind it. The payload is ``{"spool_key", "kind", "body"}`` with the body as text, or
``"body_base64"`` instead when the bytes are not UTF-8. Users the connect service registered (or saw in a
Connect callback) join ``ops.end_users``.
"""

import base64
import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from mx_pipeline.connect.spool import DEDUPE_WINDOW, SpooledEvent
from mx_pipeline.lifecycle.events import (
    MemberEvent,
    Rejected,
    is_unicode_text,
    parse_connect_callback,
    parse_webhook,
)
from mx_pipeline.warehouse.quarantine import QuarantinedRecord, write_quarantine

TABLE = "ops.member_events"
CONNECT_SERVICE = "connect_service"


@dataclass(frozen=True)
class UserRegistered:
    user_id: str
    user_guid: str


@dataclass(frozen=True)
class StoredEvents:
    stored: int  # new rows in ops.member_events (a redelivered event is not stored twice)
    quarantined: int


def parse_spooled(event: SpooledEvent) -> MemberEvent | UserRegistered | Rejected:
    """The meaning of one spooled event, or why it has none; never raises."""
    try:
        return _meaning(event)
    except Exception as exc:  # a bug of ours met on one event must not hold up the events behind it
        return Rejected(f"could not be parsed: {type(exc).__name__}: {exc}")


def _meaning(event: SpooledEvent) -> MemberEvent | UserRegistered | Rejected:
    if event.kind == "mx_webhook":
        return parse_webhook(event.body)
    if event.kind == "connect_callback":
        return parse_connect_callback(event.body)
    if event.kind == "user_registered":
        try:
            body = json.loads(event.body)
            return UserRegistered(str(body["user_id"]), str(body["user_guid"]))
        except (ValueError, KeyError, TypeError) as exc:
            return Rejected(f"user_registered without user_id and user_guid: {exc!r}")
    return Rejected(f"unknown spooled event kind {event.kind!r}")


def store_spooled(
    con: duckdb.DuckDBPyConnection,
    events: Iterable[SpooledEvent],
    *,
    run_id: str,
    now: dt.datetime,
    dedupe_window: dt.timedelta = DEDUPE_WINDOW,
) -> StoredEvents:
    """Parse and store ``events`` in one transaction; the caller acknowledges them to the spool afterwards.

    Bad content never raises (each event is stored or quarantined on its own); a warehouse error does, before
    the commit, so the caller keeps the whole batch in the spool for the next try.
    """
    rows, users, registrations, rejects = [], [], [], []
    for event in events:
        meaning = parse_spooled(event)
        received = dt.datetime.fromtimestamp(event.received_at_ns / 1e9, dt.UTC)
        row = None if isinstance(meaning, Rejected) else _row(event, meaning, received)
        if row is not None and not all(is_unicode_text(value) for value in row if isinstance(value, str)):
            meaning = Rejected("holds text that is not valid Unicode (a lone surrogate)")
        if isinstance(meaning, Rejected):
            rejects.append(_quarantined(event, meaning.reason))
            continue
        rows.append(row)
        if isinstance(meaning, UserRegistered):
            registrations.append((meaning.user_id, meaning.user_guid, received))
        elif meaning.user_id:
            users.append((meaning.user_id, meaning.user_guid))
    con.execute("begin transaction")
    new = _outside_the_window(con, rows, dedupe_window)
    if new:
        con.executemany(
            f"""
            insert into {TABLE} (event_key, seq, kind, source, user_id, user_guid, member_guid, connection_status,
                                 occurred_at, received_at)
            values (?, nextval('ops.member_event_seq'), ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            new,
        )
    _add_end_users(con, users, now)
    _register_end_users(con, registrations)
    quarantined = write_quarantine(con, rejects, run_id=run_id, now=now)
    con.execute("commit")
    return StoredEvents(len(new), quarantined)


def _row(event: SpooledEvent, meaning: MemberEvent | UserRegistered, received: dt.datetime) -> tuple:
    if isinstance(meaning, UserRegistered):
        return (event.key, event.kind, "api", meaning.user_id, meaning.user_guid, None, None, None, received)
    return (
        event.key,
        event.kind,
        meaning.source,
        meaning.user_id,
        meaning.user_guid,
        meaning.member_guid,
        meaning.connection_status,
        meaning.occurred_at,
        received,
    )


def _quarantined(event: SpooledEvent, reason: str) -> QuarantinedRecord:
    """The event as received, for ``ops.quarantine``: its bytes exactly, as text or (not UTF-8) as base64."""
    raw = event.raw
    try:
        body = {"body": raw.decode("utf-8")}
    except UnicodeDecodeError:
        body = {"body_base64": base64.b64encode(raw).decode("ascii")}
    record = {"spool_key": _storable(event.key), "kind": event.kind, **body}
    return QuarantinedRecord(TABLE, _storable(f"{event.kind}: {reason}"), record)


def _storable(text: str) -> str:
    """``text`` with any lone surrogate written as its escape, so the warehouse can store it."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _outside_the_window(con: duckdb.DuckDBPyConnection, rows: list[tuple], window: dt.timedelta) -> list[tuple]:
    """The rows that are not copies of an event stored before (or earlier in ``rows``).

    A copy has the key of an event received within ``window`` of it, with no event of another key for the same
    member received in between (an event that names no member: the window alone decides). One received at the
    very instant of either copy counts as between: when in doubt an event is news (an extra re-read costs
    little; a challenge taken for a copy leaves the user unaware).
    """
    if not rows:
        return []
    keys = sorted({row[0] for row in rows})
    members = sorted({row[5] for row in rows if row[5]})
    since, until = min(row[-1] for row in rows) - window, max(row[-1] for row in rows) + window
    by_key: dict[str, list[dt.datetime]] = {}
    by_member: dict[str, list[tuple[dt.datetime, str]]] = {}

    def remember(key: str, member: str | None, received: dt.datetime) -> None:
        by_key.setdefault(key, []).append(received)
        if member:
            by_member.setdefault(member, []).append((received, key))

    stored = con.execute(
        f"""
        select event_key, member_guid, received_at from {TABLE}
        where (event_key in ? or member_guid in ?) and received_at between ? and ?
        """,
        [keys, members, since, until],
    ).fetchall()
    for key, member, received in stored:
        remember(key, member, received)

    def nothing_else_between(key: str, member: str | None, a: dt.datetime, b: dt.datetime) -> bool:
        low, high = min(a, b), max(a, b)
        return not any(low <= at <= high and other != key for at, other in by_member.get(member, ()))

    new = []
    for row in sorted(rows, key=lambda r: r[-1]):  # received_at: arrival order, as the spool handed them over
        key, member, received = row[0], row[5], row[-1]
        copies = [earlier for earlier in by_key.get(key, ()) if abs(received - earlier) < window]
        if any(nothing_else_between(key, member, earlier, received) for earlier in copies):
            continue
        remember(key, member, received)
        new.append(row)
    return new


def events_after(con: duckdb.DuckDBPyConnection, seq: int, *, limit: int) -> list[tuple[int, str, str | None]]:
    """(seq, user guid, member guid) of member events stored after ``seq``, oldest first."""
    return con.execute(
        f"select seq, user_guid, member_guid from {TABLE} where seq > ? order by seq limit ?", [seq, limit]
    ).fetchall()


def _add_end_users(con: duckdb.DuckDBPyConnection, users: list[tuple[str, str]], now: dt.datetime) -> None:
    if users:
        con.executemany(
            """
            insert into ops.end_users as e (id, source, mx_user_guid, registered_at) values (?, ?, ?, ?)
            on conflict (id) do update set
                mx_user_guid = coalesce(e.mx_user_guid, excluded.mx_user_guid),
                registered_at = coalesce(e.registered_at, excluded.registered_at),
                -- now(), the transaction's start as current_timestamp is: ON CONFLICT cannot bind current_timestamp
                changed_at = case when e.mx_user_guid is null then now() else e.changed_at end
            """,
            [(user_id, CONNECT_SERVICE, user_guid, now) for user_id, user_guid in dict(users).items()],
        )


def _register_end_users(con: duckdb.DuckDBPyConnection, registrations: list[tuple[str, str, dt.datetime]]) -> None:
    """The connect service registered these users: the newer registration of a user id wins.

    A user deleted at MX (and retired here) who comes back gets a new MX guid: that guid replaces the old one
    and the user is no longer retired. An older registration arriving late never replaces a newer one.
    """
    latest = {user_id: (guid, at) for user_id, guid, at in sorted(registrations, key=lambda r: r[2])}
    if latest:
        con.executemany(  # the guid the id leaves: its rows lose the id (stg_users reads when)
            """
            insert into ops.end_users_left
            select mx_user_guid, now() from ops.end_users
            where id = $id and mx_user_guid is distinct from $guid and mx_user_guid is not null
              and (registered_at is null or registered_at <= $at)
            """,
            [{"id": uid, "guid": guid, "at": at} for uid, (guid, at) in latest.items()],
        )
        con.executemany(
            """
            insert into ops.end_users as e (id, source, mx_user_guid, registered_at) values ($id, $source, $guid, $at)
            on conflict (id) do update set
                mx_user_guid = case when e.registered_at is null or e.registered_at <= excluded.registered_at
                                    then excluded.mx_user_guid else e.mx_user_guid end,
                retired_at = case when (e.registered_at is null or e.registered_at <= excluded.registered_at)
                                       and e.mx_user_guid is distinct from excluded.mx_user_guid
                                  then null else e.retired_at end,
                registered_at = greatest(coalesce(e.registered_at, excluded.registered_at), excluded.registered_at),
                changed_at = now()
            """,
            [{"id": uid, "source": CONNECT_SERVICE, "guid": guid, "at": at} for uid, (guid, at) in latest.items()],
        )
