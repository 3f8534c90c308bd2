"""Every read from MX (users, member lists, status, accounts, transactions) runs without the warehouse: only the plans
and the loads take the DuckDB file, so any number of runs read at once while another run, or an analyst, holds
it."""

import contextlib
import dataclasses
from decimal import Decimal

import dagster as dg
import pytest

from mx_pipeline.defs.ingest import accounts, members, status, users
from mx_pipeline.defs.ingest.transactions import LOAD, PLAN, READ, load_transactions, plan_reads, read_transactions
from mx_pipeline.defs.jobs import SYNCED
from mx_pipeline.defs.resources import MxResource
from mx_pipeline.warehouse import tables
from mx_pipeline_tests.holding import held_by_another_process

from .conftest import INGEST, metadata_of


class MxWhileTheWarehouseIsHeld(MxResource):
    """MX; and for as long as a client is open, another process holding the warehouse file."""

    warehouse_path: str

    @contextlib.contextmanager
    def client(self, observers=()):
        with held_by_another_process(self.warehouse_path), super().client(observers) as client:
            yield client


@pytest.mark.parametrize(
    ("plan", "read", "load"),
    [
        (plan_reads, read_transactions, load_transactions),
        (accounts.plan_account_reads, accounts.read_accounts, accounts.load_accounts),
        (status.plan_status_reads, status.read_member_status, status.load_member_status),
        (members.plan_member_lists, members.read_member_lists, members.load_member_lists),
        (users.plan_users, users.read_users, users.load_users),
    ],
)
def test_only_the_plan_and_the_load_take_the_warehouse(plan, read, load):
    assert "warehouse" not in read.required_resource_keys
    assert (plan.pool, read.pool, load.pool) == (None, None, "duckdb_warehouse")


def test_transactions_are_read_while_another_process_holds_the_warehouse(pipeline):
    pipeline.materialize()
    created = pipeline.admin(f"members/{pipeline.member_of['user-ok-1']}/transactions", count=3)["created"]
    transactions = dg.AssetKey(tables.TRANSACTIONS.key_path)
    before_transactions = SYNCED - dg.AssetSelection.assets(transactions)  # the status read sees the new data
    assert dg.materialize(INGEST, selection=before_transactions, resources=pipeline.resources()).success
    held = MxWhileTheWarehouseIsHeld(
        **pipeline.resources()["mx"].model_dump(), warehouse_path=str(pipeline.warehouse.path)
    )
    impatient = pipeline.warehouse_resource.model_copy(update={"wait_seconds": 1.0})  # a read that opened it fails

    result = dg.materialize(
        INGEST,
        selection=[transactions],
        resources=pipeline.resources(mx=held, warehouse=impatient),
    )

    assert result.success
    steps = [e.step_key for e in result.get_step_success_events() if e.step_key.startswith("raw__mx_transactions.")]
    assert steps == [f"raw__mx_transactions.{step}" for step in (PLAN, READ, LOAD)]
    assert metadata_of(result)["raw.mx_transactions"]["inserted"] == 3
    new = {g for (g,) in pipeline.query("select guid from raw.mx_transactions where run_id = ?", result.run_id)}
    assert new == set(created)
    assert not list((pipeline.warehouse.path.parent / "landing").rglob("*.parquet"))  # loaded, then deleted


def test_accounts_are_read_while_another_process_holds_the_warehouse(pipeline):
    pipeline.materialize()
    _, member_guid = pipeline.member("user-ok-1")
    world = pipeline.sandbox.world
    with world.lock:  # MX aggregates the member and finds a new balance
        data = world.members[member_guid].data
        data.accounts[0] = dataclasses.replace(data.accounts[0], balance=data.accounts[0].balance + 12.34,
                                               updated_at=world.now())  # fmt: skip
        world.accounts[data.accounts[0].guid] = data.accounts[0]
        world.members[member_guid].successfully_aggregated_at = world.now()
    account = data.accounts[0]
    accounts_key, transactions_key = (dg.AssetKey(t.key_path) for t in (tables.ACCOUNTS, tables.TRANSACTIONS))
    before_accounts = SYNCED - dg.AssetSelection.assets(accounts_key, transactions_key)
    assert dg.materialize(INGEST, selection=before_accounts, resources=pipeline.resources()).success
    held = MxWhileTheWarehouseIsHeld(
        **pipeline.resources()["mx"].model_dump(), warehouse_path=str(pipeline.warehouse.path)
    )
    impatient = pipeline.warehouse_resource.model_copy(update={"wait_seconds": 1.0})  # a read that opened it fails

    result = dg.materialize(
        INGEST, selection=[accounts_key], resources=pipeline.resources(mx=held, warehouse=impatient)
    )

    assert result.success
    steps = [e.step_key for e in result.get_step_success_events() if e.step_key.startswith("raw__mx_accounts.")]
    assert steps == [f"raw__mx_accounts.{step}" for step in (accounts.PLAN, accounts.READ, accounts.LOAD)]
    assert metadata_of(result)["raw.mx_accounts"]["updated"] == 1
    assert pipeline.query("select balance, run_id from raw.mx_accounts where guid = ?", account.guid) == [
        (Decimal(str(account.balance)).quantize(Decimal("0.0001")), result.run_id)
    ]
    assert not list((pipeline.warehouse.path.parent / "landing").rglob("*.parquet"))  # loaded, then deleted


@pytest.mark.parametrize(("table", "steps"), [(tables.MEMBERS, members), (tables.MEMBER_STATUS, status)])
def test_member_lists_and_statuses_are_read_while_another_process_holds_the_warehouse(pipeline, table, steps):
    pipeline.materialize()
    member = pipeline.member_of["user-ok-1"]
    pipeline.admin(f"members/{member}/connection_status", connection_status="CHALLENGED")
    held = MxWhileTheWarehouseIsHeld(
        **pipeline.resources()["mx"].model_dump(), warehouse_path=str(pipeline.warehouse.path)
    )
    impatient = pipeline.warehouse_resource.model_copy(update={"wait_seconds": 1.0})  # a read that opened it fails
    key = dg.AssetKey(table.key_path)

    result = dg.materialize(INGEST, selection=[key], resources=pipeline.resources(mx=held, warehouse=impatient))

    assert result.success
    graph = "__".join(table.key_path)
    ran = [e.step_key for e in result.get_step_success_events() if e.step_key.startswith(f"{graph}.")]
    assert ran == [f"{graph}.{step}" for step in (steps.PLAN, steps.READ, steps.LOAD)]
    assert metadata_of(result)[table.name]["updated"] == 1
    assert pipeline.query(f"select connection_status, run_id from {table.name} where guid = ?", member) == [
        ("CHALLENGED", result.run_id)
    ]
    assert not list((pipeline.warehouse.path.parent / "landing").rglob("*.parquet"))  # loaded, then deleted
