"""The spool keeps every accepted event, once, in arrival order, across crashes."""

import json
import os
import subprocess
import sys
import textwrap

from mx_pipeline.connect.spool import Spool


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
