"""Refresh a batch of members: ask MX to aggregate each, then poll them together until done or out of time.

Requests go through the client, whose limiter spaces them globally and per member; polls back off from
``poll_first_seconds`` to ``poll_max_seconds``, so a slow institution costs a few reads a minute, not a burst.
Every member ends with an :class:`Attempt` that says what happened in words the scheduler acts on:

- ``refreshed``: connected, and MX's last successful aggregation moved forward;
- ``declined``: connected, but MX kept the recent data (its ~3 h throttle); not a failure;
- ``conflict``: MX answered 409, another job type is running on the member; not a failure;
- ``needs_user``: the aggregation ended needing the user (MFA, credentials, degraded): routed, not retried;
- ``failed``: an institution-side failure or an MX error; counts toward the back-off;
- ``timed_out``: still aggregating when the run stopped waiting; counts toward the back-off;
- ``held``: a terminal or unknown status; nothing to retry;
- ``reread``: a member whose status was only re-read: DEGRADED (no aggregation is asked of a degraded one) or
  waiting on its user (watched on a slow cadence, so it recovers even if the event that would tell us is lost);
- ``reread_failed``: such a re-read that MX answered with an error; tried again at the next interval or cadence;
- ``throttled``: held back here, MX never asked: another worker asked MX to aggregate the member less than the
  policy's minimum interval ago (MX's ~3 h throttle, kept across workers through the shared rate budget).

MX refusing our credentials (:class:`AuthError`) is no member's outcome: it stops the batch at once.

A re-read is a status read, never an aggregation, and a throttled member was not asked at all: neither counts
toward the aggregation budget, the cap or the back-off.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mx_pipeline.lifecycle.episodes import ASKS_THE_USER
from mx_pipeline.lifecycle.routes import RefreshAction, Route, route_for
from mx_pipeline.mx import AuthError, Conflict, MxClient, MxError, Throttled
from mx_pipeline.mx.records import MemberStatus
from mx_pipeline.refresh.policy import RefreshPolicy

AGGREGATE, REREAD = RefreshAction.AGGREGATE, RefreshAction.REREAD
FAILURES = frozenset({"failed", "timed_out"})  # the outcomes that back a member off
REREADS = frozenset({"reread", "reread_failed"})  # status reads
NOT_AGGREGATIONS = REREADS | {"throttled"}  # never counted as aggregations: status reads, and those never sent


@dataclass(frozen=True)
class RefreshTarget:
    member_guid: str
    user_guid: str
    action: str = AGGREGATE  # or REREAD
    last_success: datetime | None = None  # MX's successfully_aggregated_at before this attempt


@dataclass(frozen=True)
class Attempt:
    member_guid: str
    user_guid: str
    requested_at: datetime
    finished_at: datetime
    outcome: str
    connection_status: str | None
    api_calls: int
    detail: str | None = None


def classify(status: MemberStatus, last_success: datetime | None) -> str:
    """What a finished (or abandoned) aggregation's status read means for the scheduler."""
    rule = route_for(status.connection_status, is_being_aggregated=bool(status.is_being_aggregated))
    if rule.route is Route.READY:
        done = status.successfully_aggregated_at
        return "refreshed" if done and (last_success is None or done > last_success) else "declined"
    if rule.route in ASKS_THE_USER:
        return "needs_user"
    if rule.route is Route.IN_PROGRESS:
        return "timed_out"
    if rule.route is Route.INSTITUTION_SIDE:
        return "failed"
    return "held"


def refresh_batch(
    client: MxClient,
    targets: Iterable[RefreshTarget],
    policy: RefreshPolicy,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    throttle: bool = True,
) -> list[Attempt]:
    """Aggregate (or re-read) every target and wait for the aggregations; one :class:`Attempt` each.

    ``throttle``: ask MX to aggregate a member at most once per the policy's minimum interval across every worker
    (off only for the data team's explicit override).
    """
    attempts: list[Attempt] = []
    waiting: dict[str, _Pending] = {}
    every = policy.min_interval.total_seconds() if throttle else 0.0
    for target in targets:
        pending = _Pending(target, _now())
        if target.action == REREAD:
            attempts.append(_reread(client, pending))
            continue
        try:
            pending.calls += 1
            member = client.aggregate_member(target.user_guid, target.member_guid, at_most_every=every)
        except Throttled as exc:
            attempts.append(pending.held_back(exc))
            continue
        except Conflict as exc:
            attempts.append(pending.fail("conflict", exc))
            continue
        except AuthError:
            raise
        except MxError as exc:
            attempts.append(pending.fail("failed", exc))
            continue
        if member.is_being_aggregated:
            waiting[target.member_guid] = pending
        else:  # declined (recent data) or done at once: one read says which
            attempts.append(_read_and_finish(client, pending))
    deadline = clock() + policy.poll_timeout_seconds
    interval = policy.poll_first_seconds
    while waiting and clock() < deadline:
        sleep(min(interval, max(0.0, deadline - clock())))
        interval = min(interval * 2, policy.poll_max_seconds)
        for guid, pending in list(waiting.items()):
            try:
                status = pending.read(client)
            except AuthError:
                raise
            except MxError as exc:
                attempts.append(pending.fail("failed", exc))
                del waiting[guid]
                continue
            if not status.is_being_aggregated:
                attempts.append(pending.finish(status))
                del waiting[guid]
    for pending in waiting.values():
        attempts.append(_read_and_finish(client, pending))  # out of time: its last word is "timed_out"
    return attempts


class _Pending:
    def __init__(self, target: RefreshTarget, requested_at: datetime) -> None:
        self.target, self.requested_at, self.calls = target, requested_at, 0

    def read(self, client: MxClient) -> MemberStatus:
        self.calls += 1
        return client.read_member_status(self.target.user_guid, self.target.member_guid)

    def finish(self, status: MemberStatus, outcome: str | None = None) -> Attempt:
        return self._attempt(outcome or classify(status, self.target.last_success), status.connection_status)

    def fail(self, outcome: str, error: MxError) -> Attempt:
        return self._attempt(outcome, None, f"{type(error).__name__}: {error}")

    def held_back(self, throttled: Throttled) -> Attempt:
        self.calls -= 1  # never sent
        detail = (
            f"another run asked MX to aggregate it within the minimum interval; next in {throttled.retry_after:.0f} s"
        )
        return self._attempt("throttled", None, detail)

    def _attempt(self, outcome: str, status: str | None, detail: str | None = None) -> Attempt:
        t = self.target
        return Attempt(t.member_guid, t.user_guid, self.requested_at, _now(), outcome, status, self.calls, detail)


def _reread(client: MxClient, pending: "_Pending") -> Attempt:
    try:
        return pending.finish(pending.read(client), outcome="reread")
    except AuthError:
        raise
    except MxError as exc:
        return pending.fail("reread_failed", exc)


def _read_and_finish(client: MxClient, pending: _Pending) -> Attempt:
    try:
        return pending.finish(pending.read(client))
    except AuthError:
        raise
    except MxError as exc:
        return pending.fail("failed", exc)


def _now() -> datetime:
    return datetime.now(UTC)
