"""Land one read of MX records (a member's accounts or status, a user's members) as Parquet parts of judged rows,
then its manifest.

The records become raw rows (``warehouse/rows.py``) and are judged by the table's pandera schema a batch at a time,
here, in the reading run: a row the schema refuses, or a record the client could not parse, stays in the part
with its ``reason`` and its payload, and the loader quarantines it. The parts are written by the process's one
parser (``parser.py``); the warehouse file is never opened. A list is small (a member has a few accounts), so a
part holds up to ``BATCH_ROWS`` rows and most reads land one, most often with other members' reads in one write
(``batch.py``).
"""

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mx_pipeline.landing.area import LandingArea
from mx_pipeline.landing.read import ReadLanding, write_partitioned
from mx_pipeline.mx.errors import MalformedRecord
from mx_pipeline.mx.records import payload_json
from mx_pipeline.warehouse.rows import Load, Row
from mx_pipeline.warehouse.tables import LOAD_COLUMNS, TableSpec

if TYPE_CHECKING:
    from mx_pipeline.landing.batch import LandingBatch

BATCH_ROWS = 1000


@dataclass
class Queued:
    """A read's records waiting to be landed: rows to judge, records the client could not parse."""

    fetched_at: dt.datetime | None = None  # stamped when the first record arrives, as it was fetched
    rows: list[Row] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (payload as JSON text, reason)

    def __bool__(self) -> bool:
        return bool(self.rows or self.rejects)


class RecordLanding(ReadLanding):
    """Collects one read's records of ``spec`` and lands them every ``batch_size`` rows; :meth:`finish` writes
    the listed guids and the manifest. It takes a :class:`~mx_pipeline.defs.ingest.listing.Listing`'s records
    (``add``, ``reject``, ``reject_page``). Given a ``batch`` (``batch.py``), a read that never filled a part
    finishes into it, to be landed with other members' reads."""

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
        batch: "LandingBatch | None" = None,
    ) -> None:
        directory = (
            area.member_directory(table, run_id, member_guid)
            if member_guid
            else area.user_directory(table, run_id, user_guid)
        )
        super().__init__(area, directory, run_id=run_id, member_guid=member_guid, user_guid=user_guid)
        self.spec, self.to_row, self.batch_size, self.batch = spec, to_row, batch_size, batch
        self._queued = Queued()
        self._lock = threading.Lock()
        self.finished = False  # finish was called

    def add(self, record: Any, *, fetched_at: dt.datetime | None = None) -> None:
        """Queue one record; ``fetched_at``: when MX said it, when that was not just now."""
        with self._lock:
            queued = self._queued
            if queued.fetched_at is None:
                queued.fetched_at = dt.datetime.now(dt.UTC)
            queued.rows.append(self.to_row(record, Load(self.run_id, fetched_at or queued.fetched_at)))
            full = len(queued.rows) >= self.batch_size
        if full:
            self.flush()

    def reject(self, error: MalformedRecord, member_guid: str | None = None) -> None:
        """A record the client could not parse: landed with the reason, for the loader to quarantine."""
        with self._lock:
            self._queued.rejects.append((payload_json(error.payload), str(error)))

    def reject_page(self, reason: str, member_guid: str | None = None) -> None:
        """A whole response that could not be read: nothing of it can be kept but the reason."""
        with self._lock:
            self._page_rejects.append(reason)

    def finish(
        self, *, outcome: str, reason: str | None = None, listed_guids=(), listed_from: dt.datetime | None = None
    ) -> None:
        """Land what is queued and the guids listed, then the manifest: from here the loader may take it.
        ``listed_from``: when the list began, given only when it was read whole (it may then retire).
        With a batch, a read with no part of its own lands with the batch's others, when the batch is landed.
        A read is finished once: :attr:`finished` says so from the call on, even when landing it fails."""
        self.finished = True
        if self.batch is not None and not self._parts:
            self.batch.take(self, sorted(listed_guids or ()), outcome=outcome, reason=reason, listed_from=listed_from)
        else:
            self._finish(outcome=outcome, reason=reason, listed_guids=listed_guids, listed_from=listed_from)

    def flush(self) -> None:
        land_parts(self.spec, [self])

    def take_queued(self) -> Queued:
        """What is queued, taken to be landed."""
        with self._lock:
            queued, self._queued = self._queued, Queued()
        return queued

    @property
    def queued_rows(self) -> int:
        with self._lock:
            return len(self._queued.rows) + len(self._queued.rejects)

    def landed(self, part: str, rows: int, refused: int) -> None:
        """``part`` of ``rows`` rows (``refused`` of them refused) was written in this read's directory."""
        self._parts.append(part)
        self.rows += rows
        self.refused += refused


