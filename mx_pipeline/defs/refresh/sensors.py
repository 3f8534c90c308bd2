"""``member_freshness``: every tick, one query picks the stale members the rules allow; they are refreshed in batches.

Stale means older than the freshness SLA, or, for a member waiting on its user, not read for the slow re-read
cadence: such a member's run only reads its status (never aggregates), so it recovers without an event.

The sensor claims each batch under its run key before asking for the run, so the webhook sensor, a manual
refresh or the next tick never launch a second refresh for the same member; a claim whose run dies expires.
The cursor counts the batches launched; with the tick's time it makes every run key unique. A busy
warehouse is not waited on for long: the tick is skipped with the reason.

What a run could not read (a member's status, accounts or transactions, a user's member list) is read again by a
run of its own once the policy's back-off has passed since that attempt: a re-read, never an aggregation. Its run
key names the failed attempts it answers, so later ticks ask for it once; it runs again only after another try.

Once MX refused our credentials in a run, no run is launched (``defs/refusals.py``): they would all be refused.
"""

import datetime as dt
import hashlib

import dagster as dg

from mx_pipeline.defs.jobs import refresh_run_config, scoped_run_config, sync_members_job
from mx_pipeline.defs.refusals import standing_refusal
from mx_pipeline.defs.resources import RefreshPolicyResource, WarehouseResource
from mx_pipeline.refresh.run import SLA
from mx_pipeline.warehouse import WarehouseBusy
from mx_pipeline.warehouse.refresh_state import due_members
from mx_pipeline.warehouse.sync_state import RETRY_TAG, ReadsToRetry, reads_to_retry

BUSY_WAIT_SECONDS = 5.0
SENSOR_MEMORY, SENSOR_THREADS = "256MB", 1  # a tick at 100k members needs about 60 MB


@dg.sensor(
    job=sync_members_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Refreshes members older than their freshness SLA, in bounded batches within MX's limits.",
)
def member_freshness(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, refresh_policy: RefreshPolicyResource
):
    policy, now = refresh_policy.policy(), _now()
    launched = int(context.cursor or 0)
    refused = standing_refusal(context.instance)
    if refused:  # every run would be refused too: none is launched until a restart or the pause has passed
        return dg.SkipReason(f"no refresh launched while MX refuses our credentials; {refused}")
    try:
        with warehouse.open().connect(wait_seconds=BUSY_WAIT_SECONDS) as con:
            light(con)
            ledger = warehouse.ledger(con)
            expired = ledger.expire(policy.claim_ttl, now=now)
            due = due_members(con, policy, now=now, ledger=ledger)
            batches = [due[i : i + policy.members_per_run] for i in range(0, len(due), policy.members_per_run)]
            for number, batch in enumerate(batches, launched + 1):
                pairs = [(m.member_guid, m.user_guid) for m in batch]
                ledger.claim(pairs, trigger=SLA, run_key=_run_key(number, now), now=now)
            backoff = dt.timedelta(minutes=policy.backoff_base_minutes)
            retry = reads_to_retry(con, now=now, backoff=backoff, limit=policy.members_per_run, ledger=ledger)
    except WarehouseBusy as exc:
        return dg.SkipReason(f"the warehouse is busy; members are judged again next tick: {exc}")
    if expired:
        context.log.warning(f"released {expired} refresh claims whose runs never finished")
    if not batches and not retry:
        return dg.SkipReason(
            "every member is within its SLA or re-read cadence, or waiting out its interval, back-off or cap"
        )
    runs = [
        dg.RunRequest(
            run_key=_run_key(number, now),
            run_config=refresh_run_config([m.member_guid for m in batch], trigger=SLA),
            tags={"mx_pipeline/trigger": SLA, "mx_pipeline/members": str(len(batch))},
        )
        for number, batch in enumerate(batches, launched + 1)
    ]
    if retry:
        runs.append(_retry_run(retry))
    return dg.SensorResult(run_requests=runs, cursor=str(launched + len(batches)))


def light(con) -> None:
    """A sensor's connection: the code server keeps running between ticks, so its DuckDB stays small."""
    con.execute(f"set memory_limit = '{SENSOR_MEMORY}'")
    con.execute(f"set threads = {SENSOR_THREADS}")


def _retry_run(retry: ReadsToRetry) -> dg.RunRequest:
    """A run reading again what failed; its key names those failed attempts, so it is asked for once."""
    attempts = "|".join(f"{guid}@{at.isoformat()}" for guid, at in [*retry.members, *retry.users])
    return dg.RunRequest(
        run_key=f"retry-{hashlib.sha256(attempts.encode()).hexdigest()[:16]}",
        run_config=scoped_run_config([u for u, _ in retry.users], [m for m, _ in retry.members]),
        tags={"mx_pipeline/trigger": RETRY_TAG, "mx_pipeline/members": str(len(retry.members))},
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)  # one place, so tests can judge a tick at any time without waiting for it


def _run_key(batch_number: int, now: dt.datetime) -> str:
    return f"refresh-{now:%Y%m%dT%H%M%S}-{batch_number}"  # unique even if the cursor is ever reset
