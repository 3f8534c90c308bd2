"""A check with nothing to check says so instead of passing green.

A check over 0 rows proves nothing: it fails with WARN severity (the UI shows a warning, not a pass; WARN never
blocks downstream assets nor fails the run) and its description says it checked 0 rows. A real failure stays
what it is (an ERROR fails, and blocks where the check is blocking), whatever the row count.
"""

import dagster as dg


def unless_nothing_checked(result: dg.AssetCheckResult, rows: int, what: str) -> dg.AssetCheckResult:
    """``result``, or, when it passed on ``rows == 0``, a WARN saying it checked 0 rows (``what``: of what)."""
    if rows or not result.passed:
        return result
    return dg.AssetCheckResult(
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"checked 0 rows: {what} is empty, so there was nothing to check",
        metadata={**result.metadata, "rows_checked": 0},
    )
