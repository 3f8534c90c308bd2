"""Retire, never delete: what MX no longer has keeps its rows, gets removed_at, and leaves reads and schedules."""

import datetime as dt

import pytest

from mx_pipeline.lifecycle.gate import gate
from mx_pipeline.lifecycle.routes import RETIRED
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.warehouse import retire
from mx_pipeline.warehouse.lifecycle import member_states
from mx_pipeline.warehouse.members import listed_members, members_not_fetched, members_to_fetch
from mx_pipeline.warehouse.refresh_state import WarehouseLedger, due_members
from mx_pipeline.warehouse.retire import (
    ACCOUNT_REMOVED,
    MEMBER_REMOVED,
    OFFBOARDED,
    USER_REMOVED,
    WholeList,
    absent_from_lists,
    atomically,
    reinstate_accounts,
    reinstate_members,
    reinstate_users,
    retire_accounts,
    retire_members,
    retire_users,
)

BEFORE = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)


@pytest.fixture
def con(warehouse):
    with warehouse.connect() as con:
        yield con


def member(con, guid, *, user="USR-1", accounts=("ACT-1",), transactions_per_account=2):
    """A connected, ready member loaded a day ago, with its accounts, live transactions, sync and episode."""
    con.execute(
        "insert into raw.mx_members (guid, user_guid, institution_code, connection_status, payload, run_id,"
        " fetched_at) values (?, ?, 'mxbank', 'CONNECTED', '{}', 'r', ?)",
        [guid, user, BEFORE],
    )
    con.execute(
        "insert into raw.mx_member_status (guid, user_guid, connection_status, is_being_aggregated,"
        " successfully_aggregated_at, payload, run_id, fetched_at) values (?, ?, 'CONNECTED', false, ?, '{}', 'r', ?)",
        [guid, user, BEFORE - dt.timedelta(days=2), BEFORE],
    )
    con.execute(
        "insert into ops.member_routes values (?, ?, 'CONNECTED', false, 'ready', 'Connected and syncing.', null,"
        " ?, 'r')",
        [guid, user, BEFORE],
    )
    con.execute(
        "insert into ops.member_sync (member_guid, user_guid, transactions_watermark, last_synced_at, last_outcome,"
        " last_reason, last_attempt_at, last_run_id) values (?, ?, ?, ?, 'failed', 'NotFound: 404', ?, 'r')",
        [guid, user, BEFORE, BEFORE, BEFORE],
    )
    con.execute("insert into ops.notification_episodes values (?, 1, ?, 'needs_mfa', ?, null)", [guid, BEFORE, BEFORE])
    for account in accounts:
        con.execute(
            "insert into raw.mx_accounts (guid, member_guid, user_guid, type, balance, currency_code, payload,"
            " run_id, fetched_at) values (?, ?, ?, 'CHECKING', 100, 'USD', '{}', 'r', ?)",
            [account, guid, user, BEFORE],
        )
        for n in range(transactions_per_account):
            con.execute(
                "insert into raw.mx_transactions (guid, member_guid, account_guid, user_guid, status, type, amount,"
                " date, payload, run_id, fetched_at) values (?, ?, ?, ?, 'POSTED', 'DEBIT', 9.99, '2026-11-20', '{}',"
                " 'r', ?)",
                [f"TRN-{account}-{n}", guid, account, user, BEFORE],
            )


def live(con, table, column, value):
    return con.execute(f"select count(*) from {table} where {column} = ? and removed_at is null", [value]).fetchone()[0]


