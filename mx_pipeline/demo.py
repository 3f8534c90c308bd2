"""``mx-pipeline demo``: the whole ingest, end to end, on the built-in sandbox (or on MX when configured).

Starts the sandbox in-process (and the data directory's warehouse afresh: see ``sandbox_session``), registers
the demo users from ``data/reference/demo_users.csv``, connects their banks the way the Connect widget would
(``demo_connections``: connected at two institutions, one CHALLENGED, one DEGRADED, one DENIED), materializes
every ingest asset with its checks, and prints what landed where: ``warehouse.duckdb`` and the analysts'
``analytics.duckdb`` under ``MX_PIPELINE_DATA_DIR``, the files ``mx-pipeline dev`` opens too.
"""

import contextlib
import sys
import time
from collections.abc import Iterator

import dagster as dg

from mx_pipeline import definitions, sandbox_session, settings
from mx_pipeline.defs.ingest.group import MEMBER_ROUTES
from mx_pipeline.defs.lifecycle.gate import RECONNECT_NOTIFICATIONS
from mx_pipeline.defs.models import assets as models
from mx_pipeline.defs.refusals import refusal_in
from mx_pipeline.defs.resources import MxResource, WarehouseResource, mx_resource
from mx_pipeline.demo_categories import pin_demo_merchant_categories
from mx_pipeline.demo_connections import connect_demo_members, registered_demo_users
from mx_pipeline.mx import AuthError, MxClient
from mx_pipeline.mx.credentials import check_credentials
from mx_pipeline.warehouse import Warehouse, tables
from mx_pipeline.warehouse.members import status_counts

# The code location's ``ingest`` job, a step at a time so that progress shows as it goes.
STEPS = [
    [tables.USERS.key_path],
    [tables.MEMBERS.key_path],
    [tables.MEMBER_STATUS.key_path],
    [MEMBER_ROUTES.path, RECONNECT_NOTIFICATIONS.path],  # the status gate and the notifications it decides
    [tables.ACCOUNTS.key_path],
    [tables.TRANSACTIONS.key_path],
    [key.path for key in models.REFERENCE] + [model.key_path for model in models.MODELS],  # staging -> marts
]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo() -> int:
    """Run the demo; the exit code is 0 when every asset materialized and no check failed (warnings are printed)."""
    configured = settings.MxSettings.from_env()
    if not configured.is_sandbox:
        with MxClient.from_settings(configured) as client:
            check_credentials(client)  # before anything changes; refused: mx-pipeline prints one line, exits 2
    try:
        path = _warehouse_for(configured)
    except sandbox_session.Refused as exc:
        print(f"mx-pipeline demo: {exc}", file=sys.stderr)
        return 1
    with _mx(configured) as mx:
        warehouse = Warehouse(path)
        location = definitions.defs()
        resources = {**location.resources, "mx": mx, "warehouse": WarehouseResource(path=str(warehouse.path))}
        definitions_ = [*location.assets, *location.asset_checks]
        ok = _materialize(definitions_, STEPS[:1], resources)
        if configured.is_sandbox:
            with mx.client() as client:
                connect_demo_members(client, registered_demo_users(warehouse))
            pin_demo_merchant_categories(warehouse)
        ok = _materialize(definitions_, STEPS[1:], resources) and ok
        _print_summary(warehouse)
    return 0 if ok else 1


@contextlib.contextmanager
def _mx(configured: settings.MxSettings) -> Iterator[MxResource]:
    if not configured.is_sandbox:
        print(f"Using MX at {configured.base_url} (credentials from MX_CLIENT_ID / MX_API_KEY).")
        yield mx_resource()
        return
    from mx_pipeline.sandbox.server import running_sandbox  # only the demo needs the sandbox server

    print("No MX credentials set: starting the built-in MX sandbox ...")
    with running_sandbox(seed=0) as sandbox:
        print(f"  sandbox listening at {sandbox.base_url}")
        yield MxResource(base_url=sandbox.base_url, client_id=configured.client_id, api_key=configured.api_key)


def _warehouse_for(configured: settings.MxSettings):
    if configured.is_sandbox:
        return sandbox_session.start_afresh()
    if sandbox_session.leave_the_sandbox():
        print(f"{settings.data_dir()} held the sandbox's data: cleared before the first run on MX")
    return settings.warehouse_path()


