"""MX records -> raw table rows, and rows -> typed frames ready to validate and write.

Money and MX dates travel as text (``str(Decimal)``, ``date.isoformat()``) and are cast by DuckDB on
insert, so neither ever passes through a float or a time zone. Timestamps are UTC ``datetime64``.
"""

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mx_pipeline.mx.records import Account, Member, MemberStatus, Transaction, User, payload_json
from mx_pipeline.warehouse.tables import TableSpec

if TYPE_CHECKING:
    import pandas as pd

Row = dict[str, Any]


@dataclass(frozen=True)
class Load:
    """Load metadata stamped on every raw row: which Dagster run fetched it, and when."""

    run_id: str
    fetched_at: dt.datetime


def user_row(user: User, load: Load) -> Row:
    return {"guid": user.guid, "id": user.id, **_payload_and_load(user.payload, load)}


def member_row(member: Member, load: Load) -> Row:
    return {
        "guid": member.guid,
        "user_guid": member.user_guid,
        "institution_code": member.institution_code,
        "connection_status": member.connection_status,
        **_payload_and_load(member.payload, load),
    }


def member_status_row(status: MemberStatus, user_guid: str, load: Load) -> Row:
    return {
        "guid": status.guid,
        "user_guid": user_guid,  # the status body carries only the member guid
        "connection_status": status.connection_status,
        "is_being_aggregated": status.is_being_aggregated,
        "successfully_aggregated_at": status.successfully_aggregated_at,
        # One shape and order whether a status read or a member list's entry told it: the same status, the same row.
        **_payload_and_load(MemberStatus.listed_fields(status.payload), load),
    }


def account_row(account: Account, load: Load) -> Row:
    return {
        "guid": account.guid,
        "member_guid": account.member_guid,
        "user_guid": account.user_guid,
        "type": account.type,
        "balance": _money(account.balance),
        "currency_code": account.currency_code,
        "updated_at": account.updated_at,
        **_payload_and_load(account.payload, load),
    }


def transaction_row(txn: Transaction, load: Load) -> Row:
    return {
        "guid": txn.guid,
        "member_guid": txn.member_guid,
        "account_guid": txn.account_guid,
        "user_guid": txn.user_guid,
        "status": txn.status,
        "type": txn.type,
        "amount": _money(txn.amount),
        "date": txn.date.isoformat() if txn.date else None,
        "updated_at": txn.updated_at,
        "removed_at": None,  # a row MX lists is live, even one we had marked removed before
        **_payload_and_load(txn.payload, load),
    }


def to_frame(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> "pd.DataFrame":
    """A frame with ``spec.columns``: ``*_at`` columns as UTC timestamps, ``is_*`` as nullable booleans."""
    import pandas as pd  # inside runs only: the code server never loads pandas (test_definitions.py)

    frame = pd.DataFrame.from_records(list(rows), columns=list(spec.columns))
    for column in spec.columns:
        if column.endswith("_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
        elif column.startswith("is_"):
            frame[column] = frame[column].astype("boolean")
        else:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def _money(value) -> str | None:
    return None if value is None else str(value)


def _payload_and_load(payload: Any, load: Load) -> Row:
    return {"payload": payload_json(payload), "run_id": load.run_id, "fetched_at": load.fetched_at}
