"""The production instance, deployed on a real PostgreSQL (Debian's, started by the fixture): Dagster's runs, event
logs and pool slots live in Postgres, where every machine of a deployment reaches them, and so does the MX budget
the run workers share; its run queue holds a second run of a one-at-a-time job until the first has finished; the
data that arrives is right.

A worker killed while it holds the warehouse slot is freed and retried on this instance too:
``test_dead_run.py``'s ``[production]`` case.
"""

import os
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.storage.dagster_run import DagsterRun

from mx_pipeline import instance
from mx_pipeline.defs import pools
from mx_pipeline.instance import JOB_TAG
from mx_pipeline.settings import ProductionInstanceSettings
from mx_pipeline_tests.resilience.deployment import DEADLINE_SECONDS, POOL, deployed
from mx_pipeline_tests.resilience.truth import compare

USERS = {"production-1": "password", "production-2": "password"}


def test_runs_their_events_and_the_warehouse_slot_are_kept_in_postgres_and_the_data_is_right(tmp_path, postgres):
    with deployed(tmp_path, USERS, postgres=postgres) as deployment:
        run_id = deployment.submit_ingest()
        deployment.wait_for(lambda: deployment.run(run_id).is_finished, "the ingest run finishes")
        database = os.environ["DAGSTER_PG_DB"]  # the deployment's own

        assert deployment.run(run_id).status == dg.DagsterRunStatus.SUCCESS
        assert postgres.query(database, "select status from runs where run_id = %s", run_id) == [("SUCCESS",)]
        [(events,)] = postgres.query(database, "select count(*) from event_logs where run_id = %s", run_id)
        assert events > 50  # every step's start, output, materializations and success
        assert postgres.query(database, 'select concurrency_key, "limit" from concurrency_limits') == [(POOL, 1)]
        assert postgres.query(database, "select run_id from concurrency_slots") == [(None,)]  # given back
        assert not list((tmp_path / "dagster_home").rglob("*.db"))  # nothing of Dagster's in SQLite
        budget = postgres.query(database, "select count(*) from pg_tables where tablename = 'ratelimit___mx_requests'")
        assert budget == [(1,)]  # the run worker spent the budget every worker shares
        differences = compare(deployment.warehouse_path, deployment.sandbox.world)
        assert differences.none, str(differences)


def test_a_second_ingest_waits_in_the_queue_until_the_first_has_finished(tmp_path, postgres):
    with deployed(tmp_path, USERS, postgres=postgres) as deployment:
        with deployment.ingest_inside_its_first_load() as first:
            second = deployment.submit_ingest()
            for _ in range(3):
                deployment.tick()  # the queue looks at it: at most one ingest run at a time
            assert deployment.run(second).status == dg.DagsterRunStatus.QUEUED
            assert deployment.run(second).tags[JOB_TAG] == "ingest"
            held = postgres.query(os.environ["DAGSTER_PG_DB"], "select run_id from concurrency_slots")
            assert held == [(first,)]  # the warehouse slot, held in Postgres: any machine's run waits for it

        # Two whole ingest runs, one after the other, models included: a deadline for each (a loaded CI machine took
        # more than 120 s for both).
        deployment.wait_for(deployment.all_runs_finished, "both runs finish", timeout=2 * DEADLINE_SECONDS)
        runs = {run_id: deployment.instance.get_run_record_by_id(run_id) for run_id in (first, second)}

        assert [deployment.run(r).status for r in (first, second)] == [dg.DagsterRunStatus.SUCCESS] * 2
        assert runs[second].start_time >= runs[first].end_time
        differences = compare(deployment.warehouse_path, deployment.sandbox.world)
        assert differences.none, str(differences)


def _production_instance(tmp_path, postgres, monkeypatch, default_limit: int = 1) -> Path:
    for name, value in postgres.environment(postgres.create_database()).items():
        monkeypatch.setenv(name, value)
    return _with_default_limit(tmp_path / "home", default_limit)


def _with_default_limit(home: Path, default_limit: int) -> Path:
    config = instance.production_config(ProductionInstanceSettings.from_env())
    config["concurrency"]["pools"]["default_limit"] = default_limit
    instance.write_instance(home, instance.rendered(config))
    return home


def _claims_the_warehouse_pool(dagster: dg.DagsterInstance) -> bool:
    """A run's step claiming the warehouse pool, as Dagster's executor does."""
    with InstanceConcurrencyContext(dagster, DagsterRun(job_name="build_models", run_id="a-run")) as claims:
        return claims.claim(POOL, "sql_models")


def test_a_run_worker_that_loses_the_race_to_set_the_warehouse_pool_finds_it_set(tmp_path, postgres, monkeypatch):
    """Four workers starting at once: each sets the pool's limit as its run starts; the one that looked before
    another's insert and inserted after it goes on. Dagster's own making of the row, at a step's first claim,
    failed its run on Postgres (InFailedSqlTransaction)."""
    with dg.DagsterInstance.from_config(str(_production_instance(tmp_path, postgres, monkeypatch))) as dagster:
        storage = dagster.event_log_storage
        storage.initialize_concurrency_limit_to_default(POOL)  # as another worker's step claim made it
        with pytest.raises(sqlalchemy.exc.DBAPIError):  # Dagster's, as this worker's step claim would have
            storage.initialize_concurrency_limit_to_default(POOL)
        storage.set_concurrency_slots(POOL, 1)  # another worker's ensure_pool, between this one's look and insert
        looks = iter([False])
        monkeypatch.setattr(pools, "_is_set", lambda storage, pool, limit: next(looks, True))

        pools.ensure_pool(dagster, POOL)

        assert [(p.name, p.limit, p.from_default) for p in storage.get_pool_limits()] == [(POOL, 1, False)]
        assert _claims_the_warehouse_pool(dagster)


def test_after_the_default_pool_limit_changes_a_run_still_claims_the_warehouse_pool_one_writer_at_a_time(
    tmp_path, postgres, monkeypatch
):
    """Dagster remakes a default-made row whose limit is no longer the default at a step's claim, which fails on
    Postgres every time. The warehouse pool's limit is set, and is 1 whatever the default: one DuckDB writer."""
    home = _production_instance(tmp_path, postgres, monkeypatch)
    with dg.DagsterInstance.from_config(str(home)) as dagster:
        dagster.event_log_storage.initialize_concurrency_limit_to_default(POOL)  # made at a claim, from the default
    with dg.DagsterInstance.from_config(str(_with_default_limit(home, 2))) as dagster:  # the operator's edit
        pools.ensure_pool(dagster, POOL)  # the next run starts
        assert _claims_the_warehouse_pool(dagster)
        limits = [(p.name, p.limit) for p in dagster.event_log_storage.get_pool_limits()]
    assert limits == [(POOL, 1)]
