"""Which ready members a run reads: one MX has not aggregated since our last complete sync is skipped as unchanged,
unless something says its data may have moved (a failed read, no complete sync, an old pending row MX's failsafe
may have deleted) or the data team named it."""

import datetime as dt

import pytest

from mx_pipeline.warehouse.members import UNCHANGED, MemberNotFetched, members_to_read
from mx_pipeline.warehouse.sync_state import record_sync

NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
AGGREGATED = dt.datetime(2026, 11, 20, 6, tzinfo=dt.UTC)
MEMBER, USER = "MBR-1", "USR-1"


@pytest.fixture
def con(warehouse):
    with warehouse.connect() as con:
        con.execute(
            "insert into ops.member_routes (member_guid, user_guid, connection_status, is_being_aggregated, route,"
            " reason, routed_at, run_id) values (?, ?, 'CONNECTED', false, 'ready', 'Connected.', ?, 'r')",
            [MEMBER, USER, NOW],
        )
        _status_read(con, AGGREGATED)
        yield con


def _status_read(con, aggregated_at: dt.datetime) -> None:
    con.execute(
        "insert or replace into raw.mx_member_status (guid, user_guid, connection_status, is_being_aggregated,"
        " successfully_aggregated_at, payload, run_id, fetched_at) values (?, ?, 'CONNECTED', false, ?, '{}', 'r', ?)",
        [MEMBER, USER, aggregated_at, NOW],
    )


def _synced(con, run_id: str = "r1", aggregated_at: dt.datetime = AGGREGATED) -> None:
    record_sync(con, MEMBER, USER, outcome="synced", run_id=run_id, now=NOW, watermark=NOW, aggregated_at=aggregated_at)


def _read(con, **kwargs) -> list[str]:
    fetch, _ = members_to_read(con, **kwargs)
    return [m.guid for m in fetch]


def test_a_member_mx_has_not_aggregated_since_its_last_complete_sync_is_skipped_with_the_reason(con):
    _synced(con)
    assert members_to_read(con) == ([], [MemberNotFetched(MEMBER, USER, UNCHANGED)])
    # a skip leaves what the last complete sync saw: the next run skips it too
    record_sync(con, MEMBER, USER, outcome="skipped", reason=UNCHANGED, run_id="r2", now=NOW)
    assert _read(con) == []


def test_an_aggregation_since_the_last_sync_is_read(con):
    _synced(con)
    _status_read(con, AGGREGATED + dt.timedelta(hours=1))
    assert _read(con) == [MEMBER]


def test_a_member_never_synced_is_read(con):
    assert _read(con) == [MEMBER]


def test_a_failed_read_is_read_again_until_a_sync_completes(con):
    _synced(con)
    record_sync(con, MEMBER, USER, outcome="failed", reason="accounts read failed: ServerError", run_id="r2", now=NOW)
    assert _read(con) == [MEMBER]
    # its transactions then synced in the same run: the accounts failure stands, so does the read next time
    _synced(con, "r2")
    assert _read(con) == [MEMBER]
    # a route skip in between does not hide it either
    record_sync(con, MEMBER, USER, outcome="skipped", reason="needs_mfa (CHALLENGED)", run_id="r3", now=NOW)
    assert _read(con) == [MEMBER]
    _synced(con, "r4")
    assert _read(con) == []


def test_the_data_team_s_refresh_reads_an_unchanged_member(con):
    _synced(con)
    assert _read(con, read_unchanged=True) == [MEMBER]
    assert members_to_read(con, read_unchanged=True)[1] == []


def test_a_live_pending_row_mx_s_failsafe_may_have_deleted_is_read_though_mx_did_not_aggregate(con):
    """MX deletes a pending row left unposted 14 days without an aggregation: a row made up to 5 days before its
    date (MX lists 5 days ahead) may go 9 days after its date; the reconcile window then settles it."""
    _synced(con)
    _insert(con, "TRN-RECENT", dt.date(2026, 11, 12))  # 8 days old: not yet
    assert _read(con) == []
    _insert(con, "TRN-OLD", dt.date(2026, 11, 11))  # 9 days old
    assert _read(con) == [MEMBER]


def _insert(con, guid: str, date: dt.date) -> None:
    con.execute(
        "insert into raw.mx_transactions (guid, member_guid, account_guid, user_guid, status, date, payload, run_id,"
        " fetched_at) values (?, ?, 'ACT-1', ?, 'PENDING', ?, '{}', 'r', ?)",
        [guid, MEMBER, USER, date, NOW],
    )
