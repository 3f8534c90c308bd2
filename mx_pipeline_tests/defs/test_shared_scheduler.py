"""With a shared Postgres, the refresh scheduler's claims and attempts live there: every worker on every machine
reaches them, and a refresh run claims, records and releases without the warehouse's ``ops`` tables."""

import dagster as dg
import pytest

from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource

from .test_refresh import EAGER, attempts, run_refreshes, tick


@pytest.fixture
def shared(pipeline, postgres):
    """The pipeline's warehouse resource with a shared Postgres, and a way to read that database."""
    database = postgres.create_database()
    warehouse = WarehouseResource(path=str(pipeline.warehouse.path), shared_state_url=postgres.url(database))
    pipeline.materialize(warehouse=warehouse)
    return warehouse, lambda sql: postgres.query(database, sql)


def test_refresh_runs_claim_record_and_release_in_the_shared_postgres(pipeline, shared):
    warehouse, shared_query = shared
    ok = sorted([pipeline.member_of["user-ok-1"], pipeline.member_of["user-ok-2"]])

    result = tick(pipeline, warehouse=warehouse)
    [run] = result.run_requests
    assert shared_query("select member_guid, trigger, run_key from refresh_claims order by 1") == [
        (m, "sla", run.run_key) for m in ok
    ]
    assert pipeline.query("select count(*) from ops.refresh_claims") == [(0,)]  # nothing claimed in the warehouse
    assert isinstance(tick(pipeline, warehouse=warehouse), dg.SkipReason)  # another worker's tick: all claimed

    run_refreshes(pipeline, result, warehouse=warehouse)
    assert shared_query("select member_guid, trigger, outcome from refresh_attempts order by 1") == [
        (m, "sla", "refreshed") for m in ok
    ]
    assert shared_query("select count(*) from refresh_claims") == [(0,)]
    # The run's status read copied them to the warehouse, where analysts and member_health read them.
    assert sorted(attempts(pipeline)) == [(m, "sla", "refreshed") for m in ok]


def test_the_pacing_rules_count_the_attempts_every_worker_recorded(pipeline, shared):
    warehouse, shared_query = shared
    run_refreshes(pipeline, tick(pipeline, warehouse=warehouse), warehouse=warehouse)
    with pipeline.warehouse.connect() as con:
        con.execute("delete from ops.refresh_attempts")  # the warehouse's copy is only a copy
    paced = RefreshPolicyResource(sla_hours=1e-6)  # stale again at once, but within MX's 3-hour interval
    assert isinstance(tick(pipeline, paced, warehouse=warehouse), dg.SkipReason)
    assert len(tick(pipeline, EAGER, warehouse=warehouse).run_requests) == 1  # no interval: due again

    for _ in range(2):  # each run's status read copies what the warehouse lacks, and nothing twice
        pipeline.materialize(warehouse=warehouse)
    assert len(attempts(pipeline)) == len(shared_query("select * from refresh_attempts")) == 2
