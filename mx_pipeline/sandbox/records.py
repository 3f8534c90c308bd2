"""The sandbox's in-memory records. Plain mutable dataclasses; the world's single lock guards them all."""

from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from mx_pipeline.mx.statuses import ConnectionStatus


@dataclass(slots=True)
class User:
    guid: str
    id: str | None
    email: str | None
    is_disabled: bool
    metadata: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an aggregation ends in: a status, and for CHALLENGED the kind of MFA question."""

    status: ConnectionStatus
    challenge_kind: str | None = None


@dataclass(slots=True)
class Challenge:
    guid: str
    kind: str  # TEXT, OPTIONS, IMAGE_DATA (MX's ChallengeResponse.type values)
    label: str
    field_name: str
    options: list[dict[str, Any]] = field(default_factory=list)
    image_data: str | None = None


@dataclass(slots=True)
class Job:
    """A running aggregation-type job. ``kind`` is aggregate or balance (MX: same kind -> 202, other -> 409)."""

    kind: str
    started_at: datetime
    completes_at: datetime
    outcome: Outcome
    is_background: bool = False


@dataclass(slots=True)
class Account:
    guid: str
    member_guid: str
    user_guid: str
    name: str
    type: str
    subtype: str | None
    account_number: str
    routing_number: str | None
    balance: float
    credit_limit: float | None
    apr: float | None
    apy: float | None
    interest_rate: float | None
    original_balance: float | None
    created_at: datetime
    updated_at: datetime
    imported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a pending purchase settles: posts IN_PLACE, is REISSUED under a new guid, or VANISHES; at ``amount``."""

    outcome: str
    amount: float


@dataclass(slots=True)
class Transaction:
    guid: str
    account_guid: str
    member_guid: str
    user_guid: str
    amount: float
    type: str  # CREDIT or DEBIT; amounts are unsigned (MX transactions webhook doc)
    status: str  # POSTED or PENDING
    description: str
    original_description: str
    category_guid: str
    merchant_guid: str | None
    merchant_category_code: int | None
    transacted_at: datetime
    posted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    kind: str = "spend"  # payroll, transfer, bill, subscription, fee, interest, spend (drives the is_* flags)
    settles_as: Settlement | None = None  # pending rows only

    @property
    def date(self) -> date:
        return self.transacted_at.date()


@dataclass(slots=True)
class BankLogin:
    """The bank's side of one login (user, institution, LOGIN), shared by every member ever linked to it.

    ``key`` seeds the login's history; ``extra_purchases`` holds purchases beyond each day's own stream (a
    same-day re-aggregation's fresh ones, the admin hook's), per day, True when posted at once.
    """

    key: str
    extra_purchases: dict[date, list[bool]] = field(default_factory=dict)


@dataclass(slots=True)
class MemberData:
    """Per-member generated-data state: the member's guid RNG, its view of the login, how far it has been written."""

    rng: Any  # guids only; content comes from the bank login
    profile: dict[str, Any]
    accounts: list[Account]
    bank: BankLogin
    generated_through: date | None = None
    extras_shown: dict[date, int] = field(default_factory=dict)  # the login's extra purchases this member has


@dataclass(slots=True)
class Member:
    guid: str
    user_guid: str
    institution_code: str
    credentials: dict[str, str]
    created_at: datetime
    id: str | None = None
    metadata: str | None = None
    connection_status: ConnectionStatus = ConnectionStatus.CREATED
    is_being_aggregated: bool = False
    aggregated_at: datetime | None = None
    successfully_aggregated_at: datetime | None = None
    challenged_at: datetime | None = None
    background_aggregation_is_disabled: bool = False
    needs_updated_credentials: bool = False
    include_transactions: bool = True
    use_cases: list[str] | None = None
    job: Job | None = None
    challenges: list[Challenge] = field(default_factory=list)
    scripted_outcomes: deque = field(default_factory=deque)
    degraded_until: datetime | None = None
    data: MemberData | None = None


@dataclass(slots=True)
class WidgetUrl:
    """A minted Connect URL: single use, expires after ten minutes (S11 requestWidgetURL)."""

    token: str
    user_guid: str
    created_at: datetime
    options: dict[str, Any]
    used: bool = False


@dataclass(slots=True)
class ConnectSession:
    """One person's walk through the Connect page after opening a widget URL.

    ``parent_origin`` is the embedding page's origin (from the Referer of the widget URL's request), the only
    target the page posts to; ``step`` is the step the page last showed (MX's step names: search, enterCreds,
    connecting, mfa, connected, loginError, oauthError); ``seen_status`` is the member status the connecting
    step last saw (a status update is posted only when it changes).
    """

    guid: str
    user_guid: str
    options: dict[str, Any]
    parent_origin: str | None = None
    institution_code: str | None = None
    member_guid: str | None = None
    force_credentials: bool = False  # show the credentials form for the member (update_credentials, DENIED)
    error: str | None = None
    step: str | None = None
    seen_status: str | None = None
    last_query: str = ""
    oauth_token: str | None = None  # the bank authorization this session waits for
    oauth_state: str | None = None  # None until the sign-in is requested, then requested, approved or denied
    events: list[dict[str, Any]] = field(default_factory=list)  # every event, in order (test truth)
    unposted: list[dict[str, Any]] = field(default_factory=list)  # raised by a form post, posted by the next page
