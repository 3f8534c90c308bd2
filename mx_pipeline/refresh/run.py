"""One refresh run's part: claim (for a manual run), aggregate the claimed members, record, release.

Scheduled runs arrive with their members already claimed by the sensor under the run's key; a manual run
claims its members itself, after the same safety rules unless the data team overrides them.
"""

import datetime as dt
from collections.abc import Sequence

from mx_pipeline.mx import MxClient
from mx_pipeline.refresh.aggregate import Attempt, refresh_batch
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.warehouse import Warehouse
from mx_pipeline.warehouse.refresh_state import claim, claimed_by, due_members, record_attempts, release_claims

MANUAL, SLA, WEBHOOK = "manual", "sla", "webhook"
AGGREGATING_TRIGGERS = (MANUAL, SLA)
RECORD_WAIT_SECONDS = 600.0


def claim_for_manual_run(
    warehouse: Warehouse,
    members: Sequence[tuple[str, str]],
    policy: RefreshPolicy,
    *,
    run_key: str,
    override_safety: bool,
) -> list[str]:
    """Claim the named (member, user)s the rules allow now; ``override_safety`` skips only the pacing rules."""
    now = dt.datetime.now(dt.UTC)
    with warehouse.connect() as con:
        due = due_members(con, policy, now=now, only=[m for m, _ in members], ignore_sla=True,
                          ignore_pacing=override_safety)  # fmt: skip
        allowed = {m.member_guid for m in due}
        members = [(m, u) for m, u in members if m in allowed]
        claim(con, members, trigger=MANUAL, run_key=run_key, now=now)
        return [m.member_guid for m in claimed_by(con, run_key)]


def refresh_claimed(
    warehouse: Warehouse, client: MxClient, policy: RefreshPolicy, *, run_key: str, trigger: str, run_id: str
) -> list[Attempt]:
    """Aggregate every member the run holds, wait for them, record each attempt, and let go of the claims."""
    with warehouse.connect() as con:
        # A webhook's claim only keeps other triggers away while its run reads what MX already aggregated.
        targets = [m.target for m in claimed_by(con, run_key, triggers=AGGREGATING_TRIGGERS)]
    try:
        attempts = refresh_batch(client, targets, policy)
        # These rows are what the interval, cap and budget count: wait as long as it takes to store them.
        with warehouse.connect(wait_seconds=RECORD_WAIT_SECONDS) as con:
            record_attempts(con, attempts, trigger=trigger, run_id=run_id)
        return attempts
    finally:
        with warehouse.connect(wait_seconds=RECORD_WAIT_SECONDS) as con:
            # A webhook's claim stays until its status read: member_status releases it.
            release_claims(con, run_key=run_key, triggers=AGGREGATING_TRIGGERS)
