"""Every knob of the sandbox in one frozen record (defaults suit a demo; tests tighten or relax them)."""

from dataclasses import dataclass, fields

from mx_pipeline import settings

THREE_HOURS = 3 * 60 * 60


@dataclass(frozen=True)
class SandboxConfig:
    """How the fake MX behaves. Durations are sandbox-clock seconds unless named ``*_real_seconds``."""

    seed: int = 0
    client_id: str = settings.SANDBOX_CLIENT_ID
    api_key: str = settings.SANDBOX_API_KEY
    # Clock: None starts at the real current time; ``freeze_clock`` stops real time flowing (tests advance it).
    start_time: str | None = None
    freeze_clock: bool = False
    # Aggregation: how long a job runs, and the throttle MX applies to non-test institutions ("typically three
    # hours", S25 MemberResponse.aggregated_at). MX Bank has no aggregation limits (MX test-platform docs).
    aggregation_seconds: float = 2.0
    aggregation_throttle_seconds: float = THREE_HOURS
    challenge_expiry_seconds: float = 10 * 60
    widget_url_ttl_seconds: float = 10 * 60
    history_days: int = 120
    # MX aggregates every connected member in the background about once a day; None turns that off.
    background_aggregation_hours: float | None = 24.0
    # Scripted institution behaviour, drawn deterministically from the seed on each later aggregation.
    rechallenge_rate: float = 0.0
    institution_degrade_rate: float = 0.0
    institution_disable_rate: float = 0.0
    # Rate limits (not documented by MX: the sandbox's own model of "per user / per member" limits).
    rate_limit_window_seconds: float = 10.0
    user_requests_per_window: int = 200
    member_requests_per_window: int = 60
    abuse_window_seconds: float = 60 * 60
    abuse_429s_before_degrade: int = 5
    abuse_aggregations_before_degrade: int = 12
    abuse_degraded_seconds: float = THREE_HOURS
    # Fault injection (never on /_sandbox/ or the Connect page), each kind at its own rate per MX API request
    # (faults.py says what each does); ``fault_rate`` is a shorthand spread evenly over the first four kinds.
    latency_ms: int = 0
    fault_rate: float = 0.0
    server_error_rate: float = 0.0
    rate_limited_rate: float = 0.0
    truncated_json_rate: float = 0.0
    invalid_json_rate: float = 0.0
    server_error_after_write_rate: float = 0.0
    fault_retry_after_seconds: float = 1.0  # the Retry-After an injected 429 carries
    # Webhooks.
    webhook_url: str | None = None
    webhook_username: str | None = None
    webhook_password: str | None = None
    webhook_retry_delays_real_seconds: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    webhook_timeout_real_seconds: float = 5.0


def make_config(**options) -> SandboxConfig:
    """A config from keyword options, rejecting unknown names (a typo must not be silently ignored)."""
    known = {f.name for f in fields(SandboxConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown sandbox option(s): {', '.join(unknown)}")
    if "webhook_retry_delays_real_seconds" in options:
        options["webhook_retry_delays_real_seconds"] = tuple(options["webhook_retry_delays_real_seconds"])
    return SandboxConfig(**options)