def _materialize(definitions_: list, steps: list[list[list[str]]], resources: dict) -> bool:
    """Materialize the code location's assets (and their checks) a step at a time, printing what each did."""
    ok = True
    for keys in steps:
        started = time.monotonic()
        names = ["/".join(k) for k in keys]
        shown = " + ".join(names) if len(names) <= 2 else f"{len(names)} SQL models and reference tables"
        print(f"  materializing {shown} ...", flush=True)
        selection = [dg.AssetKey(k) for k in keys]
        result = dg.materialize(
            definitions_, selection=selection, resources=resources, run_config=QUIET, raise_on_error=False
        )
        refusal = refusal_in(result.all_events)
        if refusal:
            raise AuthError(refusal)  # no further step runs on credentials MX refuses, and no summary of old data
        failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
        failed_checks = [e.check_name for e in failed if e.severity == dg.AssetCheckSeverity.ERROR]
        warnings = [e.check_name for e in failed if e.severity == dg.AssetCheckSeverity.WARN]
        ok = ok and result.success and not failed_checks
        for event in result.get_asset_materialization_events():
            print(f"    {event.asset_key.to_user_string():28} {_describe(event.materialization.metadata)}")
        if not result.success:
            print("    FAILED: see the errors above")
        print(
            f"    ({time.monotonic() - started:.1f} s)"
            + (f"  checks failed: {failed_checks}" if failed_checks else "")
            + (f"  checks warned: {warnings}" if warnings else "")
        )
    return ok


def _describe(metadata: dict) -> str:
    value = {k: v.value for k, v in metadata.items()}
    if "members_by_route" in value:
        return "members by route: " + ", ".join(f"{r} {n}" for r, n in sorted(value["members_by_route"].items()))
    if "delivered" in value:
        return f"{value['dagster/row_count']} notifications in the outbox, {value['delivered']} delivered now"
    if "mode" in value:  # a SQL model
        return f"{value['dagster/row_count']:>6} rows  built {value['mode']} in {value['seconds']:.2f} s"
    if "inserted" not in value:  # a reference table
        return f"{value['dagster/row_count']:>6} rows  loaded from data/reference"
    return (
        f"{value.get('dagster/row_count', 0):>6} rows  new {value.get('inserted', 0)},"
        f" updated {value.get('updated', 0)}, quarantined {value.get('quarantined', 0)},"
        f" {value.get('api_calls', 0)} API calls"
    )


def _notification_states(by_state: dict[str, int]) -> str:
    """What became of the notifications, in words: "logged" means nobody was told."""
    words = ", ".join(f"{n} {state}" for state, n in by_state.items())
    if by_state.get("logged"):
        words += " (no product backend configured: logged only, nobody was told; set MX_PIPELINE_NOTIFY_URL)"
    return words


def _print_summary(warehouse: Warehouse) -> None:
    with warehouse.connect() as con:
        by_status = status_counts(con).items()
        (accounts,) = con.execute("select count(*) from raw.mx_accounts").fetchone()
        transactions, pending = con.execute(
            """
            select count(*), count(*) filter (where status = 'PENDING' and removed_at is null)
            from raw.mx_transactions
            """
        ).fetchone()
        (quarantined,) = con.execute("select count(*) from ops.quarantine").fetchone()
        (calls,) = con.execute("select count(*) from ops.api_calls").fetchone()
        notifications = con.execute(
            "select connect_mode, count(*) from ops.reconnect_notifications group by 1 order by 1"
        ).fetchall()
        by_state = con.execute(
            "select state, count(*) from ops.reconnect_notifications group by 1 order by 1"
        ).fetchall()
    print("\nSummary")
    print("  members by status: " + ", ".join(f"{status} {n}" for status, n in by_status))
    print(f"  accounts:          {accounts}")
    print(f"  transactions:      {transactions} ({pending} pending)")
    print(f"  quarantined rows:  {quarantined}")
    print(f"  MX API calls:      {calls}")
    print(
        "  notifications:     "
        + (", ".join(f"{n} to open Connect in {mode} mode" for mode, n in notifications) or "none")
    )
    if by_state:
        print("                     " + _notification_states(dict(by_state)))
    print(f"  warehouse:         {warehouse.path}")
    analytics = models.analytics_path(warehouse)
    print(f"  analytics:         {analytics} (the marts; open it read-only, it never blocks the pipeline)")
    query = "from marts.monthly_spend_by_category order by spend desc limit 10"
    python = f"import duckdb; print(duckdb.connect('{analytics}', read_only=True).sql('{query}'))"
    print(f'\nQuery it:\n  .venv/bin/python -c "{python}"\n')
    print("See the asset graph, its checks and runs in the Dagster UI: `make dev` opens the same files (on the")
    print("sandbox it starts them afresh with the same demo connections) and serves the UI with `dg dev`:")
    print("  make dev")
