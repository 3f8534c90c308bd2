"""``models_after_sync``: one ``build_models`` run for whatever the sync runs wrote, once it has settled.

Sync runs (events, refreshes, re-reads) build no model: a burst of webhooks becomes many small runs, and each
rebuilding and republishing the marts would hold the warehouse for nothing. This sensor watches the
materializations of the tables the models read (Dagster's event log, no warehouse connection) and, when any
came after the last build it asked for, waits for them to settle: the first change it sees starts the delay
(``MX_PIPELINE_MODELS_DELAY_SECONDS``, 60 s), everything that lands within it joins, and then one build is asked
for. While a build is queued or running, none is asked for; what lands meanwhile goes to the next build,
launched the delay after it was first seen. A change therefore reaches the marts within the delay, a tick and
the build in progress, and builds are never closer together than the delay.

The cursor holds the newest materialization the last build covered (its event log id), and when the change
waiting now was first seen; run keys are derived from that id, so a retried tick asks for nothing twice.
"""

import datetime as dt
import json
from dataclasses import asdict, dataclass

import dagster as dg

from mx_pipeline import settings
from mx_pipeline.defs.jobs import build_models_job
from mx_pipeline.defs.models.assets import sql_models

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# What the models read, written by the syncs (and the product's overrides): every dependency that is no model.
SYNCED_KEYS = sorted({dep for deps in sql_models.asset_deps.values() for dep in deps} - set(sql_models.keys), key=str)
MODEL_KEYS = sorted(sql_models.keys, key=str)


@dataclass(frozen=True)
class Cursor:
    built_through: int = 0  # the newest materialization (event log id) the last build asked for covers
    waiting_since: str | None = None  # when the change waiting now was first seen (ISO)

    @classmethod
    def parse(cls, text: str | None) -> "Cursor":
        return cls(**json.loads(text)) if text else cls()

    def __str__(self) -> str:
        return json.dumps(asdict(self))


@dg.sensor(
    job=build_models_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Builds the SQL models once what the sync runs wrote has settled: one build for a burst of runs.",
)
def models_after_sync(context: dg.SensorEvaluationContext):
    cursor, now = Cursor.parse(context.cursor), _now()
    latest = latest_of(context.instance, SYNCED_KEYS)
    if latest <= max(cursor.built_through, last_full_build(context.instance)):
        return dg.SkipReason("nothing the models read changed since the last build")
    waiting_since = dt.datetime.fromisoformat(cursor.waiting_since) if cursor.waiting_since else now
    waiting = Cursor(cursor.built_through, waiting_since.isoformat())
    if building(context.instance):
        return dg.SensorResult(skip_reason="a model build is queued or running; what changed goes in the next one",
                               cursor=str(waiting))  # fmt: skip
    left = dt.timedelta(seconds=settings.models_delay_seconds()) - (now - waiting_since)
    if left > dt.timedelta(0):
        return dg.SensorResult(
            skip_reason=f"synced data is settling: one build in {left.total_seconds():.0f} s takes it all",
            cursor=str(waiting),
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"build-models-{latest}", tags={"mx_pipeline/trigger": "synced_data"})],
        cursor=str(Cursor(latest)),
    )


def latest_of(instance: dg.DagsterInstance, keys: list[dg.AssetKey]) -> int:
    """The event log id of the newest materialization of these assets (0: none yet)."""
    return max(_last_materializations(instance, keys).values(), default=0)


def last_full_build(instance: dg.DagsterInstance) -> int:
    """The oldest of the models' latest materializations: everything synced before it is in the marts (0: a model
    was never built). An ``ingest`` run or "Materialize all" builds them too: no second build follows."""
    ids = _last_materializations(instance, MODEL_KEYS)
    return min(ids.values()) if len(ids) == len(MODEL_KEYS) else 0


def _last_materializations(instance: dg.DagsterInstance, keys: list[dg.AssetKey]) -> dict[dg.AssetKey, int]:
    return {
        r.asset_entry.asset_key: r.asset_entry.last_materialization_record.storage_id
        for r in instance.get_asset_records(keys)
        if r.asset_entry.last_materialization_record is not None
    }


def building(instance: dg.DagsterInstance) -> bool:
    """A ``build_models`` run is queued or running."""
    filters = dg.RunsFilter(job_name=build_models_job.name, statuses=IN_FLIGHT)
    return bool(instance.get_run_records(filters=filters, limit=1))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)  # one place, so tests judge a tick at any time without waiting for it
