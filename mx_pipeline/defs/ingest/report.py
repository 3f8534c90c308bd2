"""What an ingest step reports: the metadata Dagster shows and plots per run, and the reads that failed."""

import dagster as dg

from mx_pipeline.defs.markdown import markdown_table
from mx_pipeline.warehouse import ApiCallLog, Warehouse
from mx_pipeline.warehouse.landed import LoadReport
from mx_pipeline.warehouse.tables import TableSpec


def failure_reasons(context: dg.OpExecutionContext, failed: dict[str, str] | dict[str, tuple[str, str]]) -> dict:
    """Log each failed read; returns guid -> reason for the metadata."""
    reasons = {guid: failure[1] if isinstance(failure, tuple) else failure for guid, failure in failed.items()}
    for guid, reason in reasons.items():
        context.log.error(f"{guid} could not be read; the run will fail, and it is read again later: {reason}")
    return reasons


def step_metadata(
    wh: Warehouse,
    spec: TableSpec,
    api_log: ApiCallLog,
    loaded: LoadReport,
    read_failures: int = 0,
    **extra,
) -> dict:
    """The step's metadata, its API calls recorded; the plain numbers (README: "What Dagster plots") are what
    Dagster plots per run. ``loaded_alongside``: the reads of other tables its load merged, landed by the runs
    queued behind it or left by a killed one."""
    with wh.connect() as con:
        api_log.flush(con)
        (rows,) = con.execute(f"select count(*) from {spec.name}").fetchone()
        (quarantined_total,) = con.execute(
            "select count(*) from ops.quarantine where table_name = ?", [spec.name]
        ).fetchone()
        latest = con.execute(f"select * exclude (payload) from {spec.name} order by fetched_at desc limit 5")
        preview = markdown_table(latest)
    return {
        "dagster/row_count": int(rows),
        "inserted": loaded.counts.inserted,
        "updated": loaded.counts.updated,
        "unchanged": loaded.counts.unchanged,
        "quarantined": loaded.quarantined,
        "quarantined_total": int(quarantined_total),
        "read_failures": read_failures,
        "api_calls": api_log.total,
        "api_429s": api_log.rate_limited,
        "preview": dg.MetadataValue.md(preview),
        "loaded_alongside": dg.MetadataValue.json(loaded.alongside),
        **extra,
    }
