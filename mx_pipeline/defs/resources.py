"""The one place resources are bound: ``mx`` (the MX Platform API), ``warehouse`` (DuckDB), and the lifecycle's
``notifier`` (where reconnect notifications go) and ``connect_links`` (reconnect links: the store the connect
service shares, and the URLs), and the
refresh scheduler's rules (``refresh_policy``).

Credentials reach the ``mx`` resource as ``EnvVar``s, so their values never appear in run config or the UI.
The only load-time decision is whether MX is configured at all; with no credentials, ``mx`` points at the
built-in sandbox and its published test credentials.
"""

import datetime as dt
from collections.abc import Callable, Iterable
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from mx_pipeline import settings
from mx_pipeline.connect.link_store import ClosedWhy, LinkRequest
from mx_pipeline.connect.links import Links, reconnect_url
from mx_pipeline.defs.ingest.group import POOL
from mx_pipeline.defs.pools import ensure_pool
from mx_pipeline.landing import LandingArea
from mx_pipeline.lifecycle.episodes import Episode
from mx_pipeline.lifecycle.gate import RoutedMember
from mx_pipeline.lifecycle.notifier import HttpNotifier, LogNotifier, Notifier, longest_http_delivery
from mx_pipeline.mx import ApiCall, MxClient, RateLimiter, RateLimits
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.warehouse import Warehouse
from mx_pipeline.warehouse.connection import DEFAULT_WAIT_SECONDS
from mx_pipeline.warehouse.refresh_state import Ledger, ledger_for


class MxResource(dg.ConfigurableResource):
    """The MX Platform API client, paced by a client-side rate limiter; the ingest steps read ``concurrency``
    members at once through it (``MX_CONCURRENCY``), every request under the same limiter."""

    base_url: str
    client_id: str
    api_key: str
    requests_per_second: float = RateLimits.requests_per_second
    per_member_interval: float = RateLimits.per_member_interval
    concurrency: int = Field(default=settings.DEFAULT_CONCURRENCY, ge=1, le=settings.MAX_CONCURRENCY)
    # Where every process spends one global budget (MX_PIPELINE_RATE_BUDGET_URL); None: this process's own.
    rate_budget_url: str | None = None

    def client(self, observers: Iterable[Callable[[ApiCall], None]] = ()) -> MxClient:
        """A fresh client (close it, or use it as a context manager) reporting each HTTP attempt to ``observers``."""
        limits = RateLimits(requests_per_second=self.requests_per_second, per_member_interval=self.per_member_interval)
        return MxClient(
            self.base_url,
            self.client_id,
            self.api_key,
            limiter=RateLimiter.spending(limits, self.rate_budget_url),
            observers=list(observers),
            pool_size=self.concurrency,
        )


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file; defaults to ``warehouse.duckdb`` under the data directory."""

    path: str | None = None
    memory_limit: str = "1GB"  # DuckDB's buffer pool; its default (80 % of RAM) would grow with the tables
    # How long a step waits for the file while another process holds it (say, an analyst's read-write session)
    # before it fails saying what to close; the wait is logged in the run.
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    # Where sync runs land what they read before the loader merges it: a directory or an fsspec URL; by default
    # ``landing/`` beside the warehouse file.
    landing_url: str | None = None
    # Where the refresh scheduler keeps its claims and attempts when workers run anywhere: the shared Postgres
    # (MX_PIPELINE_RATE_BUDGET_URL, beside MX's shared limits); None: the warehouse's ``ops`` tables.
    shared_state_url: str | None = None

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.instance is not None:
            ensure_pool(context.instance, POOL)

    def open(self, *, memory_limit: str | None = None) -> Warehouse:
        """The warehouse; its connections' pool is ``memory_limit`` when given (work whose aggregates may spill),
        else the resource's."""
        path = Path(self.path) if self.path else settings.warehouse_path()
        log = dg.get_dagster_logger("warehouse")  # inside a step, its lines land in the run's log
        pool = memory_limit or self.memory_limit
        return Warehouse(path, memory_limit=pool, wait_seconds=self.wait_seconds, log=log)

    def landing(self) -> LandingArea:
        return LandingArea(self.landing_url) if self.landing_url else LandingArea.beside(self.open().path)

    def ledger(self, con: duckdb.DuckDBPyConnection) -> Ledger:
        """The refresh scheduler's claims and attempts: in the shared Postgres when set, else on ``con``."""
        return ledger_for(con, self.shared_state_url)


class NotifierResource(dg.ConfigurableResource):
    """How reconnect notifications leave the outbox: the log, or a POST to the product backend."""

    url: str | None = None
    token: str | None = None
    max_attempts: int = 5  # per notification, across runs; then it is `dead`, shown in member_health
    retry_backoff_seconds: float = 0.5  # within one delivery: 0.5 s, 1 s, 2 s between the HTTP attempts
    timeout_seconds: float = 10.0  # per HTTP attempt
    # A run sends at most this many, and starts none after its time budget; the rest stay pending for the next run.
    batch_size: int = 50
    time_budget_seconds: float = 120.0

    def notifier(self, link_url: Callable[[str], str]) -> Notifier:
        """``link_url``: a notification's link id -> its reconnect URL (``ConnectLinksResource.url``)."""
        if not self.url:
            return LogNotifier()
        return HttpNotifier(
            self.url,
            link_url=link_url,
            token=self.token,
            backoff=self.retry_backoff_seconds,
            timeout=self.timeout_seconds,
        )

    def lease(self, warehouse_wait_seconds: float = DEFAULT_WAIT_SECONDS) -> dt.timedelta:
        """How long a run holds the batch it sends: its time budget, its last delivery, and recording it (the
        file may be busy that long). Past it, the run died mid-send and the next run takes the batch over."""
        one = longest_http_delivery(timeout=self.timeout_seconds, backoff=self.retry_backoff_seconds) if self.url else 0
        seconds = self.time_budget_seconds + one + warehouse_wait_seconds
        return dt.timedelta(seconds=seconds)