def test_a_retired_member_keeps_every_row_and_leaves_reads_routes_claims_and_episodes(con):
    member(con, "MBR-gone")
    member(con, "MBR-kept", accounts=("ACT-2",))
    WarehouseLedger(con).claim([("MBR-gone", "USR-1")], trigger="sla", run_key="run-a", now=BEFORE)

    assert retire_members(con, ["MBR-gone"], reason=MEMBER_REMOVED, run_id="run-1", now=NOW) == ["MBR-gone"]

    for table, column in [("raw.mx_members", "guid"), ("raw.mx_member_status", "guid"),
                          ("raw.mx_accounts", "member_guid"), ("raw.mx_transactions", "member_guid")]:  # fmt: skip
        assert live(con, table, column, "MBR-gone") == 0, table
        assert live(con, table, column, "MBR-kept") > 0, table
    (rows,) = con.execute("select count(*) from raw.mx_transactions where member_guid = 'MBR-gone'").fetchone()
    assert rows == 2  # retired, never deleted
    # Incremental models read by fetched_at: the retired transactions say something new.
    assert con.execute(
        "select distinct removed_at, fetched_at from raw.mx_transactions where member_guid = 'MBR-gone'"
    ).fetchall() == [(NOW, NOW)]
    assert con.execute("select route, reason from ops.member_routes where member_guid = 'MBR-gone'").fetchall() == [
        ("terminal", "Removed at MX (deleted or replaced); no longer synced.")
    ]
    assert con.execute("select count(*) from ops.refresh_claims").fetchone() == (0,)
    assert con.execute("select closed_at from ops.notification_episodes where member_guid = 'MBR-gone'").fetchall() == [
        (NOW,)
    ]
    assert con.execute("select last_outcome from ops.member_sync where member_guid = 'MBR-gone'").fetchone() == (
        "retired",
    )
    assert con.execute("select kind, guid, user_guid, reason, retired_at, run_id from ops.retirements").fetchall() == [
        ("member", "MBR-gone", "USR-1", MEMBER_REMOVED, NOW, "run-1")
    ]
    assert listed_members(con) == [("MBR-kept", "USR-1")]
    assert [m.guid for m in members_to_fetch(con)] == ["MBR-kept"]
    assert members_not_fetched(con) == []  # retired: not "skipped" on every run either


def test_retiring_twice_changes_nothing(con):
    member(con, "MBR-gone")
    retire_members(con, ["MBR-gone"], reason=MEMBER_REMOVED, run_id="run-1", now=BEFORE)
    assert retire_members(con, ["MBR-gone"], reason=MEMBER_REMOVED, run_id="run-2", now=NOW) == []
    assert con.execute("select distinct removed_at from raw.mx_transactions").fetchall() == [(BEFORE,)]


def test_the_scheduler_no_longer_selects_a_retired_member(con):
    member(con, "MBR-gone")
    member(con, "MBR-kept", accounts=("ACT-2",))
    policy = RefreshPolicy()
    assert {m.member_guid for m in due_members(con, policy, now=NOW)} == {"MBR-gone", "MBR-kept"}
    retire_members(con, ["MBR-gone"], reason=MEMBER_REMOVED, run_id="run-1", now=NOW)
    assert [m.member_guid for m in due_members(con, policy, now=NOW)] == ["MBR-kept"]
    assert due_members(con, policy, now=NOW, only=["MBR-gone"], ignore_sla=True, ignore_pacing=True) == []


def test_the_gate_keeps_a_retired_member_terminal_whatever_its_last_read_said(con):
    member(con, "MBR-gone")
    retire_members(con, ["MBR-gone"], reason=MEMBER_REMOVED, run_id="run-1", now=NOW)
    result = gate(member_states(con), {}, now=NOW)
    [routed] = [m for members in result.routed.values() for m in members]
    assert (routed.member.connection_status, routed.rule) == ("CONNECTED", RETIRED)
    assert result.asking_now == []  # nobody is asked to act on it


def test_only_members_loaded_before_the_list_and_missing_from_it_are_absent(con):
    member(con, "MBR-1")
    member(con, "MBR-2", accounts=("ACT-2",))
    member(con, "MBR-other", user="USR-2", accounts=("ACT-3",))

    def absent(listed, listed_from):
        return absent_from_lists(con, "raw.mx_members", [WholeList("USR-1", listed_from, "run-1")], listed)

    assert absent({"MBR-1"}, NOW) == [("MBR-2", "run-1")]
    assert absent({"MBR-1"}, BEFORE) == []  # loaded while the list was read
    assert absent({"MBR-1", "MBR-2"}, NOW) == []


