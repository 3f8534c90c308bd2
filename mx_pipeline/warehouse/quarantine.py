"""``ops.quarantine``: records that could not be loaded, kept with the reason and the payload as received."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

import duckdb

from mx_pipeline.mx.records import payload_json


@dataclass(frozen=True)
class QuarantinedRecord:
    """One record (or one unreadable page) kept out of a raw table, and why."""

    table_name: str
    reason: str
    payload: Any = None  # the object as received; None when the response itself could not be read
    record_guid: str | None = None
    member_guid: str | None = None

    @classmethod
    def of_payload(cls, table_name: str, reason: str, payload: Any, member_guid: str | None = None):
        """A quarantined record whose guid, if it has a usable one, is read from its payload."""
        guid = payload.get("guid") if isinstance(payload, dict) else None
        return cls(table_name, reason, payload, guid if isinstance(guid, str) else None, member_guid)


def write_quarantine(
    con: duckdb.DuckDBPyConnection, records: list[QuarantinedRecord], *, run_id: str, now: dt.datetime
) -> int:
    """Append ``records`` to ``ops.quarantine``; returns how many were written."""
    if not records:
        return 0
    con.executemany(
        """
        insert into ops.quarantine
            (quarantined_at, run_id, table_name, record_guid, member_guid, reason, payload)
        values (?, ?, ?, ?, ?, ?, ?)
        """,
        [
            (
                now,
                run_id,
                r.table_name,
                r.record_guid,
                r.member_guid,
                r.reason,
                None if r.payload is None else payload_json(r.payload),
            )
            for r in records
        ],
    )
    return len(records)
