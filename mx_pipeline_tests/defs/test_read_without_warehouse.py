"""The transactions step reads MX without the warehouse: only its plan and its load take the DuckDB file, so any
number of runs read at once while another run, or an analyst, holds it."""

import contextlib

import dagster as dg

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


def test_only_the_plan_and_the_load_take_the_warehouse():
    assert "warehouse" not in read_transactions.required_resource_keys
    assert {plan_reads.pool, read_transactions.pool, load_transactions.pool} == {"duckdb_warehouse", None}
    assert read_transactions.pool is None


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
