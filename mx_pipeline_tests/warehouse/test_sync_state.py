"""Sync outcomes: a failed read stands for its run, and failed members and users are due again after a back-off."""

import datetime as dt

from mx_pipeline.warehouse.sync_state import (
    failed_reads,
    reads_to_retry,
    record_member_lists,
    record_sync,
)

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
WATERMARK = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
BACKOFF = dt.timedelta(minutes=30)


def _sync_row(con, member: str) -> tuple:
    return con.execute(
        "select last_outcome, last_reason, transactions_watermark, last_run_id from ops.member_sync"
        " where member_guid = ?",
        [member],
    ).fetchone()


def _member(con, member: str, user: str = "USR-1", *, removed: bool = False) -> None:
    con.execute(
        "insert into raw.mx_members (guid, user_guid, payload, run_id, fetched_at, removed_at)"
        " values (?, ?, '{}', 'r', ?, ?)",
        [member, user, NOW, NOW if removed else None],
    )


def test_a_failed_read_stands_for_the_rest_of_its_run_and_a_later_sync_clears_it(warehouse):
    with warehouse.connect() as con:
        record_sync(con, "MBR-1", "USR-1", outcome="failed", reason="accounts read failed: ServerError: 503", run_id="r1",
                    now=NOW)  # fmt: skip
        # Its transactions then synced in the same run: the watermark moves, the failure stands.
        record_sync(con, "MBR-1", "USR-1", outcome="synced", run_id="r1", now=NOW, watermark=WATERMARK)
        assert _sync_row(con, "MBR-1") == ("failed", "accounts read failed: ServerError: 503", WATERMARK, "r1")
        record_sync(con, "MBR-1", "USR-1", outcome="failed", reason="transactions read failed: x", run_id="r1", now=NOW)
        assert _sync_row(con, "MBR-1")[1] == "accounts read failed: ServerError: 503; transactions read failed: x"
        assert failed_reads(con, ["r1"]) == ({"MBR-1": _sync_row(con, "MBR-1")[1]}, {})
        assert failed_reads(con, ["r2"]) == ({}, {})

        record_sync(con, "MBR-1", "USR-1", outcome="synced", run_id="r2", now=NOW, watermark=WATERMARK)
        assert _sync_row(con, "MBR-1") == ("synced", None, WATERMARK, "r2")
        assert failed_reads(con, ["r1", "r2"]) == ({}, {})


def test_failed_members_and_users_are_due_once_the_backoff_has_passed_and_never_once_gone(warehouse):
    with warehouse.connect() as con:
        for member in ("MBR-failed", "MBR-synced", "MBR-claimed"):
            _member(con, member)
        _member(con, "MBR-retired", removed=True)
        failures = {
            m: ("USR-1", "status read failed: ServerError") for m in ("MBR-failed", "MBR-claimed", "MBR-retired")
        }
        for member, (user, reason) in failures.items():
            record_sync(con, member, user, outcome="failed", reason=reason, run_id="r1", now=NOW)
        record_sync(con, "MBR-synced", "USR-1", outcome="synced", run_id="r1", now=NOW, watermark=WATERMARK)
        con.execute("insert into ops.refresh_claims values ('MBR-claimed', 'USR-1', 'sla', 'k', ?)", [NOW])
        record_member_lists(con, {"USR-1": None, "USR-2": "member list read failed: ConnectionFailed"}, run_id="r1",
                            now=NOW)  # fmt: skip

        assert not reads_to_retry(con, now=NOW + BACKOFF - dt.timedelta(seconds=1), backoff=BACKOFF, limit=10)
        due = reads_to_retry(con, now=NOW + BACKOFF, backoff=BACKOFF, limit=10)
        assert due.members == [("MBR-failed", NOW)]
        assert due.users == [("USR-2", NOW)]
        assert failed_reads(con, ["r1"])[1] == {"USR-2": "member list read failed: ConnectionFailed"}

        record_member_lists(con, {"USR-2": None}, run_id="r2", now=NOW)
        assert reads_to_retry(con, now=NOW + BACKOFF, backoff=BACKOFF, limit=10).users == []
