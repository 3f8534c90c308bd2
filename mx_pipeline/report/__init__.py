"""``mx-pipeline report``: the analysts' marts as one small HTML page of charts, readable offline.

Reads ``analytics.duckdb`` (read-only: ``marts.monthly_spend_by_category`` and ``marts.member_health``) and
writes one self-contained file: inline CSS and SVG drawn here, no script, nothing fetched, so it opens from a
mail attachment or a laptop without network.
"""

import datetime as dt
import os
from pathlib import Path

from mx_pipeline.report.marts import Marts, read_marts
from mx_pipeline.report.page import render

__all__ = ["Marts", "read_marts", "render", "write_report"]


def write_report(analytics: Path, output: Path, *, now: dt.datetime | None = None) -> Marts:
    """Write the report of ``analytics`` to ``output`` (replaced whole, never half-written); returns what it read."""
    marts = read_marts(analytics)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    partial.write_text(render(marts, now=now or dt.datetime.now(dt.UTC)), encoding="utf-8")
    partial.replace(output)
    return marts
