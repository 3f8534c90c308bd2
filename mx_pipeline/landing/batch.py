"""Many members' small reads of one table, landed together.

A member's status is one record and its account list a few, but landing one alone costs about 20 ms of CPU (a
frame, a pandera judgement, two Parquet writes): more than the reads themselves once several runs share a machine.
A batch lands up to ``READS`` reads (or ``BATCH_ROWS`` rows) at once, with one judgement and two partitioned
writes, into the same directories, each read's manifest written after its files, so the loader sees nothing new.

A read joins its batch when it finishes; the batch is landed when it is full, and when the step's reads end
(``with`` exits, an error included: what arrived is true). A run killed before that loses the batch's reads, as it
loses a read in flight: nothing of them is loaded and the next sync reads them again.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mx_pipeline.landing.area import LandingArea
from mx_pipeline.landing.read import write_partitioned
from mx_pipeline.landing.records import BATCH_ROWS, RecordLanding, land_parts
from mx_pipeline.warehouse.rows import Load, Row
from mx_pipeline.warehouse.tables import TableSpec

# At most DuckDB's partitioned_write_max_open_files (100) directories a write: each read's part is then one file.
READS = 100


@dataclass(frozen=True)
class _Finished:
    """A read that finished into the batch: its landing, the guids it listed, its manifest's own fields."""

    landing: RecordLanding
    listed_guids: list[str]
    fields: dict


class LandingBatch:
    """Lands the finished reads of ``table`` of one run together (see the module's docstring)."""

    def __init__(self, area: LandingArea, table: str, spec: TableSpec, to_row: Callable[[Any, Load], Row], *,
                 run_id: str, reads: int = READS) -> None:  # fmt: skip
        self.area, self.table, self.spec, self.to_row = area, table, spec, to_row
        self.run_id, self.reads = run_id, reads
        self._finished: list[_Finished] = []
        self._rows = 0
        self._lock = threading.Lock()

    def __enter__(self) -> "LandingBatch":
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()

    def landing(self, *, member_guid: str | None, user_guid: str) -> RecordLanding:
        """A read's landing that finishes into this batch (``member_guid`` None: the user's own list)."""
        return RecordLanding(self.area, self.table, self.spec, self.to_row, run_id=self.run_id,
                             member_guid=member_guid, user_guid=user_guid, batch=self)  # fmt: skip

    def take(self, landing: RecordLanding, listed_guids: list[str], **fields) -> None:
        """``landing``'s read finished as ``fields`` say: it lands with the batch."""
        with self._lock:
            self._finished.append(_Finished(landing, listed_guids, fields))
            self._rows += landing.queued_rows
            full = len(self._finished) >= self.reads or self._rows >= BATCH_ROWS
            finished = self._take_all() if full else []
        self._land(finished)

    def flush(self) -> None:
        """Land every read finished so far."""
        with self._lock:
            finished = self._take_all()
        self._land(finished)

    def _take_all(self) -> list[_Finished]:
        finished, self._finished, self._rows = self._finished, [], 0
        return finished

    def _land(self, finished: list[_Finished]) -> None:
        if not finished:
            return
        land_parts(self.spec, [read.landing for read in finished])
        listed = self._land_listed([read for read in finished if read.listed_guids])
        for read in finished:
            read.landing.write_manifest(listed=listed.get(read.landing.directory), **read.fields)

    def _land_listed(self, reads: list[_Finished]) -> dict[str, str]:
        """Each read's listed guids in its directory, in one partitioned write: directory -> file name."""
        if not reads:
            return {}
        params = {
            "guids": [guid for read in reads for guid in read.listed_guids],
            "owners": [read.landing.owner for read in reads for _ in read.listed_guids],
        }
        select = "select unnest($guids::varchar[]) as guid, unnest($owners::varchar[]) as _owner"
        return write_partitioned(self.area, [read.landing for read in reads], select, params, name="listed")
