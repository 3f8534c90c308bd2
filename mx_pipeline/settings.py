"""The one place that reads the environment.

Variables (all optional):
- ``MX_BASE_URL``, ``MX_CLIENT_ID``, ``MX_API_KEY``: the MX Platform API. With no client id and key set,
  everything points at the built-in sandbox (``mx-pipeline sandbox``) and its default credentials.
- ``MX_CONCURRENCY``: how many members the ingest steps read from MX at once (8), all under the one rate limiter.
- ``MX_REQUESTS_PER_SECOND``: the rate budget for MX, per process or, with ``MX_PIPELINE_RATE_BUDGET_URL``, for
  every process together (20). MX documents per-product limits without their values: raise it only as far as your
  MX agreement allows.
- ``MX_PIPELINE_RATE_BUDGET_URL``: a Postgres URL (``postgresql://user:password@host/db``) where every process that
  talks to MX spends one global budget and keeps each user's and member's spacing and MX's aggregation throttle
  (``mx.shared_budget.SharedBudget``), and where the refresh scheduler keeps its claims and attempts
  (``refresh.shared_ledger.SharedLedger``). Unset: each process paces MX by itself, and the scheduler's state is in
  the warehouse.
- ``MX_SANDBOX_HOST``, ``MX_SANDBOX_PORT``: where the built-in sandbox listens (127.0.0.1:8765);
  ``MX_SANDBOX_WEBHOOK_URL``: where it POSTs MX-style webhooks (with the ``MX_WEBHOOK_*`` credentials).
- ``MX_PIPELINE_DATA_DIR``: run-time state (warehouse, spool, Dagster home); defaults to ``./data``.
- ``MX_PIPELINE_UI_PORT``: where ``mx-pipeline dev`` serves the Dagster UI (3000).
- ``MX_PIPELINE_CONNECT_URL``: the connect service's public base URL (links in notifications point here);
  ``MX_PIPELINE_CONNECT_HOST`` / ``MX_PIPELINE_CONNECT_PORT``: where ``mx-pipeline serve`` listens.
- ``MX_WEBHOOK_USERNAME``, ``MX_WEBHOOK_PASSWORD``: the HTTP Basic credentials MX uses on our webhook endpoint
  (configured in MX's Client Dashboard). Unset: the webhook endpoint refuses every delivery.
- ``MX_PIPELINE_API_TOKEN``: the bearer token (at least 24 characters) the product backend presents to the connect
  service's /v1 API. Unset: the /v1 API is open, which ``mx-pipeline serve`` allows only when it listens on
  loopback and its public URL is loopback too (development); anywhere else it refuses to start.
- ``MX_PIPELINE_REDIRECT_ORIGINS``: comma-separated origins a ``client_redirect_url`` may point to (e.g.
  ``https://app.example.com,myapp://callback``). Unset: any https URL, and http to loopback.
- ``MX_PIPELINE_NOTIFY_URL``, ``MX_PIPELINE_NOTIFY_TOKEN``: the product backend endpoint that receives reconnect
  notifications (POST, JSON) and its bearer token. Unset: notifications are logged and kept in the outbox.
- ``MX_PIPELINE_LINK_SECRET``: signs reconnect links and Connect callback state. Unset: a random secret is
  created once under the data directory (git-ignored, mode 0600) so links survive restarts.
- ``MX_PIPELINE_MODELS_DELAY_SECONDS``: how long the ``models_after_sync`` sensor lets synced data settle before it
  builds the SQL models (60): every sync within it is in one build.
- The production Dagster instance (``mx-pipeline instance production``; the local one needs none of these):
  ``DAGSTER_PG_HOST``, ``DAGSTER_PG_USERNAME``, ``DAGSTER_PG_DB`` (required), ``DAGSTER_PG_PORT`` (5432),
  ``DAGSTER_PG_PASSWORD``, ``DAGSTER_PG_SSLMODE``: its Postgres, read by Dagster when the instance loads (the
  instance file names the variables, never their values); ``MX_PIPELINE_MAX_CONCURRENT_RUNS``: runs at once (8).

A variable set wrongly raises :class:`ConfigError`, whose message names the variable and what to set it to
(``mx-pipeline`` prints it as one line and exits 2).
"""

import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mx_pipeline.connect.redirects import is_loopback_host