def test_a_vanished_account_is_retired_with_its_transactions_and_nothing_else(con):
    member(con, "MBR-1", accounts=("ACT-1", "ACT-2"))
    gone = [
        guid for guid, _ in absent_from_lists(con, "raw.mx_accounts", [WholeList("MBR-1", NOW, "run-1")], {"ACT-1"})
    ]
    assert gone == ["ACT-2"]
    assert retire_accounts(con, gone, reason=ACCOUNT_REMOVED, run_id="run-1", now=NOW) == ["ACT-2"]
    assert live(con, "raw.mx_transactions", "account_guid", "ACT-2") == 0
    assert live(con, "raw.mx_transactions", "account_guid", "ACT-1") == 2
    assert live(con, "raw.mx_members", "guid", "MBR-1") == 1
    assert con.execute("select kind, guid, member_guid, reason from ops.retirements").fetchall() == [
        ("account", "ACT-2", "MBR-1", ACCOUNT_REMOVED)
    ]


def test_a_retired_user_takes_its_members_and_its_end_user_with_it(con):
    con.execute(
        "insert into raw.mx_users (guid, id, payload, run_id, fetched_at, removed_at) values ('USR-1', 'u-1', '{}', 'r', ?, null)",
        [BEFORE],
    )
    con.execute("insert into ops.end_users (id, source, mx_user_guid) values ('u-1', 'csv', 'USR-1')")
    member(con, "MBR-1")
    member(con, "MBR-2", accounts=("ACT-2",))
    assert retire_users(con, ["USR-1"], reason=USER_REMOVED, run_id="run-1", now=NOW) == ["USR-1"]
    assert live(con, "raw.mx_transactions", "user_guid", "USR-1") == 0
    assert con.execute("select retired_at from ops.end_users").fetchall() == [(NOW,)]
    assert con.execute("select kind, guid, reason from ops.retirements order by kind, guid").fetchall() == [
        ("member", "MBR-1", USER_REMOVED),
        ("member", "MBR-2", USER_REMOVED),
        ("user", "USR-1", USER_REMOVED),
    ]


def test_a_retired_member_mx_lists_again_comes_back_with_exactly_what_its_retirement_took(con):
    member(con, "MBR-1")
    con.execute("update raw.mx_transactions set removed_at = ? where guid = 'TRN-ACT-1-0'", [BEFORE])  # vanished
    retire_members(con, ["MBR-1"], reason=MEMBER_REMOVED, run_id="run-1", now=NOW)
    later = NOW + dt.timedelta(hours=1)

    assert reinstate_members(con, ["MBR-1", "MBR-unknown"], now=later) == ["MBR-1"]

    assert live(con, "raw.mx_members", "guid", "MBR-1") == 1
    assert live(con, "raw.mx_accounts", "member_guid", "MBR-1") == 1
    assert con.execute("select guid, removed_at, fetched_at from raw.mx_transactions order by guid").fetchall() == [
        ("TRN-ACT-1-0", BEFORE, BEFORE),  # it had vanished on its own: still gone
        ("TRN-ACT-1-1", None, later),
    ]
    assert con.execute("select count(*) from ops.retirements").fetchone() == (0,)
    assert listed_members(con) == [("MBR-1", "USR-1")]


def user(con, guid="USR-1", user_id="u-1"):
    con.execute(
        "insert into raw.mx_users (guid, id, payload, run_id, fetched_at, removed_at) values (?, ?, '{}', 'r', ?, null)",
        [guid, user_id, BEFORE],
    )
    con.execute("insert into ops.end_users (id, source, mx_user_guid) values (?, 'csv', ?)", [user_id, guid])


