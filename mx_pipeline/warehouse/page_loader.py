"""Stream pages of MX transactions into ``raw.mx_transactions`` in bounded batches, each batch in one pass.

A batch (a few pages) is parsed, typed and validated by DuckDB in one statement (:mod:`page_sql`); its refused
records go to ``ops.quarantine`` with their reasons in one statement and the rest are upserted in one
transaction, so a batch costs a fixed number of statements whatever its length. Only the batch's page texts are
held in memory, and each batch is written on its own short-lived connection (or the caller's): no connection
stays open while MX is asked. A loader holds only its own state: one per thread.
"""

import datetime as dt

import duckdb

from mx_pipeline.mx.pagination import Page
from mx_pipeline.warehouse.api_calls import ApiCallLog
from mx_pipeline.warehouse.connection import Warehouse
from mx_pipeline.warehouse.page_sql import staging_sql
from mx_pipeline.warehouse.quarantine import QuarantinedRecord, write_quarantine
from mx_pipeline.warehouse.tables import TRANSACTIONS
from mx_pipeline.warehouse.upsert import UpsertCounts, upsert_from

STAGED = "staged_transactions"
BATCH_ROWS = 5000  # five full MX pages: every write opens the file, so fewer, larger writes


class TransactionPageLoader:
    """Collects pages of one member's transactions and writes them every ``batch_size`` records (and on flush)."""

    def __init__(
        self,
        warehouse: Warehouse,
        *,
        member_guid: str,
        run_id: str,
        api_log: ApiCallLog | None = None,
        batch_size: int = BATCH_ROWS,
    ) -> None:
        self.warehouse = warehouse
        self.member_guid = member_guid
        self.run_id = run_id
        self.api_log = api_log
        self.batch_size = batch_size
        self.counts = UpsertCounts()
        self.quarantined = 0
        self.latest_updated_at: dt.datetime | None = None  # the greatest updated_at of the records accepted
        self._pages: list[str] = []
        self._queued = 0
        self._rejects: list[QuarantinedRecord] = []

    def add(self, page: Page) -> None:
        """Queue one page; writes the batch when it is full."""
        if page.items:
            self._pages.append(page.json())
            self._queued += len(page.items)
        if self._queued >= self.batch_size:
            self.flush()

    def reject_page(self, reason: str) -> None:
        """Quarantine a whole response that could not be read (nothing of it can be kept but the reason)."""
        self._rejects.append(QuarantinedRecord(TRANSACTIONS.name, reason, member_guid=self.member_guid))

    def flush(self, con: duckdb.DuckDBPyConnection | None = None) -> UpsertCounts:
        """Write what is queued, on ``con`` when given, else on a connection of its own; this batch's counts."""
        pages, rejects, self._pages, self._rejects, self._queued = self._pages, self._rejects, [], [], 0
        if not pages and not rejects and not (self.api_log and self.api_log.pending):
            return UpsertCounts()
        if con is None:
            with self.warehouse.connect() as own:
                return self._write(own, pages, rejects)
        return self._write(con, pages, rejects)

    def _write(self, con: duckdb.DuckDBPyConnection, pages: list[str], rejects: list[QuarantinedRecord]):
        now = dt.datetime.now(dt.UTC)
        counts = UpsertCounts()
        if pages:
            con.execute(staging_sql(STAGED), {"pages": pages, "run_id": self.run_id, "fetched_at": now})
            try:
                self.quarantined += self._quarantine_refused(con, now)
                counts = upsert_from(con, TRANSACTIONS, f"(select * from {STAGED} where reason is null)")
                ((latest,),) = con.execute(f"select max(updated_at) from {STAGED} where reason is null").fetchall()
            finally:
                con.execute(f"drop table {STAGED}")
            if latest and (self.latest_updated_at is None or latest > self.latest_updated_at):
                self.latest_updated_at = latest
        self.quarantined += write_quarantine(con, rejects, run_id=self.run_id, now=now)
        if self.api_log:
            self.api_log.flush(con)
        self.counts += counts
        return counts

    def _quarantine_refused(self, con: duckdb.DuckDBPyConnection, now: dt.datetime) -> int:
        refused = con.execute(
            f"""
            insert into ops.quarantine
                (quarantined_at, run_id, table_name, record_guid, member_guid, reason, payload)
            select $now, $run_id, $table, guid_if_text, $member_guid, reason, payload
            from (
                select reason, payload,
                    case when json_type(payload, '$.guid') = 'VARCHAR' then payload ->> 'guid' end as guid_if_text
                from {STAGED} where reason is not null
            )
            """,
            {"now": now, "run_id": self.run_id, "table": TRANSACTIONS.name, "member_guid": self.member_guid},
        ).fetchone()
        return refused[0] if refused else 0