log = logging.getLogger(__name__)
SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_API_KEY = "sandbox-api-key"
SANDBOX_HOST = "127.0.0.1"
SANDBOX_PORT = 8765
DAGSTER_UI_PORT = 3000
MIN_API_TOKEN_LENGTH = 24
PRIVATE_UMASK = 0o077  # no access for group and others
MX_ENVIRONMENTS = "https://int-api.mx.com for development keys, https://api.mx.com for production"
MX_DOMAIN = ".mx.com"
DEFAULT_CONCURRENCY = 8
DEFAULT_REQUESTS_PER_SECOND = 20
MAX_REQUESTS_PER_SECOND = 1000
MAX_CONCURRENCY = 64  # MX allows 2,000 concurrent connections per IP; the rate limiter paces them all anyway


class ConfigError(ValueError):
    """The environment configures something wrongly; the message names the variable and what to set."""


def _port(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"{name}={value!r} is not a port number: set it to a number from 1 to 65535")
    return port


def _concurrency() -> int:
    return _count("MX_CONCURRENCY", DEFAULT_CONCURRENCY, MAX_CONCURRENCY, "members to read at once")


def _count(name: str, default: int, maximum: int, what: str) -> int:
    """A whole number from 1 to ``maximum`` in ``name``; unset: ``default``."""
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= maximum:
        raise ConfigError(
            f"{name}={value!r} is not a number of {what}: set it to a number from 1 to {maximum}, or unset it for "
            f"{default}"
        )
    return count


def _url(name: str, default: str, what: str) -> str:
    value = os.environ.get(name) or default
    parts = urlsplit(value)
    shown = value if "@" not in value else "...@" + value.rsplit("@", 1)[1]  # never echo credentials put in it
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={shown!r} is not an http(s) URL: set it to {what}")
    if "@" in parts.netloc:
        raise ConfigError(f"{name}={shown!r} carries credentials: set it to {what}, without them")
    return value


def check_environment() -> None:
    """Raise :class:`ConfigError` for the first MX or connect-service variable set wrongly (at load, not mid-run)."""
    MxSettings.from_env()
    port = _port("MX_PIPELINE_CONNECT_PORT", 8780)
    _url("MX_PIPELINE_CONNECT_URL", f"http://127.0.0.1:{port}", "the connect service's public URL")


@dataclass(frozen=True)
class MxSettings:
    """Where the MX API is and how to authenticate. ``repr`` never shows the key."""

    base_url: str
    client_id: str
    api_key: str = field(repr=False)
    is_sandbox: bool
    concurrency: int = DEFAULT_CONCURRENCY  # members read at once (``MX_CONCURRENCY``)
    requests_per_second: int = DEFAULT_REQUESTS_PER_SECOND  # the budget (``MX_REQUESTS_PER_SECOND``)

    @classmethod
    def from_env(cls) -> "MxSettings":
        client_id = os.environ.get("MX_CLIENT_ID", "")
        api_key = os.environ.get("MX_API_KEY", "")
        host = os.environ.get("MX_SANDBOX_HOST", SANDBOX_HOST)
        port = _port("MX_SANDBOX_PORT", SANDBOX_PORT)
        pace = {
            "concurrency": _concurrency(),
            "requests_per_second": _count(
                "MX_REQUESTS_PER_SECOND", DEFAULT_REQUESTS_PER_SECOND, MAX_REQUESTS_PER_SECOND, "requests a second"
            ),
        }
        if bool(client_id) != bool(api_key):
            missing, given = ("MX_API_KEY", "MX_CLIENT_ID") if client_id else ("MX_CLIENT_ID", "MX_API_KEY")
            raise ConfigError(
                f"{given} is set but {missing} is not: set {missing} too (MX's Client Dashboard shows both), "
                "or unset both to use the built-in sandbox"
            )
        if client_id:
            base_url = _url("MX_BASE_URL", "https://int-api.mx.com", MX_ENVIRONMENTS)
            return cls(base_url, client_id, api_key, is_sandbox=False, **pace)
        base_url = _url("MX_BASE_URL", f"http://{host}:{port}", "the built-in sandbox's address, or unset it")
        if (urlsplit(base_url).hostname or "").endswith(MX_DOMAIN):
            raise ConfigError(
                f"MX_BASE_URL points at MX ({base_url}) but MX_CLIENT_ID and MX_API_KEY are not set: set both (MX's"
                " Client Dashboard shows them), or unset MX_BASE_URL to use the built-in sandbox"
            )
        return cls(base_url, SANDBOX_CLIENT_ID, SANDBOX_API_KEY, is_sandbox=True, **pace)


