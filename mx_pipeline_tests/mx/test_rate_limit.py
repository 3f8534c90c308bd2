"""The limiter paces requests globally and spaces them per user and per member, across threads."""

import threading

import pytest

from mx_pipeline.mx import RateLimiter, RateLimits


class FakeTime:
    """A clock whose sleep advances it, so tests observe send times without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def limiter(time, **limits):
    defaults = dict(requests_per_second=10, burst=1, per_user_interval=0, per_member_interval=0)
    return RateLimiter(RateLimits(**(defaults | limits)), clock=time.clock, sleep=time.sleep)


def send_times(time, lim, keys):
    times = []
    for user, member in keys:
        lim.acquire(user_guid=user, member_guid=member)
        times.append(round(time.now - 1000.0, 6))
    return times


def test_requests_beyond_the_burst_are_spaced_at_the_global_rate():
    time = FakeTime()
    lim = limiter(time, requests_per_second=10, burst=3)
    assert send_times(time, lim, [(None, None)] * 6) == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])


def test_the_budget_refills_with_time():
    time = FakeTime()
    lim = limiter(time, requests_per_second=10, burst=2)
    assert send_times(time, lim, [(None, None)] * 3) == pytest.approx([0, 0, 0.1])
    time.now += 10
    assert send_times(time, lim, [(None, None)] * 2) == pytest.approx([10.1, 10.1])


def test_one_member_is_never_asked_twice_within_its_spacing():
    time = FakeTime()
    lim = limiter(time, requests_per_second=1000, burst=100, per_member_interval=2.0)
    keys = [(None, "MBR-a"), (None, "MBR-a"), (None, "MBR-b"), (None, "MBR-a")]
    assert send_times(time, lim, keys) == pytest.approx([0, 2.0, 2.0, 4.0])


def test_a_member_waiting_for_its_spacing_does_not_hold_up_others():
    lim = RateLimiter(RateLimits(requests_per_second=1000, burst=100, per_member_interval=1.0))
    lim.acquire(member_guid="MBR-a")
    waiter = threading.Thread(target=lim.acquire, kwargs={"member_guid": "MBR-a"})
    waiter.start()
    waited_for_b = lim.acquire(member_guid="MBR-b")  # while a's second request sleeps out its second
    assert waiter.is_alive() and waited_for_b == 0
    waiter.join()


def test_spacing_counts_from_the_actual_send_time_when_the_global_budget_delays_a_request():
    time = FakeTime()
    lim = limiter(time, requests_per_second=1, burst=1, per_member_interval=1.5)
    keys = [(None, "MBR-x"), (None, "MBR-a"), (None, "MBR-a")]
    # a goes at 1.0 (global), so its next request may go no sooner than 2.5, not 1.5 + global.
    assert send_times(time, lim, keys) == pytest.approx([0, 1.0, 2.5])


def test_users_are_spaced_independently_of_members():
    time = FakeTime()
    lim = limiter(time, requests_per_second=1000, burst=100, per_user_interval=0.5)
    keys = [("USR-1", "MBR-1"), ("USR-1", "MBR-2"), ("USR-2", "MBR-3")]
    assert send_times(time, lim, keys) == pytest.approx([0, 0.5, 0.5])


def test_threads_sharing_a_limiter_never_exceed_the_global_rate():
    lim = RateLimiter(RateLimits(requests_per_second=200, burst=1, per_member_interval=0))
    sent, lock = [], threading.Lock()

    def worker():
        for _ in range(10):
            lim.acquire()
            with lock:
                sent.append(lim._clock())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent.sort()
    # 40 requests at 200/s take at least 39 intervals of 5 ms.
    assert sent[-1] - sent[0] >= 39 * 0.005 * 0.95


class SpacingInMemory:
    """The shared spacing's contract (``SharedSpacing``) on the fake clock: a key's next slot, per key."""

    def __init__(self, time: FakeTime) -> None:
        self.time, self.next_slot = time, {}

    def ready_in(self, spacings) -> float:
        return max([self.next_slot.get(key, 0.0) - self.time.now for key, _ in spacings] + [0.0])

    def reserve(self, spacings) -> float:
        if wait := self.ready_in(spacings):
            return wait
        self.next_slot |= {key: self.time.now + seconds for key, seconds in spacings}
        return 0.0


class RecordingBudget:
    """A shared budget that lets every request go, noting when it was asked."""

    def __init__(self, time: FakeTime, waits: float = 0.0) -> None:
        self.time, self.waits, self.asked = time, waits, []
        self.spacing = SpacingInMemory(time)

    def acquire(self) -> None:
        self.asked.append(round(self.time.now - 1000.0, 6))
        self.time.sleep(self.waits)


def test_with_a_shared_budget_the_spacing_is_waited_out_before_the_budget_is_spent_and_the_request_goes_at_once():
    time = FakeTime()
    budget = RecordingBudget(time, waits=0.3)  # other processes spent it: 0.3 s to wait each time
    lim = RateLimiter(
        RateLimits(requests_per_second=1, burst=1, per_member_interval=1.0),
        clock=time.clock,
        sleep=time.sleep,
        shared=budget,
    )

    sent = send_times(time, lim, [(None, "MBR-a"), (None, "MBR-a"), (None, "MBR-b")])

    assert budget.asked == pytest.approx([0, 1.3, 1.6])  # never spent while the member's spacing still ran
    # Sent as soon as the budget allows: the local budget (1/s) is the shared one's to keep, not a second wait;
    # and a's spacing counts from its send (0.3), so its second request is asked for at 1.3, sent at 1.6.
    assert sent == pytest.approx([0.3, 1.6, 1.9])


class SlotTakenMeanwhile(SpacingInMemory):
    """Another process sends a request for ``key`` at ``at``, while ours waits for the budget."""

    def __init__(self, time: FakeTime, key: str, at: float, seconds: float) -> None:
        super().__init__(time)
        self.taken = {key: 1000.0 + at + seconds}

    def reserve(self, spacings) -> float:
        self.next_slot |= self.taken
        self.taken = {}
        return super().reserve(spacings)


def test_a_slot_another_process_took_meanwhile_is_waited_for_and_the_budget_spent_again():
    time = FakeTime()
    budget = RecordingBudget(time, waits=0.3)
    budget.spacing = SlotTakenMeanwhile(time, "member:MBR-a", at=0.1, seconds=1.0)
    lim = RateLimiter(RateLimits(per_member_interval=1.0), clock=time.clock, sleep=time.sleep, shared=budget)

    waited = lim.acquire(member_guid="MBR-a")

    assert budget.asked == pytest.approx([0, 1.1])  # spent again once the other request's spacing ran out
    assert waited == pytest.approx(1.4)
    assert budget.spacing.next_slot["member:MBR-a"] - 1000.0 == pytest.approx(2.4)  # a full second from our send


def test_a_process_pacing_mx_by_itself_keeps_no_once_per_interval_slots():
    lim = RateLimiter(RateLimits())  # its scheduler's records space what it asks once per interval
    assert [lim.take_once("aggregation:MBR-1", 3 * 3600.0) for _ in range(2)] == [0, 0]


def test_nonsense_limits_are_rejected():
    with pytest.raises(ValueError):
        RateLimiter(RateLimits(requests_per_second=0))
