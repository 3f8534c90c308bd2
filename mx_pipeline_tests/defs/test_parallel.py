"""Members read side by side (``defs/ingest/parallel.py``): bounded, complete, and a bug still fails the step.

Overlap is proven with gates, never with timings: a read waits until as many reads as the bound are in flight
at once, which happens only if the pool really runs them side by side.
"""

import threading

import pytest

from mx_pipeline.defs.ingest.parallel import read_each

DEADLINE = 30.0  # seconds a gate waits before it says the reads never overlapped (never reached when they do)


class InFlight:
    """Counts reads in flight; each read waits until ``gate_at`` of them are in flight together."""

    def __init__(self, gate_at: int) -> None:
        self.gate_at, self.now, self.most = gate_at, 0, 0
        self._lock, self._open = threading.Lock(), threading.Event()

    def __enter__(self) -> "InFlight":
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
            if self.now >= self.gate_at:
                self._open.set()
        if not self._open.wait(DEADLINE):
            raise AssertionError(f"{self.gate_at} reads were never in flight at once")
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self.now -= 1


def test_reads_overlap_up_to_the_bound_and_never_beyond_and_every_member_is_read_once():
    in_flight, members = InFlight(gate_at=4), [f"MBR-{i:02d}" for i in range(13)]

    def read(member: str) -> str:
        with in_flight:
            return member.lower()

    read_back = dict(read_each(read, members, concurrency=4))
    assert read_back == {m: m.lower() for m in members}
    assert in_flight.most == 4


def test_with_concurrency_1_the_members_are_read_in_order_in_the_callers_thread():
    seen = []

    def read(member: str) -> int:
        seen.append((member, threading.current_thread()))
        return len(seen)

    assert list(read_each(read, ["MBR-b", "MBR-a", "MBR-c"], concurrency=1)) == [
        ("MBR-b", 1),
        ("MBR-a", 2),
        ("MBR-c", 3),
    ]
    assert seen == [(m, threading.main_thread()) for m in ("MBR-b", "MBR-a", "MBR-c")]


def test_a_bug_in_one_read_fails_the_caller_once_the_reads_beside_it_finished():
    members = [f"MBR-{i:02d}" for i in range(10)]
    in_flight, finished = InFlight(gate_at=3), []

    def read(member: str) -> None:
        with in_flight:
            if member == "MBR-00":
                raise KeyError("a bug")
        finished.append(member)

    with pytest.raises(KeyError, match="a bug"):
        list(read_each(read, members, concurrency=3))
    assert in_flight.now == 0  # nothing still running once the error reached the caller
    assert {"MBR-01", "MBR-02"} <= set(finished)  # started beside the bug: they finished and kept what they read
