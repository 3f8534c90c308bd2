"""Typed records for MX objects, with MX's own field names (v20111101 ``*Response`` schemas).

Each record keeps the ``payload`` exactly as received (for the raw layer) and exposes the fields the project
uses, converted once: money as ``Decimal``, MX dates as ``date``, timestamps as UTC ``datetime``. A payload
whose fields have the wrong JSON type raises :class:`~mx_pipeline.mx.errors.MalformedRecord` naming the
field, so callers can quarantine the record with a reason instead of crashing on a ``KeyError`` later.
Fields MX adds in future are kept in ``payload`` and otherwise ignored (MX only ever adds fields).
"""

import dataclasses
import datetime as dt
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from types import NoneType, UnionType
from typing import Any, ClassVar, Self

import simplejson

from mx_pipeline.mx.errors import MalformedRecord
from mx_pipeline.mx.statuses import ConnectionStatus, parse_connection_status


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("expected a string")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError("expected a boolean")


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError("expected an integer")


def _to_decimal(value: Any) -> Decimal:
    # A quoted number is a contract breach (the spec and MX's SDK say JSON number): reject, don't guess.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError("expected a number")
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise TypeError("expected a finite number")
    return number


def _to_datetime(value: Any) -> dt.datetime:
    moment = dt.datetime.fromisoformat(_to_str(value))
    # MX sends UTC with a Z suffix; a naive value is read as UTC rather than as local time.
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _to_date(value: Any) -> dt.date:
    return dt.date.fromisoformat(_to_str(value)[:10])


def _to_dicts(value: Any) -> list[dict]:
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise TypeError("expected an array of objects")


_CONVERTERS = {
    str: _to_str,
    bool: _to_bool,
    int: _to_int,
    Decimal: _to_decimal,
    dt.datetime: _to_datetime,
    dt.date: _to_date,
    list: _to_dicts,
}


