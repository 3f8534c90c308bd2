"""``ops/refresh_attempts``: ask MX to aggregate the run's members and wait for them, before their status is read.

Outside the warehouse pool on purpose: the step spends minutes polling MX and only seconds writing (claims and
attempt rows, on short connections that wait for the file), and holding the single writer slot that long
would stall every other run; no connection is open while MX is called. The members come from the run's claims:
the freshness sensor claims them before it launches the run; a manual run (``refresh_now``) claims its scope
itself, after the safety rules. The step lets go of its claims however it ends (``refresh/run.py``).
"""

import dagster as dg
from pydantic import Field

from mx_pipeline.defs.ingest.config import ScopeConfig
from mx_pipeline.defs.ingest.group import REFRESH_ATTEMPTS
from mx_pipeline.defs.jobs import run_key_of
from mx_pipeline.defs.resources import MxResource, RefreshPolicyResource, WarehouseResource
from mx_pipeline.refresh.run import MANUAL, refresh_step
from mx_pipeline.warehouse import ApiCallLog, tables
from mx_pipeline.warehouse.members import EVERYTHING, listed_members


class RefreshConfig(ScopeConfig):
    refresh_now: bool = Field(
        default=False, description="Refresh the members in scope now (the scope must name them): a manual refresh."
    )
    override_safety: bool = Field(
        default=False,
        description="With refresh_now: skip the minimum interval, the attempt cap and the back-off "
        "(routes, claims and the budget hold).",
    )
    trigger: str = Field(default=MANUAL, description="sla, webhook or manual: recorded on each attempt.")


@dg.asset(
    key=REFRESH_ATTEMPTS,
    deps=[tables.MEMBERS.key_path],
    group_name="refresh",
    kinds={"python", "duckdb"},
    description="One row per aggregation asked of MX (or status re-read): member, trigger, outcome, API calls.",
)
def refresh_attempts(
    context: dg.AssetExecutionContext,
    config: RefreshConfig,
    mx: MxResource,
    warehouse: WarehouseResource,
    refresh_policy: RefreshPolicyResource,
) -> dg.MaterializeResult:
    wh, policy, run_key = warehouse.open(), refresh_policy.policy(), run_key_of(context)
    api_log = ApiCallLog(context.run.run_id)
    named = None
    if config.refresh_now:
        if config.scope == EVERYTHING:
            raise dg.Failure("refresh_now needs member_guids or user_guids: a refresh never targets everyone at once")
        with wh.connect() as con:
            named = listed_members(con, config.scope)
    with mx.client([api_log]) as client:
        attempts, refused = refresh_step(
            wh,
            client,
            policy,
            run_key=run_key,
            trigger=config.trigger,
            run_id=context.run.run_id,
            manual_members=named,
            override_safety=config.override_safety,
            shared_url=warehouse.shared_state_url,
            log=context.log,
        )
    if refused:
        context.log.warning(f"not refreshed now (safety rules, or another run holds them): {refused}")
    with wh.connect() as con:
        api_log.flush(con)
    outcomes: dict[str, int] = {}
    for attempt in attempts:
        outcomes[attempt.outcome] = outcomes.get(attempt.outcome, 0) + 1
    return dg.MaterializeResult(
        metadata={
            "attempts": len(attempts),
            "outcomes": dg.MetadataValue.json(outcomes),
            "api_calls": api_log.total,
            "api_429s": api_log.rate_limited,
            "trigger": config.trigger,
        }
    )
