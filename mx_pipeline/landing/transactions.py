"""Land one member's pages of MX transactions: every few pages, one Parquet part of typed, judged rows.

A batch of pages is parsed, typed and judged by DuckDB a page a statement (``warehouse/page_sql.py``) on a
connection of its own, in memory: the warehouse file is never opened. The reasons of refused records are spelt out
by a second statement, only for a batch that has any. A refused record stays in the part with
its ``reason`` (the loader quarantines it), so nothing MX sent is lost between here and the warehouse. Only the
batch's page texts are held in memory, and every batch of the process is parsed on one thread: a parse's memory
grows with its batch, and DuckDB's allocator keeps what each calling thread used.
Measured on 250,000 transactions read 8 members at once (peak RSS of the whole run, seconds): 2 parses of 5,000
records 626 MiB, 25.5 s; 1 of 5,000 492 MiB, 26.3 s; 1 of 2,000 400 MiB, 30.1 s; 1 of 1,000 346 MiB, 38.6 s.
On 300,000 read 8 at once, extraction alone: parses of 2,000 on any 2 reading threads at a time 480-484 MiB;
on one parsing thread 433 MiB, in the same time. On 975,682 (40 members), a page a statement and the reasons
apart: the read phase's peak 388-399 MiB instead of 447-456, the parse 28 ms a page instead of 43.
"""

import datetime as dt

import duckdb

from mx_pipeline.landing.area import DateRange, LandingArea, Manifest
from mx_pipeline.landing.parser import on_parser
from mx_pipeline.landing.read import ReadLanding
from mx_pipeline.mx.pagination import Page
from mx_pipeline.warehouse.page_sql import explain_refusals_sql, staging_sql
from mx_pipeline.warehouse.sql_literals import sql_literal

TABLE = "transactions"
BATCH_ROWS = 2000  # two full MX pages a part
_STAGED = "staged"


class TransactionLanding(ReadLanding):
    """Collects one member's pages and lands them every ``batch_size`` records; :meth:`finish` writes the manifest.

    ``early_before``: rows dated before it are remembered as (guid, date), so the read can ask the warehouse
    which of them are new to it (late arrivals) without reading its own parts back.
    """

    def __init__(
        self,
        area: LandingArea,
        *,
        run_id: str,
        member_guid: str,
        user_guid: str,
        early_before: dt.date | None = None,
        batch_size: int = BATCH_ROWS,
    ) -> None:
        directory = area.member_directory(TABLE, run_id, member_guid)
        super().__init__(area, directory, run_id=run_id, member_guid=member_guid, user_guid=user_guid)
        self.early_before = early_before
        self.batch_size = batch_size
        self.latest_updated_at: dt.datetime | None = None  # the greatest updated_at of the records accepted
        self.early: list[tuple[str, dt.date]] = []
        self._pages: list[str] = []
        self._queued = 0

    def add(self, page: Page) -> None:
        """Queue one page; lands the batch when it is full."""
        if page.items:
            self._pages.append(page.json())
            self._queued += len(page.items)
        if self._queued >= self.batch_size:
            self.flush()

    def reject_page(self, reason: str) -> None:
        """A whole response that could not be read: nothing of it can be kept but the reason."""
        self._page_rejects.append(reason)

    def flush(self) -> None:
        pages, self._pages, self._queued = self._pages, [], 0
        if pages:
            self._land(pages)

    def finish(
        self,
        *,
        outcome: str,
        reason: str | None = None,
        watermark: dt.datetime | None = None,
        aggregated_at: dt.datetime | None = None,
        listed_in_full: list[DateRange] | None = None,
        listed_guids: set[str] | None = None,
    ) -> Manifest:
        """Land what is queued and the guids listed, then the manifest: from here the loader may take it."""
        return self._finish(
            outcome=outcome,
            reason=reason,
            listed_guids=listed_guids,
            watermark=watermark,
            aggregated_at=aggregated_at,
            listed_in_full=tuple(listed_in_full or ()),
        )

    def _land(self, pages: list[str]) -> None:
        name = f"part-{len(self.parts) + 1:05d}.parquet"
        path, offset = self.area.duckdb_path(f"{self.directory}/{name}"), self.ordinal_offset
        fetched = {"run_id": self.run_id, "fetched_at": dt.datetime.now(dt.UTC)}

        def parse(con: duckdb.DuckDBPyConnection) -> tuple[int, int, dt.datetime | None, list[tuple[str, dt.date]]]:
            con.execute(f"drop table if exists {_STAGED}")
            for page_no, page in enumerate(pages, start=1):
                con.execute(staging_sql(_STAGED, append=page_no > 1), {"page": page, "page_no": page_no, **fetched})
            ((refused,),) = con.execute(f"select count(reason) from {_STAGED}").fetchall()
            if refused:
                con.execute(explain_refusals_sql(_STAGED))
            con.execute(
                f"""copy (select * exclude (_exact) replace (_ordinal + $offset as _ordinal), $member as _member
                    from {_STAGED})
                    to {sql_literal(path)} (format parquet, compression zstd)""",
                {"offset": offset, "member": self.member_guid},
            )
            counts = con.execute(
                f"select count(*), count(reason), max(updated_at) filter (where reason is null) from {_STAGED}"
            ).fetchone()
            early = []
            if self.early_before is not None:
                early = con.execute(
                    f"select guid, date from {_STAGED} where reason is null and date < $before",
                    {"before": self.early_before},
                ).fetchall()
            con.execute(f"drop table {_STAGED}")
            return (*counts, early)

        rows, refused, latest, early = on_parser(self.area, parse)
        self.early += early
        self._parts.append(name)
        self.rows += rows
        self.refused += refused
        if latest and (self.latest_updated_at is None or latest > self.latest_updated_at):
            self.latest_updated_at = latest