def rate_budget_url() -> str | None:
    """``MX_PIPELINE_RATE_BUDGET_URL``, checked to name a Postgres database; it holds a password: never show it."""
    value = os.environ.get("MX_PIPELINE_RATE_BUDGET_URL")
    if not value:
        return None
    if urlsplit(value).scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            "MX_PIPELINE_RATE_BUDGET_URL is not a Postgres URL: set it to postgresql://user:password@host:5432/db"
            " (the budget every worker shares), or unset it"
        )
    return value


@dataclass(frozen=True)
class SandboxSettings:
    """How ``mx-pipeline sandbox`` serves: where, which credentials it accepts, where it sends webhooks."""

    host: str
    port: int
    client_id: str
    api_key: str = field(repr=False)
    webhook_url: str | None = None
    webhook_username: str | None = None
    webhook_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> "SandboxSettings":
        # Started with MX_CLIENT_ID / MX_API_KEY, the sandbox accepts exactly those (a second process pointed at
        # it with MX_BASE_URL then works unchanged); otherwise its published defaults.
        return cls(
            host=os.environ.get("MX_SANDBOX_HOST", SANDBOX_HOST),
            port=_port("MX_SANDBOX_PORT", SANDBOX_PORT),
            client_id=os.environ.get("MX_CLIENT_ID") or SANDBOX_CLIENT_ID,
            api_key=os.environ.get("MX_API_KEY") or SANDBOX_API_KEY,
            webhook_url=os.environ.get("MX_SANDBOX_WEBHOOK_URL") or None,
            webhook_username=os.environ.get("MX_WEBHOOK_USERNAME") or None,
            webhook_password=os.environ.get("MX_WEBHOOK_PASSWORD") or None,
        )


def data_dir() -> Path:
    """Run-time state directory (created on demand, its owner's alone: it holds emails, payloads and keys)."""
    path = Path(os.environ.get("MX_PIPELINE_DATA_DIR", "data"))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _make_private(path, 0o700, logging.INFO)
    return path


def keep_files_private() -> None:
    """From now on, every file and directory this process and its children create is its owner's alone (umask 077).

    Entry points call it first: DuckDB, Dagster and SQLite create their files (and WAL, temp and log files) with
    the process's umask, so this is the one place that covers them all.
    """
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)