def test_a_retired_user_mx_lists_again_comes_back_with_the_members_retired_with_it(con):
    user(con)
    member(con, "MBR-alone", accounts=("ACT-1",))
    member(con, "MBR-with-user", accounts=("ACT-2",))
    retire_members(con, ["MBR-alone"], reason=MEMBER_REMOVED, run_id="run-1", now=BEFORE)  # gone on its own first
    retire_users(con, ["USR-1"], reason=USER_REMOVED, run_id="run-2", now=NOW)
    later = NOW + dt.timedelta(hours=1)

    assert reinstate_users(con, ["USR-1", "USR-unknown"], now=later) == ["USR-1"]

    assert con.execute("select removed_at from raw.mx_users").fetchall() == [(None,)]
    assert con.execute("select retired_at from ops.end_users").fetchall() == [(None,)]
    assert live(con, "raw.mx_members", "guid", "MBR-with-user") == 1
    assert live(con, "raw.mx_member_status", "guid", "MBR-with-user") == 1
    assert live(con, "raw.mx_accounts", "member_guid", "MBR-with-user") == 1
    assert con.execute(
        "select distinct removed_at, fetched_at from raw.mx_transactions where member_guid = 'MBR-with-user'"
    ).fetchall() == [(None, later)]
    assert live(con, "raw.mx_members", "guid", "MBR-alone") == 0  # its own retirement stands
    assert con.execute("select kind, guid from ops.retirements").fetchall() == [("member", "MBR-alone")]
    assert listed_members(con) == [("MBR-with-user", "USR-1")]


def test_an_offboarded_user_is_never_reinstated_even_when_a_list_shows_it(warehouse, con):
    user(con)
    member(con, "MBR-1")
    retire_users(con, ["USR-1"], reason=USER_REMOVED, run_id="run-1", now=BEFORE)  # a list lacked it first
    retire.offboard_user(warehouse, "u-1", lambda guid: None, run_id="cli:offboard-user", now=NOW)
    assert con.execute("select reason from ops.retirements where kind = 'user'").fetchall() == [(OFFBOARDED,)]

    assert reinstate_users(con, ["USR-1"], now=NOW) == []

    assert live(con, "raw.mx_users", "guid", "USR-1") == 0
    assert live(con, "raw.mx_members", "guid", "MBR-1") == 0


def test_a_retired_account_mx_lists_again_comes_back_with_the_transactions_retired_with_it(con):
    member(con, "MBR-1", accounts=("ACT-1",))
    con.execute("update raw.mx_transactions set removed_at = ? where guid = 'TRN-ACT-1-0'", [BEFORE])  # vanished
    retire_accounts(con, ["ACT-1"], reason=ACCOUNT_REMOVED, run_id="run-1", now=NOW)
    later = NOW + dt.timedelta(hours=1)

    assert reinstate_accounts(con, ["ACT-1", "ACT-unknown"], now=later) == ["ACT-1"]

    assert live(con, "raw.mx_accounts", "guid", "ACT-1") == 1
    assert con.execute("select guid, removed_at, fetched_at from raw.mx_transactions order by guid").fetchall() == [
        ("TRN-ACT-1-0", BEFORE, BEFORE),
        ("TRN-ACT-1-1", None, later),
    ]
    assert con.execute("select count(*) from ops.retirements").fetchone() == (0,)


def test_a_retirement_that_fails_half_way_inside_atomically_leaves_nothing_retired(con, monkeypatch):
    member(con, "MBR-1")

    def crash(*args, **kwargs):
        raise RuntimeError("died between two statements")

    monkeypatch.setattr(retire, "_retire_transactions", crash)
    with pytest.raises(RuntimeError), atomically(con):
        retire_members(con, ["MBR-1"], reason=MEMBER_REMOVED, run_id="run-1", now=NOW)

    for table, column in [("raw.mx_members", "guid"), ("raw.mx_member_status", "guid"),
                          ("raw.mx_accounts", "member_guid"), ("raw.mx_transactions", "member_guid")]:  # fmt: skip
        assert live(con, table, column, "MBR-1") > 0, table
    monkeypatch.undo()
    with atomically(con):
        assert retire_members(con, ["MBR-1"], reason=MEMBER_REMOVED, run_id="run-2", now=NOW) == ["MBR-1"]
    assert live(con, "raw.mx_transactions", "member_guid", "MBR-1") == 0
