"""The resources: `mx` (sandbox defaults without credentials, `EnvVar`s with them) and the notifier's lease."""

import datetime as dt
import sqlite3

import dagster as dg
import pytest
import yaml

from mx_pipeline import settings
from mx_pipeline.defs.ingest.group import POOL
from mx_pipeline.defs.resources import NotifierResource, WarehouseResource, mx_resource
from mx_pipeline.mx.shared_budget import SharedBudget


def test_without_credentials_mx_points_at_the_built_in_sandbox(monkeypatch):
    for name in ("MX_CLIENT_ID", "MX_API_KEY", "MX_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    mx = mx_resource()
    assert (mx.client_id, mx.api_key) == (settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY)
    assert mx.base_url.startswith("http://127.0.0.1")


def test_with_credentials_only_their_variable_names_enter_the_config(monkeypatch):
    monkeypatch.setenv("MX_CLIENT_ID", "client-123")
    monkeypatch.setenv("MX_API_KEY", "key-that-must-not-leak")
    mx = mx_resource()
    assert mx.client_id == dg.EnvVar("MX_CLIENT_ID") and mx.api_key == dg.EnvVar("MX_API_KEY")
    assert "key-that-must-not-leak" not in repr(mx)


def test_mx_concurrency_sets_the_members_read_at_once_and_the_connections_kept_for_them(monkeypatch):
    monkeypatch.setenv("MX_CONCURRENCY", "3")
    mx = mx_resource()
    assert mx.concurrency == 3
    with mx.client() as client:
        adapter = client.transport._session.get_adapter(mx.base_url)
        assert adapter.poolmanager.connection_pool_kw["maxsize"] == 3
    monkeypatch.delenv("MX_CONCURRENCY")
    assert mx_resource().concurrency == settings.DEFAULT_CONCURRENCY == 8


def test_mx_requests_per_second_sets_the_budget_every_request_spends(monkeypatch):
    monkeypatch.setenv("MX_REQUESTS_PER_SECOND", "50")
    mx = mx_resource()
    assert mx.requests_per_second == 50
    with mx.client() as client:
        assert client.transport.limiter.limits.requests_per_second == 50
    monkeypatch.delenv("MX_REQUESTS_PER_SECOND")
    assert mx_resource().requests_per_second == settings.DEFAULT_REQUESTS_PER_SECOND == 20


def test_a_notification_lease_outlives_the_longest_wait_for_the_warehouse_a_run_is_configured_with():
    # Recording a delivery may wait that long for a busy file; a lease running out first lets another run resend.
    notifier = NotifierResource(url="http://127.0.0.1:9/notifications", time_budget_seconds=120)
    patient = WarehouseResource(wait_seconds=3600)
    lease = notifier.lease(patient.wait_seconds)
    assert lease > dt.timedelta(seconds=120 + 3600)
    assert lease - notifier.lease(WarehouseResource().wait_seconds) == dt.timedelta(seconds=3600 - 600)


def test_with_a_rate_budget_url_every_client_of_a_process_spends_the_one_budget_all_processes_share(
    monkeypatch, postgres
):
    url = postgres.url(postgres.create_database())
    monkeypatch.setenv("MX_PIPELINE_RATE_BUDGET_URL", url)

    mx = mx_resource()
    assert mx.rate_budget_url == dg.EnvVar("MX_PIPELINE_RATE_BUDGET_URL")  # the URL holds a password
    with dg.build_resources({"mx": mx}) as resources, resources.mx.client() as first, resources.mx.client() as second:
        budgets = {first.transport.limiter._shared, second.transport.limiter._shared}
    assert len(budgets) == 1 and isinstance(budgets.pop(), SharedBudget)
    tables = postgres.query(url.rsplit("/", 1)[1], "select tablename from pg_tables where tablename like 'ratelimit%'")
    assert tables == [(f"ratelimit___{SharedBudget.TABLE}",)]


def test_a_rate_budget_url_that_is_not_postgres_is_refused_without_being_shown(monkeypatch):
    monkeypatch.setenv("MX_PIPELINE_RATE_BUDGET_URL", "redis://:hunter2-secret@cache:6379/0")
    with pytest.raises(settings.ConfigError, match="MX_PIPELINE_RATE_BUDGET_URL is not a Postgres URL") as refused:
        mx_resource()
    assert "hunter2" not in str(refused.value)


def test_without_a_rate_budget_url_each_process_paces_mx_by_itself(monkeypatch):
    monkeypatch.delenv("MX_PIPELINE_RATE_BUDGET_URL", raising=False)
    with mx_resource().client() as client:
        assert client.transport.limiter._shared is None


def _local_instance(home, **pools) -> dg.DagsterInstance:
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump({"concurrency": {"pools": {"default_limit": 1, **pools}}}))
    return dg.DagsterInstance.from_config(str(home))


@dg.asset(pool=POOL)
def writes_the_warehouse(warehouse: WarehouseResource) -> None:
    pass


def _materialized(instance, tmp_path) -> bool:
    resources = {"warehouse": WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))}
    result = dg.materialize([writes_the_warehouse], instance=instance, resources=resources, raise_on_error=False)
    return result.success


def test_a_run_sets_the_warehouse_pool_to_one_writer_as_it_starts(tmp_path):
    with _local_instance(tmp_path / "home") as instance:
        assert _materialized(instance, tmp_path)
        limits = [(p.name, p.limit, p.from_default) for p in instance.event_log_storage.get_pool_limits()]
    assert limits == [(POOL, 1, False)]


def test_a_run_on_a_storage_older_than_pools_runs_as_dagster_runs_it_there(tmp_path):
    """An event log storage not yet migrated to pools (no concurrency tables): Dagster claims no slot there, and
    setting the pool's limit must not fail the run instead."""
    home = tmp_path / "home"
    with _local_instance(home) as instance:
        instance.event_log_storage.get_pool_limits()  # its files made
    with sqlite3.connect(home / "history" / "runs" / "index.db") as index:
        for table in ("concurrency_limits", "concurrency_slots", "pending_steps"):
            index.execute(f"drop table {table}")
    with _local_instance(home) as instance:
        assert not instance.event_log_storage.supports_global_concurrency_limits
        assert _materialized(instance, tmp_path)
