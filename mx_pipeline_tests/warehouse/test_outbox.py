"""Leases on the outbox: a run takes its batch before sending, so two runs never send the same notification,
and a run that died mid-send leaves its batch to be taken over once the lease runs out."""

import datetime as dt
import threading

import pytest

from mx_pipeline.lifecycle.notifier import Notification, NotificationState
from mx_pipeline.lifecycle.routes import route_for
from mx_pipeline.warehouse import Warehouse
from mx_pipeline.warehouse.outbox import (
    bury_exhausted,
    cancel_closed,
    lease_due,
    record_delivery,
    release_lease,
    renew_lease,
    store_notifications,
)

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=15)


def notification(member: str, status: str = "DENIED", at: dt.datetime = NOW) -> Notification:
    rule = route_for(status)
    return Notification(f"{member}:1", "end-user-1", "USR-1", member, "mxbank", status, rule.route.value,
                        rule.reason, rule.connect_mode.value, f"https://connect.example/reconnect/{member}", at)  # fmt: skip


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


def stored(warehouse: Warehouse, members: list[str]) -> None:
    with warehouse.connect() as con:
        store_notifications(con, [notification(m, at=NOW + dt.timedelta(seconds=i)) for i, m in enumerate(members)],
                            now=NOW)  # fmt: skip


def lease(warehouse: Warehouse, run: str, asking, *, now: dt.datetime = NOW, limit: int = 50):
    with warehouse.connect() as con:
        return lease_due(con, asking, lease=run, now=now, until=now + LEASE, limit=limit)


def outbox(warehouse: Warehouse) -> dict[str, tuple]:
    with warehouse.connect() as con:
        rows = con.execute("select member_guid, state, attempts, leased_by from ops.reconnect_notifications").fetchall()
    return {member: tuple(rest) for member, *rest in rows}


def ids(leased) -> list[str]:
    return [n.notification_id for n in leased.notifications]


def test_a_run_leases_at_most_its_batch_oldest_first_and_says_what_it_held_and_left(warehouse):
    stored(warehouse, ["MBR-a", "MBR-b", "MBR-c", "MBR-quiet"])
    leased = lease(warehouse, "run-1", {"MBR-a", "MBR-b", "MBR-c"}, limit=2)
    assert ids(leased) == ["MBR-a:1", "MBR-b:1"]
    assert leased.held == ["MBR-quiet:1"]  # its member asks nothing for now
    assert leased.left == ["MBR-c:1"]  # beyond this run's batch: the next run's
    assert outbox(warehouse)["MBR-c"] == ("pending", 0, None)


def test_two_runs_leasing_at_the_same_moment_never_take_the_same_notification(warehouse):
    members = [f"MBR-{i:02d}" for i in range(40)]
    stored(warehouse, members)
    start, results = threading.Barrier(2), {}

    def run(name: str) -> None:
        start.wait()
        results[name] = ids(lease(warehouse, name, set(members), limit=30))

    threads = [threading.Thread(target=run, args=(name,)) for name in ("run-1", "run-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not set(results["run-1"]) & set(results["run-2"])
    assert sorted(results["run-1"] + results["run-2"]) == sorted(f"{m}:1" for m in members)


def test_a_batch_leased_by_a_run_that_died_mid_send_is_taken_over_only_once_its_lease_ran_out(warehouse):
    stored(warehouse, ["MBR-a", "MBR-b"])
    assert ids(lease(warehouse, "run-1", {"MBR-a", "MBR-b"})) == ["MBR-a:1", "MBR-b:1"]  # then run-1 is killed
    meanwhile = lease(warehouse, "run-2", {"MBR-a", "MBR-b"}, now=NOW + LEASE - dt.timedelta(seconds=1))
    assert (ids(meanwhile), meanwhile.left) == ([], ["MBR-a:1", "MBR-b:1"])  # run-1 may still be sending them
    later = lease(warehouse, "run-3", {"MBR-a", "MBR-b"}, now=NOW + LEASE)
    assert ids(later) == ["MBR-a:1", "MBR-b:1"]  # retried, not lost
    with warehouse.connect() as con:  # run-1 was only slow after all: its late word counts for nothing now
        assert renew_lease(con, "run-1", until=NOW + 2 * LEASE) == set()
        late = record_delivery(con, "MBR-a:1", lease="run-1", at=NOW + LEASE, outcome=NotificationState.DELIVERED,
                               max_attempts=5)  # fmt: skip
        assert late is None
        assert record_delivery(con, "MBR-a:1", lease="run-3", at=NOW + LEASE, error="HTTP 503", max_attempts=5) == (
            NotificationState.PENDING
        )
    assert outbox(warehouse) == {"MBR-a": ("pending", 1, None), "MBR-b": ("pending", 0, "run-3")}


def test_what_a_run_leased_but_did_not_send_is_let_go_for_the_next_run_with_no_attempt_spent(warehouse):
    stored(warehouse, ["MBR-a", "MBR-b"])
    lease(warehouse, "run-1", {"MBR-a", "MBR-b"})
    with warehouse.connect() as con:
        record_delivery(con, "MBR-a:1", lease="run-1", at=NOW, outcome=NotificationState.DELIVERED, max_attempts=5)
        assert release_lease(con, "run-1") == 1  # its time budget ran out before MBR-b
    assert outbox(warehouse) == {"MBR-a": ("delivered", 1, None), "MBR-b": ("pending", 0, None)}
    assert ids(lease(warehouse, "run-2", {"MBR-a", "MBR-b"})) == ["MBR-b:1"]


def test_a_notification_being_sent_is_neither_refreshed_cancelled_nor_buried_meanwhile(warehouse):
    stored(warehouse, ["MBR-a"])
    lease(warehouse, "run-1", {"MBR-a"})
    with warehouse.connect() as con:
        con.execute("update ops.reconnect_notifications set attempts = 9")
        con.execute(
            "insert into ops.notification_episodes values ('MBR-a', 1, ?, 'needs_reconnect', ?, ?)", [NOW, NOW, NOW]
        )  # fmt: skip  (its episode closed while run-1 sends it)
        assert store_notifications(con, [notification("MBR-a", "CHALLENGED")], now=NOW) == 0
        assert cancel_closed(con, now=NOW) == {}
        assert bury_exhausted(con, max_attempts=5, now=NOW) == 0
        [row] = con.execute("select state, connection_status from ops.reconnect_notifications").fetchall()
    assert row == ("pending", "DENIED")  # what run-1 is sending; its own record decides what became of it