def _make_private(path: Path, mode: int, level: int) -> None:
    """Take away group and other access (``PermissionError`` if it is not ours to change: we refuse to go on)."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & PRIVATE_UMASK:
        path.chmod(mode)
        log.log(level, "%s was readable by others (mode %o): it is now %o", path, current, mode)


@dataclass(frozen=True)
class ConnectSettings:
    """The connect service: where it is reachable and the secrets it checks and signs with."""

    public_url: str
    host: str
    port: int
    webhook_username: str = field(repr=False)
    webhook_password: str = field(repr=False)
    link_secret: str = field(repr=False)
    api_token: str | None = field(default=None, repr=False)
    redirect_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> "ConnectSettings":
        host = os.environ.get("MX_PIPELINE_CONNECT_HOST", "127.0.0.1")
        port = _port("MX_PIPELINE_CONNECT_PORT", 8780)
        public_url = _url("MX_PIPELINE_CONNECT_URL", f"http://{host}:{port}", "the connect service's public URL")
        return cls(
            public_url=public_url.rstrip("/"),
            host=host,
            port=port,
            webhook_username=os.environ.get("MX_WEBHOOK_USERNAME", ""),
            webhook_password=os.environ.get("MX_WEBHOOK_PASSWORD", ""),
            link_secret=os.environ.get("MX_PIPELINE_LINK_SECRET") or _local_link_secret(),
            api_token=os.environ.get("MX_PIPELINE_API_TOKEN") or None,
            redirect_origins=tuple(
                o.strip() for o in os.environ.get("MX_PIPELINE_REDIRECT_ORIGINS", "").split(",") if o.strip()
            ),
        )

    def exposure_problem(self) -> str | None:
        """Why this service must not start as configured (an open or guessable /v1 API where others reach it)."""
        if self.api_token is not None and len(self.api_token) < MIN_API_TOKEN_LENGTH:
            return f"MX_PIPELINE_API_TOKEN must be at least {MIN_API_TOKEN_LENGTH} characters (a random string)"
        public_host = urlsplit(self.public_url).hostname or ""
        if self.api_token is None and not (is_loopback_host(self.host) and is_loopback_host(public_host)):
            return (
                f"MX_PIPELINE_API_TOKEN is not set, yet the connect service would listen on {self.host} and be "
                f"reached at {self.public_url}: anyone could mint Connect URLs for any user. Set "
                "MX_PIPELINE_API_TOKEN (the product backend sends it as a bearer token), or listen on 127.0.0.1 "
                "with a loopback MX_PIPELINE_CONNECT_URL for development"
            )
        return None


def _local_link_secret() -> str:
    path = data_dir() / ".link_secret"
    if not path.exists():
        candidate = path.with_name(f".link_secret.{os.getpid()}")
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
        try:
            os.link(candidate, path)  # atomic and exclusive: the first process to get here wins
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    _make_private(path, 0o600, logging.WARNING)  # a secret others could read: fixed, and worth rotating
    return path.read_text().strip()


@dataclass(frozen=True)
class NotifySettings:
    """Where reconnect notifications are POSTed (``MX_PIPELINE_NOTIFY_URL``); unset: logged and kept in the outbox.

    ``MX_PIPELINE_NOTIFY_TOKEN``, if set, is sent as a bearer token; only its presence is read here.
    """

    url: str | None
    has_token: bool

    @classmethod
    def from_env(cls) -> "NotifySettings":
        return cls(os.environ.get("MX_PIPELINE_NOTIFY_URL") or None, bool(os.environ.get("MX_PIPELINE_NOTIFY_TOKEN")))


def models_delay_seconds() -> float:
    """How long synced data settles before one model build takes it all (``MX_PIPELINE_MODELS_DELAY_SECONDS``)."""
    value = os.environ.get("MX_PIPELINE_MODELS_DELAY_SECONDS", "60")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise ConfigError(f"MX_PIPELINE_MODELS_DELAY_SECONDS={value!r}: set it to seconds, from 0 to 86400")
    return seconds


POSTGRES_REQUIRED = ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_DB")
POSTGRES_OPTIONAL = ("DAGSTER_PG_PORT", "DAGSTER_PG_PASSWORD")
DEFAULT_MAX_CONCURRENT_RUNS = 8
MAX_CONCURRENT_RUNS = 1000


@dataclass(frozen=True)
class ProductionInstanceSettings:
    """What the production Dagster instance is rendered from: which Postgres variables are set (their names only:
    Dagster reads the values when the instance loads, so no value is ever written) and how many runs run at once."""

    postgres_variables: tuple[str, ...]
    sslmode: str | None
    max_concurrent_runs: int

    @classmethod
    def from_env(cls) -> "ProductionInstanceSettings":
        missing = [name for name in POSTGRES_REQUIRED if not os.environ.get(name)]
        if missing:
            raise ConfigError(
                "the production instance keeps Dagster's runs, events and schedules in Postgres: set "
                f"{', '.join(missing)} (and DAGSTER_PG_PORT, DAGSTER_PG_PASSWORD, DAGSTER_PG_SSLMODE where needed)"
            )
        _port("DAGSTER_PG_PORT", 5432)
        present = tuple(name for name in POSTGRES_OPTIONAL if os.environ.get(name) is not None)
        return cls(
            POSTGRES_REQUIRED + present,
            os.environ.get("DAGSTER_PG_SSLMODE") or None,
            _count("MX_PIPELINE_MAX_CONCURRENT_RUNS", DEFAULT_MAX_CONCURRENT_RUNS, MAX_CONCURRENT_RUNS, "runs"),
        )


def warehouse_path() -> Path:
    """The pipeline's DuckDB warehouse; analysts read ``analytics.duckdb`` beside it."""
    return data_dir() / "warehouse.duckdb"


def dagster_home() -> Path:
    """The project-local Dagster instance ``mx-pipeline dev`` runs (its ``dagster.yaml``, runs, sensor cursors)."""
    return data_dir() / "dagster_home"


def dagster_ui_port() -> int:
    """Where ``mx-pipeline dev`` serves the Dagster UI (``MX_PIPELINE_UI_PORT``, default 3000)."""
    return _port("MX_PIPELINE_UI_PORT", DAGSTER_UI_PORT)


def spool_dir() -> Path:
    """Where the connect service spools accepted events for the pipeline."""
    return data_dir() / "spool"


def link_store_path() -> Path:
    """The reconnect links and callback states both the pipeline and the connect service use (SQLite)."""
    return data_dir() / "links.sqlite"


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment plus ``overrides``, for the processes ``mx-pipeline dev`` starts."""
    return {**os.environ, **overrides}
