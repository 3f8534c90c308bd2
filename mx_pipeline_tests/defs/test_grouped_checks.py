"""An asset's checks run as one step, on one connection to the warehouse, and any of them can still be run alone."""

import dagster as dg

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
