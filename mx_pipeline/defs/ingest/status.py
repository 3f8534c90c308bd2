"""``raw.mx_member_status``: planned on the warehouse, read from MX without it, loaded in bulk (``member_reads.py``).

Every listed member in scope is read, whatever its last status: statuses are not sequential, a CONNECTED member may
be CHALLENGED on its next aggregation. A member whose user's member list this run has just read whole, with no
aggregation asked of it since, is read from that list: MX's member list carries the fields a status read would
(its connection status, whether a job runs, its last and last successful aggregation), so asking ``/status`` again
would cost a request a member for nothing new. Such a status is landed as of when the list began, so it never
overwrites one MX gave another run later. The others (an aggregation asked since the list, a run without the
lists, a run re-executed from failure) are read from MX. Once loaded, each change of status is appended to
``ops.member_status_history``, and what the run held in the refresh ledger (a webhook's members, a refresh batch)
is released: it is fresh now.
"""

import contextlib
import datetime as dt
import json
from functools import partial

import dagster as dg

from mx_pipeline.defs.ingest.config import ScopeConfig
from mx_pipeline.defs.ingest.group import GROUP, KINDS, POOL, REFRESH_ATTEMPTS
from mx_pipeline.defs.ingest.member_reads import (
    MembersRead,
    MembersToRead,
    load_members,
    plan_members,
    read_members,
    step_output,
)
from mx_pipeline.defs.jobs import run_key_of
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.landing.records import RecordLanding
from mx_pipeline.mx import READ_FAILURES, MalformedResponse, MxClient, NotFound
from mx_pipeline.mx.errors import MalformedRecord
from mx_pipeline.mx.records import MemberStatus
from mx_pipeline.warehouse import tables
from mx_pipeline.warehouse.landed_reads import STATUS_LANDED
from mx_pipeline.warehouse.members import (
    EVERYTHING,
    ListedStatuses,
    MemberToFetch,
    Scope,
    listed_members,
    record_status_changes,
    status_counts,
    statuses_listed,
)
from mx_pipeline.warehouse.rows import member_status_row
from mx_pipeline.warehouse.sync_state import STATUS_READ, failure_reason

PLAN, READ, LOAD = "plan_status_reads", "read_member_status", "load_member_status"


def _members_in_scope(con, scope: Scope = EVERYTHING):
    return [MemberToFetch(member, user, None) for member, user in listed_members(con, scope)], []


@dg.op(name=PLAN, ins={"after_members": dg.In(dg.Nothing), "after_attempts": dg.In(dg.Nothing)})
def plan_status_reads(context: dg.OpExecutionContext, config: ScopeConfig, warehouse: WarehouseResource):
    """Every live member in scope, with what this run's member lists said of them, on one short connection."""

    def listed(con, members: list[MemberToFetch]) -> ListedStatuses:
        warehouse.ledger(con).mirror(con)  # this run's aggregation requests, wherever the ledger keeps them
        return statuses_listed(con, [m.guid for m in members], run_id=context.run.run_id)

    return plan_members(context, warehouse, partial(_members_in_scope, scope=config.scope), listed)


@dg.op(name=READ)
def read_member_status(context: dg.OpExecutionContext, to_read: MembersToRead, mx: MxResource) -> MembersRead:
    """Land every planned member's status, as this run's member list gave it or read from MX, ``mx.concurrency`` at
    a time. A run re-executed from failure reuses the plan of the run it re-executes, whose lists are older than
    anything it reads now: it reads every status from MX."""
    listed = to_read.listed if to_read.run_id == context.run.run_id else {}
    listed_now = sum(m.guid in listed for m in to_read.members)
    context.log.info(f"{listed_now} of {len(to_read.members)} statuses from this run's member lists, the rest from MX")
    return read_members(context, mx, to_read, STATUS_LANDED, _status_row, partial(_land_status, listed))


def _land_status(listed: ListedStatuses, client: MxClient, landing: RecordLanding, member: MemberToFetch) -> str | None:
    try:
        status, said_at = _status_of(listed, client, member)
        landing.add((status, member.user_guid), fetched_at=said_at)
    except NotFound:
        raise  # it waits for MX's fresh lists (member_reads.py)
    except READ_FAILURES as exc:
        if isinstance(exc, MalformedResponse):
            landing.reject_page(f"{type(exc).__name__}: {exc}")
        reason = failure_reason(STATUS_READ, exc)
        landing.finish(outcome="failed", reason=reason)
        return reason
    landing.finish(outcome="synced")
    return None


@dg.op(name=LOAD, out=dg.Out(dg.Nothing), pool=POOL)
def load_member_status(context: dg.OpExecutionContext, read: MembersRead, warehouse: WarehouseResource):
    """Merge every landed status (this run's and any a killed run left), record the changes, release the run's
    claims."""
    loaded, metadata = load_members(context, warehouse, read, STATUS_LANDED)
    with warehouse.open().connect() as con:
        changes = record_status_changes(con, run_id=context.run.run_id)
        by_status = status_counts(con)
        ledger = warehouse.ledger(con)
        # Whatever this run held (a webhook's members, a refresh batch) is fresh now: others may claim it.
        ledger.release(run_key=run_key_of(context))
        ledger.mirror(con)  # the refresh attempts a shared ledger holds, for analysts and member_health
    return step_output(
        warehouse,
        read,
        STATUS_LANDED,
        loaded,
        **metadata,
        status_changes=changes,
        members_by_status=dg.MetadataValue.json(by_status),
    )


def _status_of(
    listed: ListedStatuses, client: MxClient, member: MemberToFetch
) -> tuple[MemberStatus, dt.datetime | None]:
    """(the status, when MX said it: None for now). As this run's member list gave it; read from MX when the list
    gave none, or none that reads as a status."""
    if (said := listed.get(member.guid)) is not None:
        entry, listed_at = said
        with contextlib.suppress(MalformedRecord):
            return MemberStatus.as_listed(json.loads(entry)), listed_at
    return client.read_member_status(member.user_guid, member.guid), None


def _status_row(pair, load):
    status, user_guid = pair
    return member_status_row(status, user_guid, load)


@dg.config_mapping
def _plan_config(config: ScopeConfig) -> dict:
    """The asset's config, as the data team sets it, is the plan step's."""
    return {PLAN: {"config": config.model_dump()}}


@dg.graph_multi_asset(
    name="__".join(tables.MEMBER_STATUS.key_path),
    group_name=GROUP,
    ins={
        "after_members": dg.AssetIn(key=tables.MEMBERS.key_path, dagster_type=dg.Nothing),
        "after_attempts": dg.AssetIn(key=REFRESH_ATTEMPTS, dagster_type=dg.Nothing),
    },
    outs={
        "member_status": dg.AssetOut(
            key=tables.MEMBER_STATUS.key_path,
            kinds=KINDS,
            description=(
                "One row per member: its latest status read (connection_status, is_being_aggregated, ...). "
                "Status changes are appended to ops.member_status_history."
            ),
        )
    },
    config=_plan_config,
)
def member_status(after_members, after_attempts):
    return {
        "member_status": load_member_status(
            read_member_status(plan_status_reads(after_members=after_members, after_attempts=after_attempts))
        )
    }