@cache
def _field_plan(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, converter, required) for each declared MX field of a record class."""
    hints = typing.get_type_hints(cls)
    plan = []
    for f in dataclasses.fields(cls):
        if f.name == "payload":
            continue
        hint = hints[f.name]
        optional = isinstance(hint, UnionType) and NoneType in typing.get_args(hint)
        base = next(a for a in typing.get_args(hint) if a is not NoneType) if optional else hint
        base = typing.get_origin(base) or base
        plan.append((f.name, _CONVERTERS[base], not optional))
    return tuple(plan)


def payload_json(payload: Any) -> str:
    """A payload as JSON text, numbers written exactly as MX sent them (no float round trip)."""
    return simplejson.dumps(payload, use_decimal=True, separators=(",", ":"))


@dataclass(frozen=True)
class Record:
    """Base of every MX record. ``payload`` is the object as MX sent it."""

    envelope: ClassVar[str]

    @classmethod
    def from_payload(cls, payload: Any) -> Self:
        if not isinstance(payload, dict):
            raise MalformedRecord(f"{cls.__name__}: expected a JSON object", payload=payload)
        values: dict[str, Any] = {"payload": payload}
        for name, convert, required in _field_plan(cls):
            raw = payload.get(name)
            if raw is None:
                if required:
                    raise MalformedRecord(f"{cls.__name__}.{name} is missing or null", payload=payload)
                values[name] = None
                continue
            try:
                values[name] = convert(raw)
            except (TypeError, ValueError) as exc:
                reason = f"{cls.__name__}.{name}: {exc} (got {raw!r:.60})"
                raise MalformedRecord(reason, payload=payload) from None
        return cls(**values)


@dataclass(frozen=True)
class User(Record):
    envelope = "user"
    guid: str
    id: str | None = None
    email: str | None = field(default=None, repr=False)  # personal data: never in reprs or logs
    is_disabled: bool | None = None
    metadata: str | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class WidgetUrl(Record):
    envelope = "widget_url"
    url: str
    type: str | None = None
    user_id: str | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Institution(Record):
    envelope = "institution"
    code: str
    name: str | None = None
    url: str | None = None
    supports_oauth: bool | None = None
    supports_transaction_history: bool | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Credential(Record):
    """A credential field of an institution (or of a member): what the user must type."""

    envelope = "credential"
    guid: str
    field_name: str | None = None
    label: str | None = None
    type: str | None = None
    field_type: str | None = None
    display_order: int | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Challenge(Record):
    """One MFA question of a CHALLENGED member (GET .../challenges or the status endpoint)."""

    envelope = "challenge"
    guid: str
    label: str | None = None
    field_name: str | None = None
    type: str | None = None
    options: list[dict] | None = None
    image_options: list[dict] | None = None
    image_data: str | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Member(Record):
    envelope = "member"
    guid: str
    user_guid: str | None = None
    user_id: str | None = None
    id: str | None = None
    institution_code: str | None = None
    name: str | None = None
    connection_status: str | None = None
    connection_status_message: str | None = None
    is_being_aggregated: bool | None = None
    is_oauth: bool | None = None
    oauth_window_uri: str | None = None
    needs_updated_credentials: bool | None = None
    aggregated_at: dt.datetime | None = None
    successfully_aggregated_at: dt.datetime | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def status(self) -> ConnectionStatus | None:
        """The status as an enum member; None for null or a value MX added after this code was written."""
        return parse_connection_status(self.connection_status)


@dataclass(frozen=True)
class MemberStatus(Record):
    """GET .../status: what to do next for a member (MX: "should determine what you do next")."""

    envelope = "member"
    guid: str
    connection_status: str | None = None
    is_authenticated: bool | None = None
    is_being_aggregated: bool | None = None
    has_processed_accounts: bool | None = None
    has_processed_transactions: bool | None = None
    aggregated_at: dt.datetime | None = None
    successfully_aggregated_at: dt.datetime | None = None
    challenges: list[dict] | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)
    # What a member list's entry (MemberResponse) says of the member too: all of a status read but its MFA details.
    LISTED: ClassVar[tuple[str, ...]] = (
        "guid",
        "connection_status",
        "is_being_aggregated",
        "aggregated_at",
        "successfully_aggregated_at",
    )

    @classmethod
    def as_listed(cls, entry: Any) -> Self:
        """The status a member list's entry gives; raises ``MalformedRecord`` as ``from_payload`` does."""
        if not isinstance(entry, dict):
            raise MalformedRecord(f"{cls.__name__}: expected a JSON object", payload=entry)
        return cls.from_payload(cls.listed_fields(entry))

    @classmethod
    def listed_fields(cls, payload: dict) -> dict:
        """``payload``'s :attr:`LISTED` fields, in that order: one shape whether a status read or a list told it."""
        return {name: payload[name] for name in cls.LISTED if name in payload}

    @property
    def status(self) -> ConnectionStatus | None:
        return parse_connection_status(self.connection_status)

    @property
    def is_done_aggregating(self) -> bool:
        """CONNECTED with no job running: the member's accounts and transactions can be read."""
        return self.status is ConnectionStatus.CONNECTED and not self.is_being_aggregated


@dataclass(frozen=True)
class Account(Record):
    envelope = "account"
    guid: str
    member_guid: str | None = None
    user_guid: str | None = None
    id: str | None = None
    institution_code: str | None = None
    name: str | None = None
    type: str | None = None
    subtype: str | None = None
    balance: Decimal | None = None
    available_balance: Decimal | None = None
    currency_code: str | None = None
    is_closed: bool | None = None
    updated_at: dt.datetime | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Transaction(Record):
    """MX sends ``amount`` unsigned; ``type`` (CREDIT/DEBIT) carries the direction."""

    envelope = "transaction"
    guid: str
    account_guid: str | None = None
    member_guid: str | None = None
    user_guid: str | None = None
    amount: Decimal | None = None
    type: str | None = None
    status: str | None = None
    currency_code: str | None = None
    date: dt.date | None = None
    transacted_at: dt.datetime | None = None
    posted_at: dt.datetime | None = None
    description: str | None = None
    original_description: str | None = None
    category: str | None = None
    category_guid: str | None = None
    top_level_category: str | None = None
    merchant_guid: str | None = None
    merchant_category_code: int | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Category(Record):
    envelope = "category"
    guid: str
    name: str | None = None
    parent_guid: str | None = None
    is_default: bool | None = None
    is_income: bool | None = None
    payload: dict = field(default_factory=dict, repr=False, compare=False)
