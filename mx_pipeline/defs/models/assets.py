"""``dbt_like_sql/`` as Dagster assets: one asset per model, upstream assets read from each model's SQL.

All models of a run are built by one step in the warehouse pool, in dependency order (only those selected,
when a subset is materialized), after the reference CSVs are reloaded; each model that depends on them is
rebuilt in full when they differ from the version it was last built with. When the run built any mart, the marts
are republished to ``analytics.duckdb`` for analysts: only the keys the run replaced (warehouse/publish.py).
"""

from pathlib import Path

import dagster as dg
from pydantic import Field

from mx_pipeline.defs.ingest.group import ANALYSTS_FRESHNESS, MEMBER_ROUTES, POOL, REFRESH_ATTEMPTS
from mx_pipeline.defs.markdown import markdown_table
from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource
from mx_pipeline.warehouse import Warehouse, tables
from mx_pipeline.warehouse.model_changes import replaced_rows_read
from mx_pipeline.warehouse.models import REFERENCE_TABLES, load_models, load_reference, run_model
from mx_pipeline.warehouse.publish import publish

GROUP = "models"
MODELS = load_models()
KEEP_REPLACED = replaced_rows_read(MODELS)  # whether a model is selected or not: its readers may run later
REFERENCE = [dg.AssetKey(["reference", name]) for name in REFERENCE_TABLES]
# Tables some asset writes beside its own: lineage points at that asset.
WRITTEN_BY = {
    "ops.notification_episodes": MEMBER_ROUTES,
    "ops.refresh_claims": REFRESH_ATTEMPTS,
    "ops.end_users": dg.AssetKey(tables.USERS.key_path),
    "ops.end_users_left": dg.AssetKey(tables.USERS.key_path),  # written beside ops.end_users
    "ops.member_sync": dg.AssetKey(tables.TRANSACTIONS.key_path),  # every ingest step records reads; this one last
}
# Tables the product writes (never the pipeline): shown as external assets.
PRODUCT_INPUTS = {
    "ops.category_overrides": "a transaction's category; survives every re-sync and re-mapping.",
    "ops.merchant_category_overrides": "the category of every transaction of an MX merchant.",
    "ops.freshness_sla": "the freshness SLA of a member, a user or a user tier.",
}
product_inputs = [
    dg.AssetSpec(
        table.split("."), description=f"One row per override, written by the product. {text}", group_name=GROUP
    )
    for table, text in PRODUCT_INPUTS.items()
]

# Numbers Dagster plots per build of a model (README: "What Dagster plots"): one row, one number per column.
GAUGES = {
    "marts.member_health": """
        select count(*) filter (where is_stale and retired_at is null) as stale_members,
               count(*) filter (where last_sync_outcome = 'failed') as failed_syncs,
               count(*) filter (where notification_state = 'dead') as dead_notifications
        from marts.member_health
    """,
}


def _gauges(con, model: str) -> dict[str, int]:
    if model not in GAUGES:
        return {}
    cursor = con.execute(GAUGES[model])
    return {column[0]: int(n) for column, n in zip(cursor.description, cursor.fetchone(), strict=True)}


# What the UI shows of a model's rows with each build, so its reader sees each member's health without SQL.
PREVIEWS = {
    "marts.member_health": """
        select member_guid, user_id, institution_code, connection_status, route, reason
        from marts.member_health
        where retired_at is null
        order by route = 'ready', user_id, member_guid
        limit 50
    """,
}


def _preview(con, model: str) -> dict[str, dg.MetadataValue]:
    """A markdown table of the model's rows worth reading first (``PREVIEWS``), as the ``preview`` metadata."""
    if model not in PREVIEWS:
        return {}
    return {"preview": dg.MetadataValue.md(markdown_table(con.execute(PREVIEWS[model])))}


def analytics_path(wh: Warehouse) -> Path:
    """Where analysts read the marts: ``analytics.duckdb`` beside the warehouse file."""
    return wh.path.with_name("analytics.duckdb")


def _key(table: str) -> dg.AssetKey:
    return WRITTEN_BY.get(table, dg.AssetKey(table.split(".")))


class ModelsConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description="Rebuild every model from scratch: after deleting an override, or to check an incremental model.",
    )


@dg.multi_asset(
    name="sql_models",
    specs=[
        *(dg.AssetSpec(key, description=f"One row per line of data/reference/{key.path[-1]}.csv.", group_name=GROUP,
                       kinds={"csv", "duckdb"}, skippable=True) for key in REFERENCE),
        *(dg.AssetSpec(m.key_path, deps=sorted({_key(t) for t in m.reads}, key=str), description=m.description,
                       group_name=GROUP, kinds={"sql", "duckdb"}, skippable=True,
                       freshness_policy=ANALYSTS_FRESHNESS if m.name.startswith("marts.") else None,
                       metadata={"file": str(m.path.relative_to(m.path.parents[2])), "materialized": m.materialized})
          for m in MODELS),
    ],
    can_subset=True,
    pool=POOL,
)  # fmt: skip
def sql_models(
    context: dg.AssetExecutionContext,
    config: ModelsConfig,
    warehouse: WarehouseResource,
    refresh_policy: RefreshPolicyResource,
):
    selected = context.selected_asset_keys
    wh, run_id = warehouse.open(), context.run.run_id
    with wh.connect() as con:
        reference = load_reference(con)
        for table, rows in reference.rows.items():
            if dg.AssetKey(table.split(".")) in selected:
                yield dg.MaterializeResult(asset_key=table.split("."), metadata={"dagster/row_count": rows})
        built_marts = False
        for model in MODELS:
            if dg.AssetKey(model.key_path) not in selected:
                continue
            result = run_model(
                con,
                model,
                run_id=run_id,
                full_refresh=config.full_refresh,
                policy=refresh_policy.policy(),
                keep_replaced=KEEP_REPLACED.get(model.name, frozenset()),
            )
            if result.reference_changed:
                context.log.info(f"{model.name}: data/reference changed since its last build: rebuilt in full")
            built_marts = built_marts or model.name.startswith("marts.")
            yield dg.MaterializeResult(
                asset_key=model.key_path,
                metadata={
                    "dagster/row_count": result.rows,
                    "recomputed": result.recomputed,
                    "seconds": round(result.seconds, 3),
                    "mode": result.mode,
                    "reference_changed": result.reference_changed,
                    **_gauges(con, model.name),
                    **_preview(con, model.name),
                },
            )
        if built_marts:
            target = analytics_path(wh)
            published = publish(con, target, MODELS)
            how = ", ".join(
                f"{name} {p.how}" + (f" ({p.keys:,} keys)" if p.keys else "") for name, p in published.items()
            )
            context.log.info(f"published {len(published)} marts to {target}: {how}")
