"""MX refusing our credentials, as Dagster recorded it: a run that failed with ``AuthError``.

The credentials come from the environment the code location started with, so once MX refused a run, every run
launched before a restart would be refused too. The freshness sensor asks :func:`standing_refusal` and launches
nothing meanwhile; after a restart (fixed credentials, perhaps) or an hour (a refusal that was MX's passing
problem) it tries again, one run at a time.
"""

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from mx_pipeline.mx import AuthError

LOADED_AT = dt.datetime.now(dt.UTC)  # when this process read the credentials it runs with
PAUSE = dt.timedelta(hours=1)


def refusal_in(events: Iterable[dg.DagsterEvent]) -> str | None:
    """The message of the ``AuthError`` that failed a step among ``events`` (it names the variables to check)."""
    for event in events:
        error = event.step_failure_data.error if event.is_step_failure else None
        while error is not None:
            if error.cls_name == AuthError.__name__:
                return error.message.split(": ", 1)[-1].strip()
            error = error.cause
    return None


def standing_refusal(instance: dg.DagsterInstance) -> str | None:
    """Why a run launched now would be refused: the latest finished run, since this process loaded and within
    the pause, failed because MX refused our credentials. ``None``: nothing says so."""
    since = max(LOADED_AT, dt.datetime.now(dt.UTC) - PAUSE)  # run records carry wall-clock times
    finished = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=finished, created_after=since), limit=1)
    if not runs or runs[0].status != dg.DagsterRunStatus.FAILURE:
        return None
    failures = instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    refusal = refusal_in(entry.dagster_event for entry in failures if entry.dagster_event)
    return f"run {runs[0].run_id[:8]} failed: {refusal}" if refusal else None
