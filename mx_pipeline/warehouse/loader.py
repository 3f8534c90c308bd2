"""Stream MX records into one raw table in bounded batches: rows -> pandera -> quarantine or upsert.

Memory is bounded by ``batch_size`` whatever the length of the history, and each batch is written on its
own short-lived connection, so a long fetch never holds the warehouse file between pages.
"""

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import duckdb
import simplejson

from mx_pipeline.mx.errors import MalformedRecord
from mx_pipeline.warehouse.api_calls import ApiCallLog
from mx_pipeline.warehouse.connection import Warehouse
from mx_pipeline.warehouse.quarantine import QuarantinedRecord, write_quarantine
from mx_pipeline.warehouse.rows import Load, Row, to_frame
from mx_pipeline.warehouse.tables import TableSpec
from mx_pipeline.warehouse.upsert import UpsertCounts, upsert

BATCH_SIZE = 1000  # one MX page at records_per_page=1000


class RawLoader:
    """Collects records for ``spec`` and writes them every ``batch_size`` rows (and on :meth:`flush`).

    Several reading threads may add to one loader: one at a time, so batches and counts stay whole. A full batch
    is written by the thread that filled it, which has its record in hand: no lock is held while MX is asked.
    """

    def __init__(
        self,
        warehouse: Warehouse,
        spec: TableSpec,
        to_row: Callable[[Any, Load], Row],
        *,
        run_id: str,
        api_log: ApiCallLog | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.warehouse = warehouse
        self.spec = spec
        self.to_row = to_row
        self.run_id = run_id
        self.api_log = api_log
        self.batch_size = batch_size
        self.counts = UpsertCounts()
        self.quarantined = 0
        self._rows: list[Row] = []
        self._rejects: list[QuarantinedRecord] = []
        self._load: Load | None = None
        self._lock = threading.RLock()  # re-entrant: add() flushes a full batch

    def add(self, record: Any) -> None:
        """Queue one record; writes the batch when it is full."""
        with self._lock:
            if self._load is None:
                self._load = Load(self.run_id, dt.datetime.now(dt.UTC))
            self._rows.append(self.to_row(record, self._load))
            if len(self._rows) >= self.batch_size:
                self.flush()

    def reject(self, error: MalformedRecord, member_guid: str | None = None) -> None:
        """Quarantine a record the client could not parse (pass as the client's ``on_malformed``)."""
        with self._lock:
            self._rejects.append(QuarantinedRecord.of_payload(self.spec.name, str(error), error.payload, member_guid))

    def reject_page(self, reason: str, member_guid: str | None = None) -> None:
        """Quarantine a whole response that could not be read (nothing of it can be kept but the reason)."""
        with self._lock:
            self._rejects.append(QuarantinedRecord(self.spec.name, reason, member_guid=member_guid))

    def flush(self, con: duckdb.DuckDBPyConnection | None = None) -> UpsertCounts:
        """Validate and write what is queued, on ``con`` when given (a caller writing more in the same short
        transaction), else on a connection of its own; returns this batch's counts."""
        with self._lock:
            return self._flush(con)

    def _flush(self, con: duckdb.DuckDBPyConnection | None) -> UpsertCounts:
        # pandera (and pandas) inside runs only: the code server never loads them (test_definitions.py)
        from mx_pipeline.warehouse.schemas import BY_TABLE
        from mx_pipeline.warehouse.validate import split_valid

        rows, rejects, self._rows, self._rejects, self._load = self._rows, self._rejects, [], [], None
        if not rows and not rejects and not (self.api_log and self.api_log.pending):
            return UpsertCounts()
        valid, rejected = split_valid(BY_TABLE[self.spec.name], to_frame(self.spec, rows)) if rows else (None, [])
        rejects += [
            QuarantinedRecord.of_payload(self.spec.name, r.reason, _payload_of(r.row), r.row.get("member_guid"))
            for r in rejected
        ]
        if con is None:
            with self.warehouse.connect() as own:
                return self._write(own, valid, rejects)
        return self._write(con, valid, rejects)

    def _write(self, con: duckdb.DuckDBPyConnection, valid, rejects: list[QuarantinedRecord]) -> UpsertCounts:
        counts = upsert(con, self.spec, valid) if valid is not None else UpsertCounts()
        self.quarantined += write_quarantine(con, rejects, run_id=self.run_id, now=dt.datetime.now(dt.UTC))
        if self.api_log:
            self.api_log.flush(con)
        self.counts += counts
        return counts

    def __enter__(self) -> "RawLoader":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Write what arrived even when the fetch failed part-way: those rows are true, and the caller's
        # watermark (advanced only on success) makes the next run fetch the rest again.
        self.flush()


def _payload_of(row: Row) -> Any:
    return simplejson.loads(row["payload"], use_decimal=True)
