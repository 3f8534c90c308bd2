"""The resources: `mx` (sandbox defaults without credentials, `EnvVar`s with them) and the notifier's lease."""

import datetime as dt

import dagster as dg

from mx_pipeline import settings
from mx_pipeline.defs.resources import NotifierResource, WarehouseResource, mx_resource


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


def test_a_notification_lease_outlives_the_longest_wait_for_the_warehouse_a_run_is_configured_with():
    # Recording a delivery may wait that long for a busy file; a lease running out first lets another run resend.
    notifier = NotifierResource(url="http://127.0.0.1:9/notifications", time_budget_seconds=120)
    patient = WarehouseResource(wait_seconds=3600)
    lease = notifier.lease(patient.wait_seconds)
    assert lease > dt.timedelta(seconds=120 + 3600)
    assert lease - notifier.lease(WarehouseResource().wait_seconds) == dt.timedelta(seconds=3600 - 600)
