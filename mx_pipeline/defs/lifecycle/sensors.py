"""``connect_events``: drains the connect service's spool into ``ops`` and launches ``sync_members`` runs.

Each tick stores what the spool holds (parsed one by one, deduped by key; whatever cannot be stored as an event
quarantined with its bytes, so one bad webhook never holds up the rest), acknowledges it to the spool only after
the warehouse committed (a warehouse error raises and leaves the batch for the next tick), then launches one run
per batch of users whose events came after the cursor. The cursor is the last event ``seq`` launched for, and
run keys are derived from it, so a tick that is retried launches nothing twice. A warehouse held by a run is not
waited on for long: the tick is skipped with the reason, and the events stay in the spool for the next one. Each
tick also prunes the spool's key markers and drained files past the dedupe window (they are in
``ops.member_events`` by then). Once MX refused our credentials in a run (``defs/refusals.py``), events are still
stored but no run is launched and the cursor stays: they are launched for once a run may succeed again.
"""

import datetime as dt
import time

import dagster as dg

from mx_pipeline import settings
from mx_pipeline.connect.spool import Spool
from mx_pipeline.defs.jobs import scoped_run_config, sync_members_job
from mx_pipeline.defs.refusals import standing_refusal
from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource
from mx_pipeline.refresh.run import WEBHOOK
from mx_pipeline.warehouse import WarehouseBusy
from mx_pipeline.warehouse.member_events import events_after, store_spooled

SPOOL_BATCH = 1000  # events drained per tick
USERS_PER_RUN = 200  # a burst of events becomes bounded runs, never one huge run or one run per event
EVENTS_PER_TICK = 5000
BUSY_WAIT_SECONDS = 5.0
QUARANTINE_RUN_ID = "sensor:connect_events"  # what ops.quarantine shows as the "run" of a rejected event
spool_clock = time.time_ns  # "now" for the spool's dedupe window and pruning (tests move it)


@dg.sensor(
    job=sync_members_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Drains Connect callbacks and MX webhooks from the spool; re-syncs the users they concern.",
)
def connect_events(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, refresh_policy: RefreshPolicyResource
):
    spool, now = Spool(settings.spool_dir(), clock=spool_clock), dt.datetime.now(dt.UTC)
    pending = spool.pending(limit=SPOOL_BATCH)
    cursor = int(context.cursor or 0)
    refused = standing_refusal(context.instance)
    try:
        with warehouse.open().connect(wait_seconds=BUSY_WAIT_SECONDS) as con:
            # Claims of runs that died are released here too, so they expire even with the freshness sensor off.
            ledger = warehouse.ledger(con)
            ledger.expire(refresh_policy.policy().claim_ttl, now=now)
            stored = store_spooled(con, pending, run_id=QUARANTINE_RUN_ID, now=now)
            new = events_after(con, cursor, limit=EVENTS_PER_TICK)
            batches = [] if refused else _batches(new)
            for run_key, _, members in batches:
                ledger.claim(members, trigger=WEBHOOK, run_key=run_key, now=now)  # keeps SLA refreshes away
    except WarehouseBusy as exc:
        return dg.SkipReason(f"the warehouse is busy, events stay in the spool for the next tick: {exc}")
    spool.acknowledge(pending)
    spool.prune()
    if stored.quarantined:
        context.log.warning(f"{stored.quarantined} spooled events could not be stored as events; see ops.quarantine")
    if not new:
        return dg.SkipReason(f"no new member events ({len(pending)} drained, {stored.quarantined} quarantined)")
    if refused:  # the cursor stays: these events are launched for when a run may succeed again
        return dg.SkipReason(
            f"{len(new)} member events wait, no run launched while MX refuses our credentials; {refused}"
        )
    runs = [
        dg.RunRequest(
            run_key=run_key, run_config=scoped_run_config(users), tags={"mx_pipeline/trigger": "member_events"}
        )
        for run_key, users, _ in batches
    ]
    return dg.SensorResult(run_requests=runs, cursor=str(new[-1][0]))


def _batches(events: list[tuple[int, str, str | None]]) -> list[tuple[str, list[str], list[tuple[str, str]]]]:
    """(run key, users, their events' (member, user)s) per batch of at most ``USERS_PER_RUN`` users."""
    if not events:
        return []
    users = list(dict.fromkeys(user_guid for _, user_guid, _ in events))
    last_seq = events[-1][0]
    batches = []
    for i in range(0, len(users), USERS_PER_RUN):
        chunk = set(users[i : i + USERS_PER_RUN])
        members = [(m, u) for _, u, m in events if m and u in chunk]
        batches.append((f"member-events-{last_seq}-{i // USERS_PER_RUN}", users[i : i + USERS_PER_RUN], members))
    return batches