def land_parts(spec: TableSpec, landings: list[RecordLanding]) -> None:
    """Land what each read has queued, a part per read, with one judgement and one write: the rows are judged by
    the table's pandera schema together, and one partitioned ``copy`` writes each read's part in its directory."""
    # pandera (and pandas) inside runs only: the code server never loads them (test_definitions.py)
    from mx_pipeline.warehouse.rows import to_frame
    from mx_pipeline.warehouse.schemas import BY_TABLE
    from mx_pipeline.warehouse.validate import split_valid

    taken = [(landing, queued) for landing in landings if (queued := landing.take_queued())]
    if not taken:
        return
    rows = [row for _, queued in taken for row in queued.rows]
    read_of = [i for i, (_, queued) in enumerate(taken) for _ in queued.rows]  # the read of each row, by its label
    offsets = [landing.ordinal_offset for landing, _ in taken]  # a read's rows follow its earlier parts
    valid, refused = split_valid(BY_TABLE[spec.name], to_frame(spec, rows)) if rows else (None, [])
    rejects = [(i, payload, reason) for i, (_, queued) in enumerate(taken) for payload, reason in queued.rejects]
    rejects += [(read_of[r.label], r.row["payload"], r.reason) for r in refused]
    with_valid = valid is not None and not valid.empty
    if with_valid:
        valid = valid.assign(
            _ordinal=[offsets[read_of[label]] + label + 1 for label in valid.index],
            _member=[taken[read_of[label]][0].member_guid for label in valid.index],
            _owner=[taken[read_of[label]][0].owner for label in valid.index],
        )
    params = {
        "payloads": [payload for _, payload, _ in rejects],
        "reasons": [reason for _, _, reason in rejects],
        "run_id": taken[0][0].run_id,
        "fetched": [taken[i][1].fetched_at or dt.datetime.now(dt.UTC) for i, _, _ in rejects],
        "ordinals": [offsets[i] + len(rows) + n + 1 for n, (i, _, _) in enumerate(rejects)],
        "members": [taken[i][0].member_guid for i, _, _ in rejects],
        "owners": [taken[i][0].owner for i, _, _ in rejects],
    }
    select = _parts_select(spec, with_valid=with_valid, with_rejects=bool(rejects))
    parts = write_partitioned(taken[0][0].area, [landing for landing, _ in taken], select, params, name="part",
                              frame=valid if with_valid else None)  # fmt: skip
    refused_of = [len(queued.rejects) for _, queued in taken]
    for r in refused:
        refused_of[read_of[r.label]] += 1
    for i, (landing, queued) in enumerate(taken):
        landing.landed(parts[landing.directory], rows=len(queued.rows) + len(queued.rejects), refused=refused_of[i])


def _landed_type(column: str) -> str:
    """How a column is landed: as ``to_frame`` types it (money and MX dates stay exact text until the merge)."""
    if column.endswith("_at"):
        return "timestamptz"
    return "boolean" if column.startswith("is_") else "varchar"


def _parts_select(spec: TableSpec, *, with_valid: bool, with_rejects: bool) -> str:
    """The reads' parts: their valid rows and their refused ones (payload and reason only), typed alike."""
    typed = ", ".join(f"cast({c} as {_landed_type(c)}) as {c}" for c in spec.columns)
    sources = []
    if with_valid:
        columns = ", ".join(spec.columns)
        sources.append(f"select {columns}, _ordinal, null::varchar as reason, _member, _owner from frame")
    if with_rejects:
        blanks = ", ".join(f"null as {c}" for c in spec.columns if c not in ("payload", *LOAD_COLUMNS))
        sources.append(
            f"select {blanks}, unnest($payloads::varchar[]) as payload, $run_id as run_id,"
            " unnest($fetched::timestamptz[]) as fetched_at, unnest($ordinals::bigint[]) as _ordinal,"
            " unnest($reasons::varchar[]) as reason, unnest($members::varchar[]) as _member,"
            " unnest($owners::varchar[]) as _owner"
        )
    return f"""
        select {typed}, cast(_ordinal as bigint) as _ordinal, reason, cast(_member as varchar) as _member, _owner
        from ({" union all by name ".join(sources)})
        order by _owner, _ordinal
    """
