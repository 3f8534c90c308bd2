"""Member health for the refresh scheduler: members that used every attempt of the window and are still stale."""

import datetime as dt

import dagster as dg

from mx_pipeline.defs.ingest.group import REFRESH_ATTEMPTS
from mx_pipeline.defs.nothing_checked import unless_nothing_checked
from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource
from mx_pipeline.warehouse.refresh_state import exhausted_members

SHOWN = 50


@dg.asset_check(
    asset=REFRESH_ATTEMPTS,
    description="No stale member has used up its refresh attempts for the window (those wait, and need a look).",
)
def no_member_exhausted_its_attempts(
    warehouse: WarehouseResource, refresh_policy: RefreshPolicyResource
) -> dg.AssetCheckResult:
    policy = refresh_policy.policy()
    with warehouse.open().connect() as con:
        ledger = warehouse.ledger(con)
        exhausted = exhausted_members(con, policy, now=dt.datetime.now(dt.UTC), ledger=ledger)
        (members,) = con.execute("select count(*) from raw.mx_members where removed_at is null").fetchone()
    result = dg.AssetCheckResult(
        passed=not exhausted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "exhausted": len(exhausted),
            "members": dg.MetadataValue.json(exhausted[:SHOWN]),
            "max_attempts_per_window": f"{policy.max_attempts} per {policy.attempt_window_hours:g} h",
        },
    )
    return unless_nothing_checked(result, members, "raw.mx_members")
