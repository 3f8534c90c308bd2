"""The spool keeps every accepted event, once, in arrival order, across crashes."""

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta

from mx_pipeline.connect.spool import DEDUPE_WINDOW, Spool


def test_events_are_handed_over_in_arrival_order(tmp_path):
    spool = Spool(tmp_path)
    for n in range(5):
        spool.append("mx_webhook", f"key-{n}", json.dumps({"n": n}))
    assert [json.loads(e.body)["n"] for e in spool.pending()] == [0, 1, 2, 3, 4]


def test_a_redelivered_event_is_spooled_once(tmp_path):
    spool = Spool(tmp_path)
    assert spool.append("mx_webhook", "same", "{}") is True
    assert spool.append("mx_webhook", "same", "{}") is False
    assert len(spool.pending()) == 1


def test_the_same_key_of_another_kind_is_another_event(tmp_path):
    spool = Spool(tmp_path)
    assert spool.append("mx_webhook", "k", "{}") and spool.append("connect_callback", "k", "{}")


def test_acknowledged_events_leave_pending_and_are_kept_for_audit(tmp_path):
    spool = Spool(tmp_path)
    for n in range(3):
        spool.append("mx_webhook", str(n), "{}")
    first_two = spool.pending(limit=2)
    spool.acknowledge(first_two)
    assert [e.key for e in spool.pending()] == ["2"]
    assert len(os.listdir(tmp_path / "drained")) == 2
    assert spool.append("mx_webhook", "0", "{}") is False  # still a duplicate after draining


