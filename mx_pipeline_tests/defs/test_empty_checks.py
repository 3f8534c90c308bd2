"""A check with nothing to check says so: on 0 rows it fails with WARN severity (a warning in the UI, never a
blocked asset or a failed run) and its description says it checked 0 rows; with rows it passes plainly."""

import dagster as dg
import pytest

from mx_pipeline import settings
from mx_pipeline.defs.nothing_checked import unless_nothing_checked
from mx_pipeline.mx import MxClient
from mx_pipeline.sandbox.server import running_sandbox
from mx_pipeline.warehouse import Warehouse
from mx_pipeline_tests.conftest import FAST_SANDBOX
from mx_pipeline_tests.defs.conftest import LOCATION, Pipeline

NOT_ABOUT_ROWS = {"connect_service_opens_our_links"}  # compares link identities with the connect service
ROW_CHECKS = {key for checks in LOCATION.asset_checks for key in checks.check_keys if key.name not in NOT_ABOUT_ROWS}


@pytest.fixture
def empty(tmp_path) -> Pipeline:
    """MX with no users, and no users to register: every table stays empty."""
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("id\n")
    with (
        running_sandbox(**FAST_SANDBOX) as sandbox,
        MxClient(sandbox.base_url, settings.SANDBOX_CLIENT_ID, settings.SANDBOX_API_KEY) as client,
    ):
        yield Pipeline(sandbox, client, Warehouse(tmp_path / "warehouse.duckdb"), users_csv, {})


def _row_checks(result: dg.ExecuteInProcessResult) -> dict[dg.AssetCheckKey, dg.AssetCheckEvaluation]:
    evaluations = {e.asset_check_key: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) >= ROW_CHECKS
    return {key: evaluations[key] for key in ROW_CHECKS}


def test_on_an_empty_warehouse_every_check_warns_that_it_checked_0_rows(empty):
    result = empty.materialize()

    assert result.success  # a warning blocks nothing (every_member_read is blocking) and fails no run
    assert len(ROW_CHECKS) == 16
    shown = {key: (e.passed, e.severity, e.description) for key, e in _row_checks(result).items()}
    warnings = {key: (False, dg.AssetCheckSeverity.WARN, description) for key, (*_, description) in shown.items()}
    assert shown == warnings
    assert all(description.startswith("checked 0 rows: ") for *_, description in shown.values())
    members = dg.AssetCheckKey(dg.AssetKey(["marts", "member_health"]), "every_member_read")
    assert shown[members][2] == "checked 0 rows: raw.mx_members is empty, so there was nothing to check"


def test_with_rows_every_check_passes_plainly(pipeline):
    result = pipeline.materialize()

    shown = {key: (e.passed, e.description) for key, e in _row_checks(result).items()}
    assert shown == dict.fromkeys(ROW_CHECKS, (True, None))


def test_a_real_failure_on_0_rows_stays_an_error():
    failed = dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata={"failed_users": 1})
    assert unless_nothing_checked(failed, 0, "raw.mx_members") is failed
