"""``connect_events``: the spool drained into ``ops`` with a cursor, scoped runs launched, a busy warehouse skipped."""

import json

import dagster as dg
import pytest

from mx_pipeline import settings
from mx_pipeline.connect.spool import Spool
from mx_pipeline.defs.jobs import scoped_run_config
from mx_pipeline.defs.lifecycle import sensors
from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource
from mx_pipeline_tests.holding import held_by_another_process


def status_webhook(user_guid: str, member_guid: str, status: str = "CHALLENGED") -> str:
    return json.dumps(
        {
            "action": "CHANGED",
            "connection_status": status,
            "connection_status_id": 3,
            "member_guid": member_guid,
            "type": "CONNECTION_STATUS",
            "user_guid": user_guid,
            "some_field_mx_added_later": None,  # MX warns of new fields and nulls: never a reason to refuse
        }
    )


def callback(user_id: str, user_guid: str, member_guid: str) -> str:
    return json.dumps(
        {"user_id": user_id, "user_guid": user_guid, "member_guid": member_guid, "mode": "aggregation",
         "status": "CONNECTED", "source": "redirect"}
    )  # fmt: skip


@pytest.fixture
def spool(tmp_path, monkeypatch) -> Spool:
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    return Spool(settings.spool_dir())


@pytest.fixture
def warehouse(tmp_path) -> WarehouseResource:
    return WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))


def tick(warehouse: WarehouseResource, cursor: str | None = None):
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            cursor=cursor,
            resources={"warehouse": warehouse, "refresh_policy": RefreshPolicyResource()},
        )
        return sensors.connect_events(context)


def query(warehouse: WarehouseResource, sql: str):
    with warehouse.open().connect() as con:
        return con.execute(sql).fetchall()


def test_events_are_stored_and_their_users_resynced_in_one_scoped_run(spool, warehouse):
    spool.append("mx_webhook", "w1", status_webhook("USR-1", "MBR-1"))
    aggregation = {"type": "AGGREGATION", "action": "member_data_updated", "user_guid": "USR-2",
                   "member_guid": "MBR-2", "completed_at": 1764072000}  # fmt: skip
    spool.append("mx_webhook", "w2", json.dumps(aggregation))
    spool.append("connect_callback", "c1", callback("end-user-3", "USR-3", "MBR-3"))
    spool.append("mx_webhook", "w3", status_webhook("USR-1", "MBR-1", "CONNECTED"))
    result = tick(warehouse)
    [run] = result.run_requests
    assert run.run_config == scoped_run_config(["USR-1", "USR-2", "USR-3"])
    assert run.tags["mx_pipeline/trigger"] == "member_events"
    assert result.cursor == "4"  # the last event launched for
    assert run.run_key == "member-events-4-0"
    assert spool.pending() == []
    stored = query(warehouse, "select seq, source, member_guid, connection_status from ops.member_events order by seq")
    assert stored == [
        (1, "CONNECTION_STATUS", "MBR-1", "CHALLENGED"),
        (2, "AGGREGATION", "MBR-2", None),
        (3, "connect_callback", "MBR-3", None),
        (4, "CONNECTION_STATUS", "MBR-1", "CONNECTED"),
    ]
    assert query(warehouse, "select id, source, mx_user_guid from ops.end_users") == [
        ("end-user-3", "connect_service", "USR-3")
    ]


def test_a_later_tick_launches_only_for_events_after_the_cursor(spool, warehouse):
    spool.append("mx_webhook", "w1", status_webhook("USR-1", "MBR-1"))
    first = tick(warehouse)
    assert isinstance(tick(warehouse, first.cursor), dg.SkipReason)
    spool.append("mx_webhook", "w2", status_webhook("USR-9", "MBR-9"))
    [run] = tick(warehouse, first.cursor).run_requests
    assert run.run_config == scoped_run_config(["USR-9"])
    assert run.run_key != first.run_requests[0].run_key


def test_the_same_event_stored_twice_is_one_row(spool, warehouse, tmp_path):
    body = status_webhook("USR-1", "MBR-1")
    spool.append("mx_webhook", "same-bytes", body)
    tick(warehouse)
    # A crash between the warehouse commit and the acknowledgement hands the same event over again.
    Spool(tmp_path / "other").append("mx_webhook", "same-bytes", body)
    for event in Spool(tmp_path / "other").pending():
        (spool.events / event.name).write_text((tmp_path / "other" / "events" / event.name).read_text())
    tick(warehouse, "1")
    assert query(warehouse, "select count(*) from ops.member_events") == [(1,)]


def test_unparsable_events_are_quarantined_with_the_reason_and_the_body(spool, warehouse):
    no_member = json.dumps({"type": "CONNECTION_STATUS", "connection_status": "DENIED", "user_guid": "USR-1"})
    spool.append("mx_webhook", "bad-json", "{not json")
    spool.append("mx_webhook", "no-member", no_member)
    result = tick(warehouse)
    assert isinstance(result, dg.SkipReason)  # nothing to re-sync, and nothing lost
    quarantined = query(warehouse, "select table_name, reason, payload->>'body' from ops.quarantine order by reason")
    assert quarantined == [
        ("ops.member_events", "mx_webhook: CONNECTION_STATUS without a member_guid", no_member),
        ("ops.member_events", "mx_webhook: not JSON: Expecting property name enclosed in double quotes at position 1",
         "{not json"),
    ]  # fmt: skip
    assert spool.pending() == []


def test_a_burst_of_events_becomes_bounded_runs(spool, warehouse, monkeypatch):
    monkeypatch.setattr(sensors, "USERS_PER_RUN", 2)
    for i in range(5):
        spool.append("mx_webhook", f"w{i}", status_webhook(f"USR-{i}", f"MBR-{i}"))
    runs = tick(warehouse).run_requests
    assert [r.run_config for r in runs] == [
        scoped_run_config(["USR-0", "USR-1"]),
        scoped_run_config(["USR-2", "USR-3"]),
        scoped_run_config(["USR-4"]),
    ]
    assert len({r.run_key for r in runs}) == 3


def test_a_busy_warehouse_skips_the_tick_and_keeps_the_events(spool, warehouse, monkeypatch):
    monkeypatch.setattr(sensors, "BUSY_WAIT_SECONDS", 0.3)
    spool.append("mx_webhook", "w1", status_webhook("USR-1", "MBR-1"))
    with warehouse.open().connect():
        pass  # the file exists, migrated
    with held_by_another_process(warehouse.path):
        result = tick(warehouse)
    assert isinstance(result, dg.SkipReason) and "busy" in result.skip_message
    assert len(spool.pending()) == 1
    assert tick(warehouse).cursor == "1"  # the next tick, with the file free, takes it
