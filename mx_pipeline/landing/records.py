"""Land one read of MX records (a member's accounts or status, a user's members) as Parquet parts of judged rows,
then its manifest.

The records become raw rows (``warehouse/rows.py``) and are judged by the table's pandera schema a batch at a time,
here, in the reading run: a row the schema refuses, or a record the client could not parse, stays in the part
with its ``reason`` and its payload, and the loader quarantines it. The parts are written by the process's one
parser (``parser.py``); the warehouse file is never opened. A list is small (a member has a few accounts), so a
part holds up to ``BATCH_ROWS`` rows and most reads land one.
"""

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import duckdb

from mx_pipeline.landing.area import LandingArea, Manifest
from mx_pipeline.landing.parser import on_parser
from mx_pipeline.landing.read import ReadLanding
from mx_pipeline.mx.errors import MalformedRecord
from mx_pipeline.mx.records import payload_json
from mx_pipeline.warehouse.rows import Load, Row
from mx_pipeline.warehouse.sql_literals import sql_literal
from mx_pipeline.warehouse.tables import LOAD_COLUMNS, TableSpec

BATCH_ROWS = 1000


class RecordLanding(ReadLanding):
    """Collects one read's records of ``spec`` and lands them every ``batch_size`` rows; :meth:`finish` writes
    the listed guids and the manifest. It takes a :class:`~mx_pipeline.defs.ingest.listing.Listing`'s records
    (``add``, ``reject``, ``reject_page``)."""

    def __init__(
        self,
        area: LandingArea,
        table: str,
        spec: TableSpec,
        to_row: Callable[[Any, Load], Row],
        *,
        run_id: str,
        member_guid: str | None,  # None: the user's own list
        user_guid: str,
        batch_size: int = BATCH_ROWS,
    ) -> None:
        directory = (
            area.member_directory(table, run_id, member_guid)
            if member_guid
            else area.user_directory(table, run_id, user_guid)
        )
        super().__init__(area, directory, run_id=run_id, member_guid=member_guid, user_guid=user_guid)
        self.spec, self.to_row, self.batch_size = spec, to_row, batch_size
        self._load: Load | None = None  # the batch's: stamped when its first record arrives, as it was fetched
        self._queued: list[Row] = []
        self._rejects: list[tuple[str, str]] = []  # (payload as JSON text, reason)
        self._lock = threading.Lock()

    def add(self, record: Any) -> None:
        with self._lock:
            if self._load is None:
                self._load = Load(self.run_id, dt.datetime.now(dt.UTC))
            self._queued.append(self.to_row(record, self._load))
            if len(self._queued) >= self.batch_size:
                self._flush()

    def reject(self, error: MalformedRecord, member_guid: str | None = None) -> None:
        """A record the client could not parse: landed with the reason, for the loader to quarantine."""
        with self._lock:
            self._rejects.append((payload_json(error.payload), str(error)))

    def reject_page(self, reason: str, member_guid: str | None = None) -> None:
        """A whole response that could not be read: nothing of it can be kept but the reason."""
        with self._lock:
            self._page_rejects.append(reason)

    def finish(
        self, *, outcome: str, reason: str | None = None, listed_guids=(), listed_from: dt.datetime | None = None
    ) -> Manifest:
        """Land what is queued and the guids listed, then the manifest: from here the loader may take it.
        ``listed_from``: when the list began, given only when it was read whole (it may then retire)."""
        return self._finish(outcome=outcome, reason=reason, listed_guids=listed_guids, listed_from=listed_from)

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        # pandera (and pandas) inside runs only: the code server never loads them (test_definitions.py)
        from mx_pipeline.warehouse.rows import to_frame
        from mx_pipeline.warehouse.schemas import BY_TABLE
        from mx_pipeline.warehouse.validate import split_valid

        rows, rejects, load = self._queued, self._rejects, self._load
        self._queued, self._rejects, self._load = [], [], None
        if not rows and not rejects:
            return
        valid, refused = split_valid(BY_TABLE[self.spec.name], to_frame(self.spec, rows)) if rows else (None, [])
        rejects += [(r.row["payload"], r.reason) for r in refused]
        name, path, offset = self._next_part()
        sql = _part_sql(self.spec, path, with_valid=valid is not None and not valid.empty, with_rejects=bool(rejects))
        params = {
            "payloads": [payload for payload, _ in rejects],
            "reasons": [reason for _, reason in rejects],
            "run_id": self.run_id,
            "fetched_at": load.fetched_at if load else dt.datetime.now(dt.UTC),
            "member": self.member_guid,
            "offset": offset,
        }

        def write(con: duckdb.DuckDBPyConnection) -> None:
            if valid is not None:
                con.register("valid", valid)
            try:
                con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql})
            finally:
                if valid is not None:
                    con.unregister("valid")

        on_parser(self.area, write)
        self._parts.append(name)
        self.rows += (0 if valid is None else len(valid)) + len(rejects)
        self.refused += len(rejects)


def _landed_type(column: str) -> str:
    """How a column is landed: as ``to_frame`` types it (money and MX dates stay exact text until the merge)."""
    if column.endswith("_at"):
        return "timestamptz"
    return "boolean" if column.startswith("is_") else "varchar"


def _part_sql(spec: TableSpec, path: str, *, with_valid: bool, with_rejects: bool) -> str:
    """One part: the valid rows and the refused ones (payload and reason only), typed alike, in arrival order."""
    typed = ", ".join(f"cast({c} as {_landed_type(c)}) as {c}" for c in spec.columns)
    sources = []
    if with_valid:
        sources.append(f"select {', '.join(spec.columns)}, null::varchar as reason from valid")
    if with_rejects:
        blanks = ", ".join(f"null as {c}" for c in spec.columns if c not in ("payload", *LOAD_COLUMNS))
        sources.append(
            f"select {blanks}, unnest($payloads::varchar[]) as payload, $run_id as run_id,"
            " $fetched_at as fetched_at, unnest($reasons::varchar[]) as reason"
        )
    union = " union all by name ".join(sources)
    return f"""
        copy (
            select {typed}, row_number() over () + $offset as _ordinal, reason, cast($member as varchar) as _member
            from ({union})
        ) to {sql_literal(path)} (format parquet, compression zstd)
    """
