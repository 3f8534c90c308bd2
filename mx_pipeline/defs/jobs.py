"""The jobs the data team and the sensors launch.

``ingest``: everything, for every user, the SQL models included (what ``make demo`` runs). ``sync_members``:
the path after registration (refresh -> status -> gate -> accounts -> transactions) for the users and members
named in its run config, which is how events and refreshes touch only the members they concern; it builds no
model. ``refresh_members``: the data team's "refresh these now", with one small config and the scheduler's
safety rules, the same steps. ``build_models``: the SQL models and their publish, launched by the
``models_after_sync`` sensor (``defs/models/sensors.py``) once synced data has settled, so a burst of events
costs one model build, not one per sync run. ``every_member_read`` runs in every job that reads members, so a
failed read fails the sync run that made it.
"""

from collections.abc import Iterable

import dagster as dg
from pydantic import Field

from mx_pipeline.instance import JOB_TAG
from mx_pipeline.refresh.run import MANUAL
from mx_pipeline.warehouse import tables

EVERY_MEMBER_READ = dg.AssetCheckKey(dg.AssetKey(["marts", "member_health"]), "every_member_read")
SYNCED = dg.AssetSelection.groups("ingest", "lifecycle", "refresh").materializable()  # what the models read
INGEST = SYNCED | dg.AssetSelection.groups("models").materializable()
# every_member_read answers for a run's reads: it runs in the runs that read (after the last read), not in builds.
MODELS = dg.AssetSelection.groups("models").materializable() - dg.AssetSelection.checks(EVERY_MEMBER_READ)
AFTER_REGISTRATION = (SYNCED - dg.AssetSelection.assets(tables.USERS.key_path)) | dg.AssetSelection.checks(
    EVERY_MEMBER_READ
)
REFRESH_OP = "ops__refresh_attempts"
GATE_GRAPH, GATE_OP = "member_lifecycle", "status_gate"  # the gate's op, inside the lifecycle's graph asset
SCOPED_OPS = [REFRESH_OP, *("__".join(s.key_path) for s in (tables.MEMBERS, tables.MEMBER_STATUS, tables.ACCOUNTS,
                                                                tables.TRANSACTIONS))]  # fmt: skip


def _job(name: str, **kwargs):
    """An asset job whose runs carry its name as a tag: the production run queue limits runs by it."""
    return dg.define_asset_job(name, tags={JOB_TAG: name}, **kwargs)


ingest_job = _job(
    "ingest", selection=INGEST, description="Register users, read members and status, route, notify, fetch."
)
build_models_job = _job(
    "build_models", selection=MODELS, description="Build the SQL models from what the syncs wrote; publish the marts."
)
sync_members_job = _job(
    "sync_members",
    selection=AFTER_REGISTRATION,
    description="Re-read (and refresh, when claimed) the members in the run config: status, route, notify, fetch.",
)


def scoped_run_config(user_guids: Iterable[str] = (), member_guids: Iterable[str] = ()) -> dict:
    """Run config that limits ``sync_members`` to these users' members and these members (the gate too)."""
    config = {"user_guids": sorted(set(user_guids)), "member_guids": sorted(set(member_guids))}
    ops = {op: {"config": dict(config)} for op in SCOPED_OPS}
    return {"ops": {**ops, GATE_GRAPH: {"ops": {GATE_OP: {"config": dict(config)}}}}}


def refresh_run_config(member_guids: Iterable[str], *, trigger: str, user_guids: Iterable[str] = (), **refresh) -> dict:
    """``sync_members`` config for a refresh batch: its members, aggregated first (claimed under the run key)."""
    run_config = scoped_run_config(user_guids, member_guids)
    run_config["ops"][REFRESH_OP]["config"] |= {"trigger": trigger, **refresh}
    return run_config


class ManualRefresh(dg.Config):
    """The members to refresh now: these members, every member of these users, or both; never no one."""

    member_guids: list[str] = Field(default=[], description="MX member guids (MBR-...) to refresh now.")
    user_guids: list[str] = Field(
        default=[], description="MX user guids (USR-...): each of their members is refreshed now."
    )
    override_safety: bool = Field(
        default=False,
        description="Skip the minimum interval, the attempt cap and the back-off (routes, claims and the budget hold).",
    )


NO_TARGET = (
    "refresh_members needs member_guids or user_guids: name the members (MBR-...) or the users (USR-...) to refresh"
)


@dg.config_mapping
def _manual_refresh(config: ManualRefresh) -> dict:
    # Raised while the run is created (the launchpad shows it, no run exists), not two seconds into the run.
    if not (config.member_guids or config.user_guids):
        raise dg.DagsterInvalidConfigError(NO_TARGET, [], config.model_dump())
    return refresh_run_config(
        config.member_guids,
        user_guids=config.user_guids,
        trigger=MANUAL,
        refresh_now=True,
        override_safety=config.override_safety,
    )


refresh_members_job = _job(
    "refresh_members",
    selection=AFTER_REGISTRATION,
    config=_manual_refresh,
    description="Refresh the given members or users now (safety rules apply unless override_safety), then fetch.",
)


def run_key_of(context: dg.AssetExecutionContext) -> str:
    """The key a run holds its claims under: the sensor's run key, or the run id for a run launched by hand."""
    return context.run.tags.get("dagster/run_key") or context.run.run_id


def reads_unchanged_members(context: dg.AssetExecutionContext) -> bool:
    """Whether the run reads its members even when MX aggregated nothing new: the data team's named refresh does."""
    return context.run.job_name == refresh_members_job.name
