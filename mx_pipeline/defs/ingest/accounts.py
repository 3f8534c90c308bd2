"""``raw.mx_accounts``: planned on the warehouse, listed from MX without it, loaded in bulk (``member_reads.py``).

The members read are those the status gate routed ready; a list read whole retires the accounts it lacks when it
is loaded, and a list that shows an account a wrong list retired brings it back.
"""

from functools import partial

import dagster as dg

from mx_pipeline.defs.ingest.config import ScopeConfig
from mx_pipeline.defs.ingest.group import ANALYSTS_FRESHNESS, GROUP, KINDS, MEMBER_ROUTES, POOL
from mx_pipeline.defs.ingest.listing import Listing
from mx_pipeline.defs.ingest.member_reads import (
    MembersRead,
    MembersToRead,
    load_members,
    plan_members,
    read_members,
    step_output,
)
from mx_pipeline.defs.jobs import reads_unchanged_members
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.landing.records import RecordLanding
from mx_pipeline.mx import MxClient, NotFound
from mx_pipeline.warehouse import tables
from mx_pipeline.warehouse.landed_reads import ACCOUNTS_LANDED
from mx_pipeline.warehouse.members import MemberToFetch, members_to_read
from mx_pipeline.warehouse.rows import account_row
from mx_pipeline.warehouse.sync_state import ACCOUNTS_READ, failure_reason

PLAN, READ, LOAD = "plan_account_reads", "read_accounts", "load_accounts"


@dg.op(name=PLAN, ins={"after_routes": dg.In(dg.Nothing)})
def plan_account_reads(
    context: dg.OpExecutionContext, config: ScopeConfig, warehouse: WarehouseResource
) -> MembersToRead:
    """The members the status gate routed ready, on one short connection."""
    unchanged = reads_unchanged_members(context)
    return plan_members(context, warehouse, partial(members_to_read, scope=config.scope, read_unchanged=unchanged))


@dg.op(name=READ)
def read_accounts(context: dg.OpExecutionContext, to_read: MembersToRead, mx: MxResource) -> MembersRead:
    """List every planned member's accounts into the landing area, ``mx.concurrency`` at a time."""
    return read_members(context, mx, to_read, ACCOUNTS_LANDED, account_row, _land_accounts)


def _land_accounts(client: MxClient, landing: RecordLanding, member: MemberToFetch) -> str | None:
    listing = Listing(landing, member.guid)
    accounts = partial(client.list_member_accounts, member.user_guid, member.guid, on_malformed=listing.on_malformed)
    listing.read(accounts, on_not_found=_raise)
    if listing.failure is not None:
        reason = failure_reason(ACCOUNTS_READ, listing.failure)
        landing.finish(outcome="failed", reason=reason, listed_guids=listing.guids)
        return reason
    listed_from = listing.started_at if listing.complete else None  # only a complete list retires what it lacks
    landing.finish(outcome="synced", listed_guids=listing.guids, listed_from=listed_from)
    return None


def _raise(exc: NotFound) -> None:  # a 404 waits for MX's fresh lists (member_reads.py)
    raise exc


@dg.op(name=LOAD, out=dg.Out(dg.Nothing), pool=POOL)
def load_accounts(context: dg.OpExecutionContext, read: MembersRead, warehouse: WarehouseResource):
    """Merge every landed member's accounts (this run's and any a killed run left) and settle each list."""
    loaded, metadata = load_members(context, warehouse, read, ACCOUNTS_LANDED)
    return step_output(
        warehouse,
        read,
        ACCOUNTS_LANDED,
        loaded,
        **metadata,
        members_not_fetched=dg.MetadataValue.json({m.guid: m.reason for m in read.to_read.not_fetched}),
        accounts_retired=dg.MetadataValue.json(sorted(loaded.settled.retired)),
        accounts_reinstated=dg.MetadataValue.json(sorted(loaded.settled.reinstated)),
    )


@dg.config_mapping
def _plan_config(config: ScopeConfig) -> dict:
    """The asset's config, as the data team sets it, is the plan step's."""
    return {PLAN: {"config": config.model_dump()}}


@dg.graph_multi_asset(
    name="__".join(tables.ACCOUNTS.key_path),
    group_name=GROUP,
    ins={"after_routes": dg.AssetIn(key=MEMBER_ROUTES, dagster_type=dg.Nothing)},
    outs={
        "mx_accounts": dg.AssetOut(
            key=tables.ACCOUNTS.key_path,
            kinds=KINDS,
            freshness_policy=ANALYSTS_FRESHNESS,
            description=(
                "One row per MX account of a member the status gate routed ready (connected, no job running)."
            ),
        )
    },
    config=_plan_config,
)
def mx_accounts(after_routes):
    return {"mx_accounts": load_accounts(read_accounts(plan_account_reads(after_routes)))}
