"""A scoped run's status gate re-routes only the run's members: the others' routes and episodes stay as they were."""

import dagster as dg
import pytest

from mx_pipeline.defs.jobs import scoped_run_config
from mx_pipeline.defs.lifecycle.gate import member_lifecycle
from mx_pipeline.defs.resources import ConnectLinksResource, WarehouseResource
from mx_pipeline.warehouse import Warehouse

from .conftest import CONNECT_URL, LOCATION, metadata_of

STATUSES = {  # member -> (user, status)
    "MBR-A1": ("USR-A", "CONNECTED"),
    "MBR-A2": ("USR-A", "CHALLENGED"),
    "MBR-B1": ("USR-B", "CHALLENGED"),
    "MBR-B2": ("USR-B", "DENIED"),
    "MBR-C1": ("USR-C", "CONNECTED"),
}


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    with wh.connect() as con:
        for member, (user, status) in STATUSES.items():
            con.execute(
                "insert into raw.mx_member_status (guid, user_guid, connection_status, is_being_aggregated, payload,"
                " run_id, fetched_at) values (?, ?, ?, false, '{}', 'r', now())",
                [member, user, status],
            )
    return wh


def gate(wh: Warehouse, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    """The status gate alone (and its delivery), on this warehouse, with a sync run's scope when given."""
    scope = (run_config or {}).get("ops", {}).get("member_lifecycle", {})
    resources = {
        **LOCATION.resources,
        "warehouse": WarehouseResource(path=str(wh.path)),
        "connect_links": ConnectLinksResource(public_url=CONNECT_URL, store_path=str(wh.path.parent / "links.sqlite")),
    }
    return dg.materialize([member_lifecycle], resources=resources, run_config={"ops": {"member_lifecycle": scope}})


def set_status(wh: Warehouse, member: str, status: str) -> None:
    with wh.connect() as con:
        con.execute("update raw.mx_member_status set connection_status = ? where guid = ?", [status, member])


def routes(wh: Warehouse) -> dict[str, tuple]:
    with wh.connect() as con:
        rows = con.execute("select member_guid, route, run_id, routed_at from ops.member_routes").fetchall()
    return {member: tuple(rest) for member, *rest in rows}


def episodes(wh: Warehouse) -> list[tuple]:
    with wh.connect() as con:
        return con.execute(
            "select member_guid, number, notified_at is not null, closed_at is not null from ops.notification_episodes"
            " order by all"
        ).fetchall()


def test_a_scoped_run_routes_only_its_members_and_leaves_the_others_untouched(warehouse):
    first = gate(warehouse)
    before = routes(warehouse)
    assert {m: route for m, (route, _, _) in before.items()} == {
        "MBR-A1": "ready", "MBR-A2": "needs_mfa", "MBR-B1": "needs_mfa", "MBR-B2": "needs_reconnect",
        "MBR-C1": "ready",
    }  # fmt: skip
    set_status(warehouse, "MBR-A2", "CONNECTED")
    set_status(warehouse, "MBR-B1", "CONNECTED")  # read by some other run: this one does not touch it

    scoped = gate(warehouse, scoped_run_config(["USR-A"]))

    after = routes(warehouse)
    touched = {m for m in after if after[m][1] == scoped.run_id}
    assert touched == {"MBR-A1", "MBR-A2"}
    assert {m: after[m] for m in after if m not in touched} == {m: before[m] for m in before if m not in touched}
    assert after["MBR-A2"][0] == "ready" and after["MBR-B1"][0] == "needs_mfa"
    assert metadata_of(scoped)["ops.member_routes"]["dagster/row_count"] == 2
    assert episodes(warehouse) == [
        ("MBR-A2", 1, True, True),  # recovered: closed by the scoped run
        ("MBR-B1", 1, True, False),  # out of scope: still open although its status changed
        ("MBR-B2", 1, True, False),
    ]
    assert first.run_id != scoped.run_id


def test_a_member_in_trouble_again_opens_a_second_episode_in_a_run_scoped_to_it(warehouse):
    gate(warehouse)
    set_status(warehouse, "MBR-A2", "CONNECTED")
    gate(warehouse, scoped_run_config(member_guids=["MBR-A2"]))
    set_status(warehouse, "MBR-A2", "CHALLENGED")
    gate(warehouse, scoped_run_config(member_guids=["MBR-A2"]))
    gate(warehouse, scoped_run_config(member_guids=["MBR-A2"]))  # the same read again: no third episode

    assert [e for e in episodes(warehouse) if e[0] == "MBR-A2"] == [
        ("MBR-A2", 1, True, True),
        ("MBR-A2", 2, True, False),
    ]
    with warehouse.connect() as con:
        told = con.execute(
            "select notification_id from ops.reconnect_notifications where member_guid = 'MBR-A2' order by 1"
        ).fetchall()
    assert told == [("MBR-A2:1",), ("MBR-A2:2",)]
