"""What the spool's raw events mean: MX webhooks and Connect callbacks, parsed when drained.

MX warns that webhook payloads may carry nulls and new fields and never promises field order, so parsing
is lenient about extras and strict about the few fields acted on; anything else becomes a ``Rejected`` with
the reason, for quarantine. MX's webhook timestamps are Unix integers.
"""

import json
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
    try:
        payload = json.loads(body)
    except ValueError as exc:
        return Rejected(f"not JSON: {exc.msg} at position {exc.pos}")
    if not isinstance(payload, dict):
        return Rejected(f"expected a JSON object, got {type(payload).__name__}")
    kind = payload.get("type")
    if kind == "CONNECTION_STATUS":
        status = payload.get("connection_status")
        if not isinstance(status, str):
            return Rejected("CONNECTION_STATUS without a connection_status string")
        return _member_event("CONNECTION_STATUS", payload, connection_status=status)
    if kind in DATA_UPDATED_TYPES:
        occurred = payload.get("completed_at")
        when = datetime.fromtimestamp(occurred, UTC) if isinstance(occurred, int) else None
        return _member_event(kind, payload, occurred_at=when)
    return Rejected(f"unhandled webhook type {kind!r}")


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
    try:
        payload = json.loads(body)
    except ValueError as exc:
        return Rejected(f"not JSON: {exc.msg}")
    if not isinstance(payload, dict):
        return Rejected("expected a JSON object")
    return _member_event("connect_callback", payload, user_id=payload.get("user_id"))


def _member_event(source: str, payload: dict, **fields) -> MemberEvent | Rejected:
    user_guid, member_guid = payload.get("user_guid"), payload.get("member_guid")
    if not isinstance(user_guid, str) or not user_guid:
        return Rejected(f"{source} without a user_guid")
    if not isinstance(member_guid, str) or not member_guid:
        return Rejected(f"{source} without a member_guid")
    return MemberEvent(source, user_guid, member_guid, **fields)
