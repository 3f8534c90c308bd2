"""Notification episodes: each member is told once per stretch of trouble, and again only after recovering.

An episode opens at the first fresh status read whose route asks something of the user (needs MFA, needs
reconnect, or degraded) and closes at the first fresh read that shows the member healthy, or that its
connection ended at MX (terminal: closed, discontinued, retired): nothing is left for the user to fix. Reads
in between that are merely in progress or institution-side neither close it nor notify. Within an episode the user is
notified at most once, as soon as the route's ``notify_after`` has passed since the episode opened (at once
for MX's user-actionable statuses; after a grace for DEGRADED, which our own bursts can cause and which often
clears by itself).

A notification that could not go out at once (say, the product backend was down) waits in the outbox. It goes
out only after a read that asks the user now (``Decision.asks_now``): while MX is working on the member, or
the trouble is on the bank's side, nobody is asked to act; it is cancelled only when its episode closes.
"""

from dataclasses import dataclass, replace
from datetime import datetime

from mx_pipeline.lifecycle.routes import Route, RouteRule

ASKS_THE_USER = frozenset({Route.NEEDS_MFA, Route.NEEDS_RECONNECT, Route.DEGRADED})
ENDS_AN_EPISODE = frozenset({Route.READY, Route.TERMINAL})


@dataclass(frozen=True)
class Episode:
    """One member's current stretch of trouble."""

    member_guid: str
    number: int  # 1, 2, ... per member: (member_guid, number) identifies an episode for dedup
    opened_at: datetime
    route: Route
    notified_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class Decision:
    episode: Episode | None  # the member's episode after this read (None: never had one)
    notify: bool  # the episode's notification is decided now (once per episode)
    asks_now: bool = False  # this read asks the user to act: the episode's notification may go out now


def advance(member_guid: str, previous: Episode | None, rule: RouteRule, observed_at: datetime) -> Decision:
    """Fold one fresh status read into the member's episode and decide whether to notify."""
    if rule.route in ENDS_AN_EPISODE:
        if previous is not None and previous.is_open:
            return Decision(replace(previous, closed_at=observed_at), notify=False)
        return Decision(previous, notify=False)
    if rule.route not in ASKS_THE_USER:
        return Decision(previous, notify=False)
    if previous is None or not previous.is_open:
        number = previous.number + 1 if previous else 1
        episode = Episode(member_guid, number, opened_at=observed_at, route=rule.route)
    else:
        episode = replace(previous, route=rule.route)
    due = rule.notify_after is not None and observed_at - episode.opened_at >= rule.notify_after
    if episode.notified_at is None and due:
        return Decision(replace(episode, notified_at=observed_at), notify=True, asks_now=True)
    return Decision(episode, notify=False, asks_now=due)
