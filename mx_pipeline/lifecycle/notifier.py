"""Reconnect notifications and the pluggable ways they reach the product.

The pipeline always writes each notification to the ``ops`` outbox first; a notifier then delivers it. The
default logs it (by guid, never by name or email): the notification is then ``logged``, never ``delivered``,
because nobody was told. ``HttpNotifier`` POSTs it as JSON to the product backend, which owns the user's
inbox, email or push channel: ``delivered`` means the backend answered 2xx. The outbox keeps a notification's
reconnect link by id; only the JSON the backend receives carries its URL, rebuilt from the id (and the link
secret) at each delivery, and no log line ever shows it. A run delivers within a time
budget (``deliver_within``); each notifier says how long one delivery can take at most, so the run's lease on
what it sends can outlive it.
"""

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import requests

from mx_pipeline.lifecycle.episodes import Episode
from mx_pipeline.lifecycle.gate import RoutedMember

log = logging.getLogger(__name__)


class NotificationState(StrEnum):
    """Where a notification in the outbox stands (``ops.reconnect_notifications.state``)."""

    PENDING = "pending"  # stored, not yet accepted; sent by the next run whose read asks the user to act
    DELIVERED = "delivered"  # the product backend answered 2xx
    LOGGED = "logged"  # no backend configured: written to the log only, nobody was told
    DEAD = "dead"  # every attempt failed: the data team must look (member_health shows it)
    CANCELLED = "cancelled"  # its episode closed first: the member recovered, its connection ended, or was retired


@dataclass(frozen=True)
class Notification:
    """What the user is told: which connection, what is wrong in plain words, and where to fix it."""

    notification_id: str  # "<member_guid>:<episode number>": one per member per episode
    user_id: str | None
    user_guid: str
    member_guid: str
    institution: str | None
    connection_status: str | None
    route: str
    reason: str
    connect_mode: str
    link_id: str  # its reconnect link (connect/link_store.py), as the URL is never stored
    created_at: datetime

    def as_json(self, reconnect_url: str) -> dict:
        """What the product backend receives; ``reconnect_url``: the link to the connect service, never a
        (short-lived) widget URL."""
        fields = {k: v for k, v in asdict(self).items() if k != "link_id"}
        return fields | {"reconnect_url": reconnect_url, "created_at": self.created_at.isoformat()}

    @classmethod
    def for_episode(cls, routed: RoutedMember, episode: Episode, link_id: str, created_at: datetime) -> "Notification":
        """The one notification of ``episode``, telling the member's user what its route asks of them."""
        member, rule = routed.member, routed.rule
        return cls(
            notification_id=f"{member.member_guid}:{episode.number}",
            user_id=member.user_id,
            user_guid=member.user_guid,
            member_guid=member.member_guid,
            institution=member.institution,
            connection_status=member.connection_status,
            route=rule.route.value,
            reason=rule.reason,
            connect_mode=rule.connect_mode.value,
            link_id=link_id,
            created_at=created_at,
        )


class Notifier(Protocol):
    longest_delivery_seconds: float  # one delivery, every retry included, never takes longer

    def deliver(self, notification: Notification) -> NotificationState:
        """Deliver (``DELIVERED``), only log (``LOGGED``), or raise; the outbox keeps the notification either way."""


def deliver_within(
    notifications: Iterable[Notification],
    notifier: Notifier,
    *,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[Notification, NotificationState | None, str | None]]:
    """Deliver in order, starting none once ``budget_seconds`` are spent: (notification, outcome, error) each.

    The caller records each as it comes (before the next is sent); the ones never started are left to it.
    """
    started = clock()
    for notification in notifications:
        if clock() - started >= budget_seconds:
            return
        try:
            outcome, error = NotificationState(notifier.deliver(notification)), None
        except Exception as exc:  # a notifier of any kind may fail; the outbox keeps it for the next run
            outcome, error = None, f"{type(exc).__name__}: {exc}"
        yield notification, outcome, error


class LogNotifier:
    """No product backend configured: the notification is logged, and says so (``LOGGED``)."""

    longest_delivery_seconds = 0.0

    def deliver(self, notification: Notification) -> NotificationState:
        log.info(
            "notify user %s: member %s is %s (%s): %s",
            notification.user_guid,
            notification.member_guid,
            notification.connection_status,
            notification.connect_mode,
            notification.reason,
        )
        return NotificationState.LOGGED


HTTP_ATTEMPTS = 4


def longest_http_delivery(*, attempts: int = HTTP_ATTEMPTS, timeout: float, backoff: float) -> float:
    """Every attempt timing out, with every back-off between them."""
    return attempts * timeout + sum(backoff * 2**i for i in range(attempts - 1))


class DeliveryFailed(Exception):
    """The product backend did not accept a notification after every retry."""


class HttpNotifier:
    """POSTs each notification as JSON; retries 5xx, 429 and network errors with exponential backoff.

    ``link_url`` turns a notification's link id into its reconnect URL.
    """

    def __init__(
        self,
        url: str,
        *,
        link_url: Callable[[str], str],
        token: str | None = None,
        attempts: int = HTTP_ATTEMPTS,
        backoff: float = 0.5,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url, self.attempts, self.backoff, self.timeout, self._sleep = url, attempts, backoff, timeout, sleep
        self._link_url = link_url
        self._session = requests.Session()
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    @property
    def longest_delivery_seconds(self) -> float:
        return longest_http_delivery(attempts=self.attempts, timeout=self.timeout, backoff=self.backoff)

    def deliver(self, notification: Notification) -> NotificationState:
        # The id doubles as an idempotency key, so a retried POST that did land is not shown twice.
        headers = {"Idempotency-Key": notification.notification_id}
        problem, body = "", notification.as_json(self._link_url(notification.link_id))
        for attempt in range(1, self.attempts + 1):
            try:
                # Never followed: a redirect would carry the user's reconnect URL (a credential) wherever it points.
                response = self._session.post(
                    self.url, json=body, headers=headers, timeout=self.timeout, allow_redirects=False
                )
            except requests.RequestException as exc:
                problem = type(exc).__name__
            else:
                if 200 <= response.status_code < 300:
                    return NotificationState.DELIVERED
                problem = f"HTTP {response.status_code}"
                if response.is_redirect:
                    problem += " (redirects are not followed: set MX_PIPELINE_NOTIFY_URL to the final address)"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the backend refused this notification; repeating it cannot help
            if attempt < self.attempts:
                self._sleep(self.backoff * 2 ** (attempt - 1))
        raise DeliveryFailed(f"notification {notification.notification_id} not delivered: {problem}")
