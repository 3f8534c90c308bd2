"""The ``mx`` resource: sandbox defaults without credentials, ``EnvVar``s (never values) with them."""

import dagster as dg

from mx_pipeline import settings
from mx_pipeline.defs.resources import mx_resource


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
