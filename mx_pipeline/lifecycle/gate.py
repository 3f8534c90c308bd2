"""The status gate: every member's fresh status read -> its route, its episode, and whether to notify now.

Pure: the Dagster ``status_gate`` op reads its run's members from the warehouse (every member when the run is
not scoped), calls :func:`gate`, and writes back what it returns. Each call re-routes the members it is given
from scratch (statuses are not sequential), so a member that was CONNECTED yesterday and is CHALLENGED now is
simply on the MFA route now; members it is not given keep their routes and episodes. The one exception
is a member MX no longer has: retired, it stays terminal with the reason it was retired for.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from mx_pipeline.lifecycle.episodes import Episode, advance
from mx_pipeline.lifecycle.routes import DEGRADED_GRACE, RETIRED, Route, RouteRule, route_for


@dataclass(frozen=True)
class MemberState:
    """A member's latest status read, with whose it is and where it connects."""

    member_guid: str
    user_guid: str
    connection_status: str | None
    is_being_aggregated: bool | None = None
    user_id: str | None = None  # our end user's id, when we know it
    institution: str | None = None
    retired_reason: str | None = None  # set once MX no longer has the member (warehouse/retire.py)

    @property
    def is_retired(self) -> bool:
        return self.retired_reason is not None


@dataclass(frozen=True)
class RoutedMember:
    member: MemberState
    rule: RouteRule

    @property
    def route(self) -> Route:
        return self.rule.route


@dataclass(frozen=True)
class GateResult:
    routed: dict[Route, list[RoutedMember]]  # only routes with members in them
    episodes: list[Episode]  # episodes opened, changed or closed by this pass (to store)
    # Every member whose read asks its user to act now (its episode notified): only their notifications go out,
    # each saying what the latest read asks.
    asking_now: list[tuple[RoutedMember, Episode]] = field(default_factory=list)

    def members_on(self, route: Route) -> list[RoutedMember]:
        return self.routed.get(route, [])


def gate(
    members: Iterable[MemberState],
    episodes: Mapping[str, Episode],
    *,
    now: datetime,
    degraded_grace: timedelta = DEGRADED_GRACE,
) -> GateResult:
    """Route each member, fold the read into its latest episode (by member guid), and pick who to notify.

    ``degraded_grace``: how long a DEGRADED member is left to recover (and our back-off to work) before its
    user is asked to reconnect.
    """
    routed: dict[Route, list[RoutedMember]] = defaultdict(list)
    changed: list[Episode] = []
    asking_now: list[tuple[RoutedMember, Episode]] = []
    for member in members:
        rule = _rule_for(member)
        if rule.route is Route.DEGRADED and rule.notify_after:  # DISABLED notifies at once, whatever the grace
            rule = replace(rule, notify_after=degraded_grace)
        routed_member = RoutedMember(member, rule)
        routed[rule.route].append(routed_member)
        previous = episodes.get(member.member_guid)
        decision = advance(member.member_guid, previous, rule, now)
        if decision.episode is not None and decision.episode != previous:
            changed.append(decision.episode)
        if decision.asks_now:
            asking_now.append((routed_member, decision.episode))
    return GateResult(dict(routed), changed, asking_now)


def _rule_for(member: MemberState) -> RouteRule:
    if member.is_retired:
        return replace(RETIRED, reason=member.retired_reason)
    return route_for(member.connection_status, is_being_aggregated=bool(member.is_being_aggregated))
