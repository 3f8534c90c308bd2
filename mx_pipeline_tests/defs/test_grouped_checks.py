"""An asset's checks run as one step, on one connection to the warehouse; any of them can still be run alone, and one
that raises leaves the others their results."""

import dagster as dg

from mx_pipeline.defs.grouped_checks import Check, Checking, grouped_checks
from mx_pipeline.defs.resources import WarehouseResource
from mx_pipeline.warehouse import Warehouse, tables
from mx_pipeline_tests.defs.conftest import INGEST, LOCATION

RAW_TABLE_CHECKS = {"guids_are_unique", "nothing_quarantined"}
FCT = dg.AssetKey(["marts", "fct_transactions"])
TRANSACTIONS = dg.AssetKey(tables.TRANSACTIONS.key_path)


def _definitions_checking(asset: dg.AssetKey) -> list[set[str]]:
    """The names of the checks on ``asset``, one set per definition (per step) holding any."""
    return [
        names
        for definition in LOCATION.asset_checks
        if (names := {key.name for key in definition.check_keys if key.asset_key == asset})
    ]


def test_each_table_s_checks_are_one_step():
    raw = {spec: dg.AssetKey(spec.key_path) for spec in (tables.USERS, tables.MEMBERS, tables.MEMBER_STATUS,
                                                          tables.ACCOUNTS)}  # fmt: skip
    for asset in raw.values():
        assert _definitions_checking(asset) == [RAW_TABLE_CHECKS]
    assert _definitions_checking(TRANSACTIONS) == [RAW_TABLE_CHECKS | {"transactions_belong_to_known_accounts"}]
    assert _definitions_checking(FCT) == [{"category_coverage", "transactions_are_unique"}]


def test_a_table_s_checks_open_the_warehouse_once(pipeline, monkeypatch):
    pipeline.materialize()
    opened = []
    connect = Warehouse.connect
    monkeypatch.setattr(Warehouse, "connect", lambda self, **kw: opened.append(self.path) or connect(self, **kw))
    checks = [dg.AssetCheckKey(TRANSACTIONS, name) for name in ("guids_are_unique", "nothing_quarantined")]
    checks.append(dg.AssetCheckKey(TRANSACTIONS, "transactions_belong_to_known_accounts"))

    result = dg.materialize(INGEST, selection=dg.AssetSelection.checks(*checks), resources=pipeline.resources())

    assert {e.asset_check_key: e.passed for e in result.get_asset_check_evaluations()} == dict.fromkeys(checks, True)
    assert opened == [pipeline.warehouse.path]


def test_one_check_of_a_table_runs_alone(pipeline):
    pipeline.materialize()
    alone = dg.AssetCheckKey(TRANSACTIONS, "nothing_quarantined")

    result = dg.materialize(INGEST, selection=dg.AssetSelection.checks(alone), resources=pipeline.resources())

    assert [(e.asset_check_key, e.passed) for e in result.get_asset_check_evaluations()] == [(alone, True)]


def test_a_check_that_raises_leaves_the_others_their_results_and_fails_the_step(tmp_path):
    @dg.asset
    def ledger() -> None:
        return None

    def breaks(checking: Checking, con) -> dg.AssetCheckResult:
        raise RuntimeError("the query broke")

    def holds(checking: Checking, con) -> dg.AssetCheckResult:
        (one,) = con.execute("select 1").fetchone()
        return dg.AssetCheckResult(passed=one == 1, metadata={"last_run_id": checking.last_run_id})

    checks = grouped_checks(ledger.key, {"breaks": Check(breaks, "raises"), "holds": Check(holds, "passes")})
    warehouse = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))

    result = dg.materialize([ledger, checks], resources={"warehouse": warehouse}, raise_on_error=False)

    assert not result.success
    [holds_evaluation] = result.get_asset_check_evaluations()
    assert (holds_evaluation.check_name, holds_evaluation.passed) == ("holds", True)
    assert holds_evaluation.metadata["last_run_id"].value == result.run_id  # the asset was materialized by this run
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "ledger_checks"
    assert "the checks ['breaks'] raised: RuntimeError('the query broke')" in failure.event_specific_data.error.message
