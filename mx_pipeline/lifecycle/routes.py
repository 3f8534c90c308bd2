"""Every MX ``connection_status`` has exactly one route: the one table that says what happens next.

Statuses are not sequential (a CONNECTED member can come back CHALLENGED on any aggregation), so a route is
recomputed from every fresh status read and never assumed to persist.

Sources (``../shared/research/mx_api.md`` section 3): MX calls exactly eight statuses end-user actionable (its
CONNECTION_STATUS webhook fires for them); Connect opened with ``current_member_guid`` resolves MFA ones
without new credentials, and ``update_credentials`` is for the ones that need them (MX asks that it be used
sparingly). DEGRADED and DISABLED are not user-actionable for MX, and our own request bursts can cause
DEGRADED, so they are backed off first and notified only when they persist (DISABLED at once).
"""

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from mx_pipeline.mx.statuses import ConnectionStatus as S


class Route(StrEnum):
    READY = "ready"  # healthy: fetch data, eligible for refresh
    NEEDS_MFA = "needs_mfa"  # the user answers MFA in Connect opened on the member
    NEEDS_RECONNECT = "needs_reconnect"  # the user re-enters credentials (or acts at the bank first)
    DEGRADED = "degraded"  # provider trouble: back off, notify only if it persists past the grace
    IN_PROGRESS = "in_progress"  # a job is running or MX is still deciding: poll with backoff
    INSTITUTION_SIDE = "institution_side"  # MX or the bank is failing: retry later, never nag the user
    TERMINAL = "terminal"  # nothing to do: no refresh, surfaced in member health


class ConnectMode(StrEnum):
    """How Connect is opened for a member: the product's words for MX's widget parameters."""

    AGGREGATION = "aggregation"  # a new connection
    UPDATE = "update"  # current_member_guid: MFA or a fix, no credential re-entry
    RECONNECT = "reconnect"  # current_member_guid + update_credentials: fresh credentials


class RefreshAction(StrEnum):
    AGGREGATE = "aggregate"  # ask MX for a fresh aggregation, then poll it
    REREAD = "reread"  # only read the status again: never add load to a struggling connection


# Healthy members and those failing on the institution's side are aggregated (the latter with back-off);
# a DEGRADED one is only re-read, since our own bursts may be why it degraded; one waiting on its user is
# only re-read, on a slow cadence (RefreshPolicy.needs_user_reread_hours), so that it recovers even when the
# callback or webhook that would have told us was lost. The rest wait for a running job, or for nothing.
REFRESH_ACTIONS: dict[Route, RefreshAction] = {
    Route.READY: RefreshAction.AGGREGATE,
    Route.INSTITUTION_SIDE: RefreshAction.AGGREGATE,
    Route.DEGRADED: RefreshAction.REREAD,
    Route.NEEDS_MFA: RefreshAction.REREAD,
    Route.NEEDS_RECONNECT: RefreshAction.REREAD,
}
WAITING_ON_THE_USER = frozenset({Route.NEEDS_MFA, Route.NEEDS_RECONNECT})  # re-read on the slow cadence
AGGREGATED_ROUTES = frozenset(r for r, action in REFRESH_ACTIONS.items() if action is RefreshAction.AGGREGATE)


@dataclass(frozen=True)
class RouteRule:
    route: Route
    reason: str  # plain words for the end user and the data team
    connect_mode: ConnectMode | None = None  # set when the user is asked to act
    notify_after: timedelta | None = None  # None: never notify; zero: at once

    @property
    def refresh_action(self) -> "RefreshAction | None":
        """What the refresh scheduler may do for a member on this route (None: leave it alone)."""
        return REFRESH_ACTIONS.get(self.route)


AT_ONCE = timedelta(0)
DEGRADED_GRACE = timedelta(hours=24)


def _mfa(reason: str) -> RouteRule:
    return RouteRule(Route.NEEDS_MFA, reason, ConnectMode.UPDATE, AT_ONCE)


