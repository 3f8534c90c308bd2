"""One notification per member per episode of trouble, whatever order MX's statuses arrive in."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from mx_pipeline.lifecycle.episodes import ASKS_THE_USER, advance
from mx_pipeline.lifecycle.routes import Route, route_for
from mx_pipeline.mx.statuses import ConnectionStatus

T0 = datetime(2026, 11, 25, 8, tzinfo=UTC)


def fold(statuses, step=timedelta(hours=1)):
    """Fold reads one hour apart into the member's episode: (index, status, decision) for each read."""
    episode = None
    for i, status in enumerate(statuses):
        decision = advance("MBR-1", episode, route_for(status), T0 + i * step)
        episode = decision.episode
        yield i, status, decision


def replay(statuses, step=timedelta(hours=1)):
    """The last episode, and which reads notified (index, status, episode number)."""
    decisions = list(fold(statuses, step))
    notified = [(i, status, d.episode.number) for i, status, d in decisions if d.notify]
    return (decisions[-1][2].episode if decisions else None), notified


def test_a_challenge_notifies_once_while_it_lasts():
    _, notified = replay(["CONNECTED", "CHALLENGED", "CHALLENGED", "CHALLENGED"])
    assert notified == [(1, "CHALLENGED", 1)]


def test_recovering_and_falling_again_is_a_new_episode_with_a_new_notification():
    episode, notified = replay(["CHALLENGED", "CONNECTED", "CHALLENGED"])
    assert notified == [(0, "CHALLENGED", 1), (2, "CHALLENGED", 2)]
    assert episode.number == 2 and episode.is_open


def test_a_callback_alone_does_not_close_an_episode_only_a_healthy_read_does():
    # RESUMED/UPDATED follow the user's Connect session; the member is not healthy until MX says CONNECTED.
    episode, notified = replay(["DENIED", "UPDATED", "RESUMED", "DENIED"])
    assert notified == [(0, "DENIED", 1)] and episode.is_open


def test_degraded_waits_out_its_grace_before_asking_the_user():
    _, notified = replay(["DEGRADED"] * 30)
    assert notified == [(24, "DEGRADED", 1)]  # reads are an hour apart: 24 h of grace


def test_degraded_that_clears_by_itself_never_bothers_the_user():
    _, notified = replay(["DEGRADED"] * 5 + ["CONNECTED"])
    assert notified == []


def test_disabled_asks_at_once():
    assert replay(["DISABLED"])[1] == [(0, "DISABLED", 1)]


def test_degraded_turning_into_a_credential_problem_asks_at_once():
    assert replay(["DEGRADED", "DENIED"])[1] == [(1, "DENIED", 1)]


def test_a_connection_that_ends_at_mx_closes_its_episode_so_nobody_is_asked_to_fix_it():
    # CLOSED or DISCONTINUED: there is nothing left for the user to reconnect; a pending notification is cancelled.
    for terminal in ("CLOSED", "DISCONTINUED"):
        _, notified = replay(["DENIED", terminal, "DENIED"])
        assert notified == [(0, "DENIED", 1), (2, "DENIED", 2)]
        closed = advance("MBR-1", replay(["DENIED"])[0], route_for(terminal), T0 + timedelta(hours=1)).episode
        assert not closed.is_open and closed.number == 1


def test_institution_side_trouble_never_notifies():
    assert replay(["FAILED", "DISCONNECTED", "FAILED"]) == (None, [])


def reads_asking_now(statuses, step=timedelta(hours=1)):
    """Which reads (by index) let the episode's notification go out: the outbox sends it only after one."""
    return [i for i, _, decision in fold(statuses, step) if decision.asks_now]


def test_a_notification_goes_out_only_after_a_read_that_asks_the_user_not_while_mx_works():
    # The user retries in Connect (UPDATED, then a job mid-way), and MX ends it DENIED again.
    assert reads_asking_now(["DENIED", "UPDATED", "PENDING", "FAILED", "DENIED"]) == [0, 4]


def test_a_notification_waits_out_a_degraded_grace_like_a_degraded_episode_would():
    # Told to reconnect (DENIED), then DEGRADED: not sent again before 24 h since the episode opened.
    statuses = ["DENIED"] + ["DEGRADED"] * 25
    assert reads_asking_now(statuses) == [0, 24, 25]


STATUS_OR_NOISE = st.one_of(st.sampled_from([s.value for s in ConnectionStatus]), st.none(), st.just("BRAND_NEW"))


@given(st.lists(STATUS_OR_NOISE, max_size=80))
def test_at_most_one_notification_per_episode_for_any_sequence(statuses):
    _, notified = replay(statuses)
    episode_numbers = [number for _, _, number in notified]
    assert len(episode_numbers) == len(set(episode_numbers))
    for _, status, _ in notified:
        assert route_for(status).route in ASKS_THE_USER


@given(st.lists(STATUS_OR_NOISE, max_size=80))
def test_every_user_actionable_read_is_covered_by_a_notification(statuses):
    # Liveness: an episode that saw a status needing the user at once has notified by then.
    episode, notified = None, set()
    for i, status in enumerate(statuses):
        rule = route_for(status)
        decision = advance("MBR-1", episode, rule, T0 + i * timedelta(hours=1))
        episode = decision.episode
        if decision.notify:
            notified.add(episode.number)
        if rule.route in {Route.NEEDS_MFA, Route.NEEDS_RECONNECT}:
            assert episode.number in notified
