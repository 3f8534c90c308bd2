"""The one place resources are bound: ``mx`` (the MX Platform API) and ``warehouse`` (DuckDB).

Credentials reach the ``mx`` resource as ``EnvVar``s, so their values never appear in run config or the UI.
The only load-time decision is whether MX is configured at all; with no credentials, ``mx`` points at the
built-in sandbox and its published test credentials.
"""

from collections.abc import Callable, Iterable
from pathlib import Path

import dagster as dg

from mx_pipeline import settings
from mx_pipeline.mx import ApiCall, MxClient, RateLimiter, RateLimits
from mx_pipeline.warehouse import Warehouse


class MxResource(dg.ConfigurableResource):
    """The MX Platform API client, paced by a client-side rate limiter."""

    base_url: str
    client_id: str
    api_key: str
    requests_per_second: float = RateLimits.requests_per_second
    per_member_interval: float = RateLimits.per_member_interval

    def client(self, observers: Iterable[Callable[[ApiCall], None]] = ()) -> MxClient:
        """A fresh client (close it, or use it as a context manager) reporting each HTTP attempt to ``observers``."""
        limits = RateLimits(requests_per_second=self.requests_per_second, per_member_interval=self.per_member_interval)
        return MxClient(
            self.base_url, self.client_id, self.api_key, limiter=RateLimiter(limits), observers=list(observers)
        )


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file; defaults to ``warehouse.duckdb`` under the data directory."""

    path: str | None = None
    memory_limit: str = "1GB"  # DuckDB's buffer pool; its default (80 % of RAM) would grow with the tables

    def open(self) -> Warehouse:
        path = Path(self.path) if self.path else settings.data_dir() / "warehouse.duckdb"
        return Warehouse(path, memory_limit=self.memory_limit)


def mx_resource() -> MxResource:
    """MX from ``MX_*`` environment variables, or the built-in sandbox when no credentials are set."""
    configured = settings.MxSettings.from_env()  # a presence check: values stay in the environment
    if configured.is_sandbox:
        return MxResource(base_url=configured.base_url, client_id=configured.client_id, api_key=configured.api_key)
    return MxResource(
        base_url=configured.base_url, client_id=dg.EnvVar("MX_CLIENT_ID"), api_key=dg.EnvVar("MX_API_KEY")
    )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"mx": mx_resource(), "warehouse": WarehouseResource()})
