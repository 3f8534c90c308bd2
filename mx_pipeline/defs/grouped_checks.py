"""Checks on one asset that run as one step, on one connection to the warehouse.

A check of its own is a step of its own: a DuckDB instance to start (about 15 ms), a pool slot to claim where it
takes one, and on the instance's SQLite or Postgres about 90 ms of events (a one-member sync run on a SQLite
instance spent 1.0-1.4 s of its 5-6 s in 11 check steps). Grouped, an asset's checks cost one of each, and any of
them can still be run alone from the UI. A check that raises leaves the others their results, and fails the step.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dagster as dg
import duckdb

from mx_pipeline.defs.resources import WarehouseResource


@dataclass(frozen=True)
class Checking:
    """What a check is evaluated with, besides the connection: found before the warehouse is opened, so the file is
    not held while Dagster's instance answers."""

    context: dg.AssetCheckExecutionContext
    last_run_id: str  # the run that last materialized the asset (this run, when the check runs with it)


Evaluate = Callable[[Checking, duckdb.DuckDBPyConnection], dg.AssetCheckResult]


@dataclass(frozen=True)
class Check:
    evaluate: Evaluate
    description: str


def grouped_checks(
    asset: dg.AssetKey, checks: Mapping[str, Check], *, memory_limit: str | None = None, pool: str | None = None
) -> dg.AssetChecksDefinition:
    """``checks`` (by name) on ``asset``, as one step (``<asset>_checks``) evaluating those selected, in their order,
    on one connection (its buffer pool capped at ``memory_limit``), holding ``pool`` where given."""
    checks = dict(checks)
    specs = [dg.AssetCheckSpec(name, asset=asset, description=check.description) for name, check in checks.items()]

    @dg.multi_asset_check(specs=specs, name=f"{'__'.join(asset.path)}_checks", can_subset=True, pool=pool)
    def evaluate_selected(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        selected = [name for name in checks if dg.AssetCheckKey(asset, name) in context.selected_asset_check_keys]
        checking = Checking(context, _last_run_id(context, asset))
        raised: dict[str, Exception] = {}
        with warehouse.open(memory_limit=memory_limit).connect() as con:
            for name in selected:
                try:
                    result = checks[name].evaluate(checking, con)
                except Exception as exc:  # the others still run, as they did in steps of their own
                    context.log.exception(f"the check {name} on {asset.to_user_string()} raised")
                    raised[name] = exc
                    continue
                yield result._replace(asset_key=asset, check_name=name)  # AssetCheckResult is a NamedTuple
        if raised:
            first = next(iter(raised.values()))
            raise dg.Failure(f"{asset.to_user_string()}: the checks {sorted(raised)} raised: {first!r}") from first

    return evaluate_selected


def _last_run_id(context: dg.AssetCheckExecutionContext, asset: dg.AssetKey) -> str:
    event = context.instance.get_latest_materialization_event(asset)
    return event.run_id if event else context.run.run_id
