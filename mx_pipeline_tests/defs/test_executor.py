"""Every run executes in its run worker's process: the UI's "Materialize all" (the implicit asset job), the
``ingest`` job and the sensors' jobs. A process per step cost a code load per step for no parallelism (the
warehouse steps share one pool slot); ``benchmarks/bench_materialize_all.py`` prints the difference."""

import dagster as dg

from mx_pipeline_tests.defs.conftest import LOCATION


def test_materialize_all_and_every_job_run_in_process():
    materialize_all = LOCATION.resolve_implicit_global_asset_job_def()
    jobs = {job.name: LOCATION.resolve_job_def(job.name) for job in LOCATION.jobs}
    assert set(jobs) == {"ingest", "sync_members", "refresh_members", "build_models"}
    executors = {name: job.executor_def for name, job in {"Materialize all": materialize_all, **jobs}.items()}
    assert executors == dict.fromkeys(executors, dg.in_process_executor)
