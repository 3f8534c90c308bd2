"""The code location ``workspace.yaml`` loads: every module under ``mx_pipeline/defs/``, and its executor."""

from pathlib import Path

import dagster as dg

from mx_pipeline import sandbox_session, settings

settings.keep_files_private()  # the code server and every run worker load this module first

# Every run executes its steps in its run worker's process, one after another: "Materialize all", the
# ``ingest`` job and the sensors' jobs alike. Most steps take the one DuckDB file in turn, so a process per step
# bought no parallelism, only a code load per step: 26 steps took minutes, in process they take seconds
# (mx_pipeline_tests/benchmarks/bench_materialize_all.py); runs, not steps, read side by side. A killed worker is
# the whole run.
EXECUTOR = dg.in_process_executor


def defs_folder() -> dg.Definitions:
    """Every module under ``mx_pipeline/defs/``: the assets, checks, jobs, sensors and resources."""
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")


@dg.definitions
def defs() -> dg.Definitions:
    settings.check_environment()  # a wrong variable: the load fails with one line naming it, before any module
    sandbox_session.refuse_on_mx()  # MX's data must never land where a sandbox session will start afresh
    return dg.Definitions.merge(defs_folder(), dg.Definitions(executor=EXECUTOR))