class ConnectLinksResource(dg.ConfigurableResource):
    """The reconnect links notifications carry: issued and closed in the link store the connect service shares
    (``connect/link_store.py``), their URLs signed with the link secret, read when used, never configured."""

    public_url: str | None = None  # the connect service as end users reach it; default MX_PIPELINE_CONNECT_URL
    store_path: str | None = None  # default: links.sqlite under the data directory

    def links(self) -> Links:
        path = Path(self.store_path) if self.store_path else settings.link_store_path()
        return Links.at(settings.ConnectSettings.from_env().link_secret, path)

    def service_url(self) -> str:
        return (self.public_url or settings.ConnectSettings.from_env().public_url).rstrip("/")

    def issue(self, asking: Iterable[tuple[RoutedMember, Episode]]) -> dict[str, str]:
        """The link id of each asking member's episode (the same for the same episode): {member guid: link id}."""
        requests = [
            LinkRequest(r.member.member_guid, e.number, r.member.user_id, r.member.user_guid, r.rule.connect_mode.value)
            for r, e in asking
        ]
        issued = self.links().store.issue(requests) if requests else {}
        return {guid: link_id for (guid, _), link_id in issued.items()}

    def url(self) -> Callable[[str], str]:
        """A link id -> its reconnect URL, the same every time."""
        signer, public_url = self.links().signer, self.service_url()
        return lambda link_id: reconnect_url(public_url, signer, link_id)

    def sent(self, link_ids: list[str]) -> None:
        if link_ids:
            self.links().store.sent(link_ids)

    def open_episodes(self) -> list[tuple[str, int]]:
        return self.links().store.open_episodes()

    def close(self, closed: dict[tuple[str, int], ClosedWhy]) -> int:
        return self.links().store.close(closed) if closed else 0


class RefreshPolicyResource(dg.ConfigurableResource):
    """The refresh scheduler's rules (``mx_pipeline/refresh/policy.py``), each overridable in the UI."""

    sla_hours: float = RefreshPolicy.sla_hours
    max_attempts: int = RefreshPolicy.max_attempts
    attempt_window_hours: float = RefreshPolicy.attempt_window_hours
    min_interval_hours: float = RefreshPolicy.min_interval_hours
    backoff_base_minutes: float = RefreshPolicy.backoff_base_minutes
    members_per_run: int = RefreshPolicy.members_per_run
    max_members_per_tick: int = RefreshPolicy.max_members_per_tick
    requests_per_hour: int = RefreshPolicy.requests_per_hour
    per_institution_per_tick: int = RefreshPolicy.per_institution_per_tick
    poll_timeout_seconds: float = RefreshPolicy.poll_timeout_seconds
    poll_first_seconds: float = RefreshPolicy.poll_first_seconds
    poll_max_seconds: float = RefreshPolicy.poll_max_seconds
    claim_ttl_hours: float = RefreshPolicy.claim_ttl_hours
    needs_user_reread_hours: float = RefreshPolicy.needs_user_reread_hours

    def policy(self) -> RefreshPolicy:
        return RefreshPolicy(**{name: getattr(self, name) for name in RefreshPolicy.__dataclass_fields__})


def notifier_resource() -> NotifierResource:
    configured = settings.NotifySettings.from_env()
    if not configured.url:
        return NotifierResource()
    token = dg.EnvVar("MX_PIPELINE_NOTIFY_TOKEN") if configured.has_token else None
    return NotifierResource(url=configured.url, token=token)


def _shared_state() -> dg.EnvVar | None:
    """The shared Postgres, as the variable's name: its URL holds a password and never appears in run config."""
    return dg.EnvVar("MX_PIPELINE_RATE_BUDGET_URL") if settings.rate_budget_url() else None


def warehouse_resource() -> WarehouseResource:
    return WarehouseResource(shared_state_url=_shared_state())


def mx_resource() -> MxResource:
    """MX from ``MX_*`` environment variables, or the built-in sandbox when no credentials are set."""
    configured = settings.MxSettings.from_env()  # a presence check: values stay in the environment
    budget = _shared_state()
    if configured.is_sandbox:
        return MxResource(
            base_url=configured.base_url,
            client_id=configured.client_id,
            api_key=configured.api_key,
            concurrency=configured.concurrency,
            requests_per_second=configured.requests_per_second,
            rate_budget_url=budget,
        )
    return MxResource(
        base_url=configured.base_url,
        client_id=dg.EnvVar("MX_CLIENT_ID"),
        api_key=dg.EnvVar("MX_API_KEY"),
        concurrency=configured.concurrency,
        requests_per_second=configured.requests_per_second,
        rate_budget_url=budget,
    )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "mx": mx_resource(),
            "warehouse": warehouse_resource(),
            "notifier": notifier_resource(),
            "connect_links": ConnectLinksResource(),
            "refresh_policy": RefreshPolicyResource(),
        }
    )
