"""Checks on one asset that run as one step, on one connection to the warehouse.

A check of its own is a step of its own: a DuckDB instance to start (about 15 ms), a pool slot to claim where it
takes one, and on the instance's SQLite or Postgres about 90 ms of events (a one-member sync run on a SQLite
instance spent 1.0 s of its 4.6 s in 11 check steps). Grouped, an asset's checks cost one of each, and any of them
can still be run alone from the UI.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dagster as dg
import duckdb

from mx_pipeline.defs.resources import WarehouseResource

Evaluate = Callable[[dg.AssetCheckExecutionContext, duckdb.DuckDBPyConnection], dg.AssetCheckResult]


@dataclass(frozen=True)
class Check:
    evaluate: Evaluate
    description: str


def grouped_checks(
    asset: dg.AssetKey, checks: Mapping[str, Check], *, memory_limit: str | None = None, pool: str | None = None
) -> dg.AssetChecksDefinition:
    """``checks`` (by name) on ``asset``, as one step (``<asset>_checks``) evaluating those selected, in their order,
    on one connection (its buffer pool capped at ``memory_limit``), holding ``pool`` where given."""
    specs = [dg.AssetCheckSpec(name, asset=asset, description=check.description) for name, check in checks.items()]

    @dg.multi_asset_check(specs=specs, name=f"{'__'.join(asset.path)}_checks", can_subset=True, pool=pool)
    def evaluate_selected(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        selected = {key.name for key in context.selected_asset_check_keys}
        with warehouse.open(memory_limit=memory_limit).connect() as con:
            for name in (name for name in checks if name in selected):
                result = checks[name].evaluate(context, con)
                yield result._replace(asset_key=asset, check_name=name)  # AssetCheckResult is a NamedTuple

    return evaluate_selected