def test_an_event_survives_the_process_being_killed_right_after_append(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from mx_pipeline.connect.spool import Spool
        Spool({str(tmp_path)!r}).append("mx_webhook", "k1", '{{"type": "CONNECTION_STATUS"}}')
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == -9
    (event,) = Spool(tmp_path).pending()
    assert json.loads(event.body) == {"type": "CONNECTION_STATUS"}


def test_bytes_that_are_not_utf8_are_kept_exactly(tmp_path):
    raw = b'{"x": "\xff\xfe"}'
    Spool(tmp_path).append("mx_webhook", "k", raw.decode("utf-8", errors="surrogateescape"))
    (event,) = Spool(tmp_path).pending()
    assert event.body.encode("utf-8", errors="surrogateescape") == raw


def test_a_key_or_member_holding_a_lone_surrogate_is_spooled_not_raised(tmp_path):
    spool = Spool(tmp_path)
    assert spool.append("connect_callback", "USR-1:MBR-\ud800", "{}", member="MBR-\ud800") is True
    assert spool.append("connect_callback", "USR-1:MBR-\ud800", "{}", member="MBR-\ud800") is False  # redelivery
    (event,) = spool.pending()
    assert event.key == "USR-1:MBR-\ud800"


def test_raw_gives_back_the_bytes_received_whatever_they_are(tmp_path):
    received = [b'{"x": "\xff\xfe"}', b"\xed\xa0\x80 an encoded surrogate", "caf\u00e9 \U0001f600".encode()]
    for n, raw in enumerate(received):
        Spool(tmp_path).append("mx_webhook", str(n), raw.decode("utf-8", errors="surrogateescape"))
    assert [event.raw for event in Spool(tmp_path).pending()] == received


class Clock:
    """A clock tests move by hand (nanoseconds since the epoch, like ``time.time_ns``)."""

    def __init__(self, start_ns: int = 1_764_072_000 * 10**9) -> None:
        self.ns = start_ns

    def __call__(self) -> int:
        return self.ns

    def advance(self, **delta) -> None:
        self.ns += int(timedelta(**delta).total_seconds() * 10**9)


def test_the_dedupe_window_outlasts_mx_retrying_for_a_day():
    mx_retries_for = timedelta(hours=24)
    assert mx_retries_for < DEDUPE_WINDOW


def test_the_same_key_after_the_window_is_a_new_event(tmp_path):
    clock = Clock()
    spool = Spool(tmp_path, clock=clock)
    assert spool.append("mx_webhook", "same-bytes", "{}") is True
    clock.advance(hours=25)
    assert spool.append("mx_webhook", "same-bytes", "{}") is False  # MX still retrying: a redelivery
    clock.advance(hours=2)
    assert spool.append("mx_webhook", "same-bytes", "{}") is True  # 27 h after the first: a new episode
    assert [e.received_at_ns for e in spool.pending()] == [clock.ns - 27 * 3600 * 10**9, clock.ns]


def test_the_window_is_configurable(tmp_path):
    clock = Clock()
    spool = Spool(tmp_path, clock=clock, dedupe_window=timedelta(minutes=5))
    spool.append("mx_webhook", "k", "{}")
    clock.advance(minutes=6)
    assert spool.append("mx_webhook", "k", "{}") is True


def test_key_markers_and_drained_files_past_the_window_are_pruned(tmp_path):
    clock = Clock()
    spool = Spool(tmp_path, clock=clock)
    spool.append("mx_webhook", "old", "{}")
    spool.acknowledge(spool.pending())
    clock.advance(hours=20)
    spool.append("mx_webhook", "recent", "{}")
    spool.acknowledge(spool.pending())
    spool.append("mx_webhook", "still-pending", "{}")
    clock.advance(hours=7)  # "old" is 27 h old, "recent" 7 h
    assert spool.prune() == 2  # the old marker and the old drained file
    assert len(os.listdir(tmp_path / "keys")) == 2
    assert [json.loads((tmp_path / "drained" / n).read_text())["key"] for n in os.listdir(tmp_path / "drained")] == [
        "recent"
    ]
    clock.advance(days=30)
    spool.prune()
    assert [e.key for e in spool.pending()] == ["still-pending"]  # never pruned before it is drained


def test_the_same_key_after_another_event_of_the_member_is_a_new_event_even_within_the_window(tmp_path):
    clock = Clock()
    spool = Spool(tmp_path, clock=clock)
    assert spool.append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1") is True
    clock.advance(hours=1)  # the user answers the MFA question
    assert spool.append("mx_webhook", "sha-of-connected", "{}", member="MBR-1") is True
    clock.advance(hours=20)  # the next daily aggregation: the bank asks again, MX sends the very same bytes
    assert spool.append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1") is True
    assert spool.append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1") is False  # now a redelivery
    assert [e.key for e in spool.pending()] == ["sha-of-challenged", "sha-of-connected", "sha-of-challenged"]


def test_the_same_key_stays_a_redelivery_while_it_is_the_latest_event_of_its_member(tmp_path):
    clock = Clock()
    spool = Spool(tmp_path, clock=clock)
    spool.append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1")
    clock.advance(hours=2)
    spool.append("mx_webhook", "sha-of-connected", "{}", member="MBR-2")  # another member's news changes nothing
    spool.append("user_registered", "user-1:USR-1", "{}")
    clock.advance(hours=20)
    assert spool.append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1") is False


def test_any_kind_of_event_for_the_member_in_between_makes_the_same_key_new(tmp_path):
    clock = Clock()
    spool = Spool(tmp_path, clock=clock)
    spool.append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1")
    clock.advance(minutes=30)
    spool.append("connect_callback", "USR-1:MBR-1:reconnect:None:redirect:1", "{}", member="MBR-1")
    clock.advance(hours=3)
    assert spool.append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1") is True


def test_the_latest_event_of_a_member_is_kept_across_restarts_and_pruned_past_the_window(tmp_path):
    clock = Clock()
    Spool(tmp_path, clock=clock).append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1")
    clock.advance(hours=1)
    Spool(tmp_path, clock=clock).append("mx_webhook", "sha-of-connected", "{}", member="MBR-1")
    clock.advance(hours=5)
    assert Spool(tmp_path, clock=clock).append("mx_webhook", "sha-of-challenged", "{}", member="MBR-1") is True
    clock.advance(hours=27)
    spool = Spool(tmp_path, clock=clock)
    assert spool.prune() == 3  # two key markers and the member's latest-event marker
    assert os.listdir(tmp_path / "keys") == [] and os.listdir(tmp_path / "latest") == []


def test_deliveries_of_the_same_event_at_the_same_moment_are_spooled_once(tmp_path):
    """MX may retry while the first delivery is still being written; the sensor may prune meanwhile."""
    spools = [Spool(tmp_path) for _ in range(8)]  # as if each were its own process
    start = threading.Barrier(len(spools) + 1)

    def deliver(spool: Spool) -> bool:
        start.wait()
        return spool.append("mx_webhook", "same", "{}", member="MBR-1")

    with concurrent.futures.ThreadPoolExecutor(len(spools) + 1) as pool:
        accepted = [pool.submit(deliver, spool) for spool in spools]
        pruned = pool.submit(lambda: (start.wait(), Spool(tmp_path).prune())[1])
        assert sorted(f.result() for f in accepted) == [False] * 7 + [True]
        assert pruned.result() == 0
    assert len(Spool(tmp_path).pending()) == 1
