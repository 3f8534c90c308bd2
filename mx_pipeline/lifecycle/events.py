"""What the spool's raw events mean: MX webhooks and Connect callbacks, parsed when drained.

MX warns that webhook payloads may carry nulls and new fields and never promises field order, so parsing
is lenient about extras and strict about the few fields acted on; anything else becomes a ``Rejected`` with
the reason, for quarantine. MX's webhook timestamps are Unix integers.

Parsing never raises, whatever the bytes: bodies that are not UTF-8 (spooled as surrogate escapes), integers
past Python's digit limit, nesting deeper than the recursion limit, timestamps outside the calendar, and lone
surrogates (``"\\ud800"``, which no database stores as text) are each a ``Rejected``, so one bad delivery
never holds up the events behind it.
"""

import json
import reprlib
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class MemberEvent:
    """Something happened to a member: its status should be re-read (never trusted from the event alone)."""

    source: str  # CONNECTION_STATUS | AGGREGATION | connect_callback | ...
    user_guid: str
    member_guid: str
    connection_status: str | None = None
    occurred_at: datetime | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class Rejected:
    reason: str


# MX's aggregation-family webhooks (docs.mx.com/resources/webhooks): all say "member data was updated".
DATA_UPDATED_TYPES = frozenset({"AGGREGATION", "HISTORY", "BALANCE", "STATEMENT", "VERIFICATION", "REWARD"})


def parse_webhook(body: str) -> MemberEvent | Rejected:
    """A spooled MX webhook body as a member event, or the reason it cannot be one."""
    payload = _json_object(body)
    if isinstance(payload, Rejected):
        return payload
    kind = payload.get("type")
    if kind == "CONNECTION_STATUS":
        status = payload.get("connection_status")
        if not isinstance(status, str):
            return Rejected("CONNECTION_STATUS without a connection_status string")
        return _member_event("CONNECTION_STATUS", payload, connection_status=status)
    if isinstance(kind, str) and kind in DATA_UPDATED_TYPES:
        occurred = payload.get("completed_at")
        if not isinstance(occurred, int) or isinstance(occurred, bool):
            return _member_event(kind, payload)  # MX may send null; the event still says "re-read the member"
        try:
            when = datetime.fromtimestamp(occurred, UTC)
        except (OverflowError, ValueError, OSError):
            return Rejected(f"{kind} with completed_at out of range: {reprlib.repr(occurred)}")
        return _member_event(kind, payload, occurred_at=when)
    return Rejected(f"unhandled webhook type {reprlib.repr(kind)}")


def member_named_by(body: str | bytes) -> str | None:
    """The member guid a webhook body names, or None; never raises (the body is judged when drained)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    member_guid = payload.get("member_guid") if isinstance(payload, dict) else None
    return member_guid if isinstance(member_guid, str) and member_guid else None


def parse_connect_callback(body: str) -> MemberEvent | Rejected:
    """A Connect callback the connect service recorded (redirect or postMessage relay)."""
    payload = _json_object(body)
    if isinstance(payload, Rejected):
        return payload
    user_id = payload.get("user_id")
    if user_id is not None and not isinstance(user_id, str):
        return Rejected("connect_callback with a user_id that is not text")
    return _member_event("connect_callback", payload, user_id=user_id)


def is_unicode_text(value: str) -> bool:
    """Whether ``value`` can be stored as text: a lone surrogate (or an undecodable byte kept as one) cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_object(body: str) -> dict | Rejected:
    """``body`` as a JSON object, or why it is not one."""
    if not is_unicode_text(body):
        return Rejected(f"not UTF-8: {_first_undecodable(body)}")
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        return Rejected(f"not JSON: {exc.msg} at position {exc.pos}")
    except ValueError as exc:  # an integer past Python's digit limit
        return Rejected(f"not JSON: {exc}")
    except RecursionError:
        return Rejected("not JSON: nested too deeply")
    if not isinstance(payload, dict):
        return Rejected(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def _first_undecodable(body: str) -> str:
    """Where ``body`` stops being UTF-8, in bytes as received (the receiver kept each bad byte as a surrogate)."""
    start = next(i for i, char in enumerate(body) if not is_unicode_text(char))
    offset, code = len(body[:start].encode("utf-8")), ord(body[start])
    what = f"0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"a lone surrogate U+{code:04X}"
    return f"{what} at byte {offset}"


def _member_event(source: str, payload: dict, **fields) -> MemberEvent | Rejected:
    user_guid, member_guid = payload.get("user_guid"), payload.get("member_guid")
    if not isinstance(user_guid, str) or not user_guid:
        return Rejected(f"{source} without a user_guid")
    if not isinstance(member_guid, str) or not member_guid:
        return Rejected(f"{source} without a member_guid")
    event = MemberEvent(source, user_guid, member_guid, **fields)
    for name in ("user_guid", "member_guid", "connection_status", "user_id"):
        value = getattr(event, name)
        if isinstance(value, str) and not is_unicode_text(value):
            return Rejected(f"{source} with a {name} that is not valid Unicode (a lone surrogate)")
    return event
