"""The code location loads offline with no environment, and shows the ingest lineage the data team expects."""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[2]
INGEST = ["raw/mx_users", "raw/mx_members", "raw/mx_member_status", "raw/mx_accounts", "raw/mx_transactions"]
LINEAGE = [*INGEST[:3], "ops/member_routes", *INGEST[3:]]  # the status gate decides who is fetched
DESCRIBE_GRAPH = """
import json, mx_pipeline.definitions as d
defs = d.defs()
graph = defs.resolve_asset_graph()
nodes = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
print(json.dumps({
    "resources": sorted(defs.resources),
    "assets": {key: {
        "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
        "group": node.group_name,
        "description": node.description,
        "pools": sorted(node.pools or []),
    } for key, node in nodes.items()},
}))
"""


def _bare_env(tmp_path) -> dict[str, str]:
    """The environment of a fresh checkout: no MX credentials, no Dagster home, state under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MX_", "DAGSTER_"))}
    return env | {"MX_PIPELINE_DATA_DIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}


def test_definitions_load_offline_and_show_the_ingest_lineage(tmp_path):
    described = subprocess.run(
        [sys.executable, "-c", DESCRIBE_GRAPH], cwd=REPO, env=_bare_env(tmp_path), capture_output=True, text=True
    )
    assert described.returncode == 0, described.stderr
    location = json.loads(described.stdout)
    assets = location["assets"]
    for upstream, downstream in itertools.pairwise(LINEAGE):
        assert upstream in assets[downstream]["deps"]
    assert assets["raw/mx_member_status"]["deps"] == ["ops/refresh_attempts", "raw/mx_members"]
    assert assets["ops/refresh_attempts"]["deps"] == ["raw/mx_members"]
    assert assets["ops/reconnect_notifications"]["deps"] == ["raw/mx_member_status"]
    for key in INGEST:
        assert assets[key]["group"] == "ingest"
    for key in ("ops/member_routes", "ops/reconnect_notifications"):
        assert assets[key]["group"] == "lifecycle"
    assert assets["ops/refresh_attempts"]["group"] == "refresh"
    # Written by the product, not by any step: shown for lineage only.
    product_inputs = {"ops/category_overrides", "ops/merchant_category_overrides", "ops/freshness_sla"}
    for key, asset in assets.items():
        assert asset["description"].startswith("One row per"), key
        # The pool orders the long holders of the warehouse: the users' registration, the loads of what runs landed
        # and the models. Every other step opens the file for moments and waits on it (warehouse/connection.py).
        landed = ("raw/mx_members", "raw/mx_member_status", "raw/mx_accounts", "raw/mx_transactions")
        long_holder = (
            key == "raw/mx_users" or key in landed or (asset["group"] == "models" and key not in product_inputs)
        )
        assert asset["pools"] == (["duckdb_warehouse"] if long_holder else []), key
    models = {"staging/stg_transactions": ["raw/mx_transactions"],
              "marts/monthly_spend_by_category": ["marts/fct_transactions"]}  # fmt: skip
    for model, upstream in models.items():  # lineage read from the SQL itself
        assert assets[model]["deps"] == upstream and assets[model]["group"] == "models"
    assert location["resources"] == ["connect_links", "mx", "notifier", "refresh_policy", "warehouse"]


def test_dagster_definitions_validate_passes(tmp_path):
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=_bare_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_project_instance_runs_one_warehouse_step_at_a_time(tmp_path):
    shutil.copy(REPO / "data" / "dagster_home" / "dagster.yaml", tmp_path / "dagster.yaml")
    pools = dg.DagsterInstance.from_config(str(tmp_path)).get_concurrency_config().pool_config
    assert pools.default_pool_limit == 1


TICK_WITHOUT_PANDAS = """
import sys
from pathlib import Path
import dagster as dg
import mx_pipeline.definitions as d
from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource
from mx_pipeline_tests.benchmarks.bench_freshness_tick import fill

fill(Path(sys.argv[1]), 200)
sensor = d.defs().get_sensor_def("member_freshness")
resources = {"warehouse": WarehouseResource(path=sys.argv[1]), "refresh_policy": RefreshPolicyResource()}
with dg.instance_for_test() as instance:
    result = sensor(dg.build_sensor_context(instance=instance, resources=resources))
assert isinstance(result, dg.SensorResult) and result.run_requests, result
print(sorted(m for m in ("numpy", "pandas", "pandera") if m in sys.modules))
"""


def test_the_code_server_loads_and_ticks_without_pandas(tmp_path):
    """pandas, numpy and pandera are 46 MiB of a code server that only needs them inside runs (issue 14, item 7)."""
    ticked = subprocess.run(
        [sys.executable, "-c", TICK_WITHOUT_PANDAS, str(tmp_path / "warehouse.duckdb")],
        cwd=REPO,
        env=_bare_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert ticked.returncode == 0, ticked.stderr
    assert ticked.stdout.splitlines()[-1] == "[]"