def _reconnect(reason: str) -> RouteRule:
    return RouteRule(Route.NEEDS_RECONNECT, reason, ConnectMode.RECONNECT, AT_ONCE)


def _degraded(reason: str, notify_after: timedelta) -> RouteRule:
    return RouteRule(Route.DEGRADED, reason, ConnectMode.RECONNECT, notify_after)


def _waiting(reason: str) -> RouteRule:
    return RouteRule(Route.IN_PROGRESS, reason)


ROUTES: dict[S, RouteRule] = {
    S.CONNECTED: RouteRule(Route.READY, "Connected and syncing."),
    S.CHALLENGED: _mfa("Your bank is asking a security question before we can sync."),
    S.REJECTED: _mfa("The answer to your bank's security question was not accepted; please try again."),
    S.EXPIRED: _mfa("Your bank's security question timed out before it was answered; please try again."),
    S.DENIED: _reconnect("Your bank did not accept the saved username or password; please enter them again."),
    S.PREVENTED: _reconnect("Sign-in failed several times, so we paused to protect your account; sign in again."),
    S.IMPAIRED: _reconnect("Your bank needs you to sign in again before we can sync."),
    S.IMPORTED: _reconnect("Please sign in to your bank again so your data can be imported."),
    S.LOCKED: _reconnect("Your bank has locked access; please unlock it on your bank's website, then reconnect."),
    S.IMPEDED: _reconnect("Your bank needs your attention on its website first (e.g. new terms), then reconnect."),
    S.DEGRADED: _degraded("This connection keeps failing at your bank; please reconnect it.", DEGRADED_GRACE),
    S.DISABLED: _degraded("Syncing with this connection has been disabled; please reconnect it.", AT_ONCE),
    S.CREATED: _waiting("Connecting for the first time."),
    S.PENDING: _waiting("Waiting for the bank to respond."),
    S.RESUMED: _waiting("Security answer received; syncing."),
    S.UPDATED: _waiting("New credentials received; syncing."),
    S.RECONNECTED: _waiting("Reconnected; syncing."),
    S.DELAYED: _waiting("Syncing is taking longer than usual."),
    S.DISCONNECTED: RouteRule(Route.INSTITUTION_SIDE, "The bank is not sending data right now; we will retry."),
    S.FAILED: RouteRule(Route.INSTITUTION_SIDE, "The last sync failed on the bank's side; we will retry."),
    S.DISCONTINUED: RouteRule(Route.TERMINAL, "This bank is no longer supported."),
    S.CLOSED: RouteRule(Route.TERMINAL, "This connection was closed."),
}  # fmt: skip

UNKNOWN = RouteRule(Route.TERMINAL, "Unrecognised connection status; held for review.")
NO_STATUS = RouteRule(Route.TERMINAL, "This member has no connection status (for example a manual account).")
# Not a status: MX no longer has the member (warehouse/retire.py). It stays here for good, whatever its last read.
RETIRED = RouteRule(Route.TERMINAL, "Removed at MX (deleted or replaced); no longer synced.")
SYNCING = _waiting("Syncing now.")


def route_for(connection_status: str | None, *, is_being_aggregated: bool = False) -> RouteRule:
    """The rule for a member's freshly read status. Never raises: an unknown status is held, not crashed on.

    A member that is still aggregating is in progress whatever its status says, except when the job is
    waiting on the user (CHALLENGED): MX keeps the job open while it waits for the MFA answer. Any other
    status read mid-job may still change before the job ends, so nobody is asked to act on it.
    """
    if connection_status is None:
        return NO_STATUS
    try:
        status = S(connection_status)
    except ValueError:
        return UNKNOWN
    rule = ROUTES[status]
    if is_being_aggregated and status is not S.CHALLENGED and rule.route is not Route.IN_PROGRESS:
        return SYNCING
    return rule
