"""``raw.mx_members``: each user's member list, planned on the warehouse, read from MX without it, loaded in bulk.

- ``plan_member_lists`` (one short connection): the users in scope, and our ids for them (to settle a 404);
- ``read_member_lists`` (no pool, no warehouse): lands each user's list (``landing/records.py``), ``mx.concurrency``
  users at a time. A list that answered 404 is settled with MX at once: the user is gone when ``list_users`` by
  our id for it lacks it too, and the 404 is a failed, quarantined read otherwise;
- ``load_member_lists`` (the warehouse pool, for the moments of a load): merges every landed list, whichever run
  landed it, and settles each (``warehouse/landed_reads.py``): a list read whole retires the members it lacks,
  a list that shows a member a wrong list retired brings it back, a user MX deleted is retired with its members.
"""

from dataclasses import dataclass, field
from functools import partial

import dagster as dg

from mx_pipeline.defs.ingest.config import ScopeConfig
from mx_pipeline.defs.ingest.group import GROUP, KINDS, POOL
from mx_pipeline.defs.ingest.listing import list_members, users_gone
from mx_pipeline.defs.ingest.parallel import read_each
from mx_pipeline.defs.ingest.report import failure_reasons, step_metadata
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.batch import LandingBatch
from mx_pipeline.mx import MxClient
from mx_pipeline.warehouse import ApiCallLog, tables
from mx_pipeline.warehouse.end_users import end_user_ids, mx_user_guids, strange_user_guids
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.landed_reads import EVERY_LANDED, MEMBERS_LANDED
from mx_pipeline.warehouse.members import EVERYTHING, users_in_scope
from mx_pipeline.warehouse.rows import member_row
from mx_pipeline.warehouse.sync_state import MEMBER_LIST_READ, failure_reason

PLAN, READ, LOAD = "plan_member_lists", "read_member_lists", "load_member_lists"


@dataclass(frozen=True)
class UsersToList:
    """The plan step's answer: the users whose member lists to read, and our ids for them."""

    run_id: str
    landing_url: str
    user_guids: list[str]
    end_user_ids: dict[str, str]  # user guid -> our id, to settle a 404
    strangers: frozenset[str] = frozenset()  # user guids we never had (an event named them), settled by MX alone


@dataclass(frozen=True)
class ListsRead:
    """The read step's answer: the users whose list could not be read, with the reason."""

    to_list: UsersToList
    failed: dict[str, str]
    api_log: ApiCallLog = field(repr=False)


@dg.op(name=PLAN, ins={"after_users": dg.In(dg.Nothing)})
def plan_member_lists(context: dg.OpExecutionContext, config: ScopeConfig, warehouse: WarehouseResource) -> UsersToList:
    """The users in scope and our ids for them, on one short connection."""
    with warehouse.open().connect() as con:
        user_guids = users_in_scope(con, config.scope) if config.scope != EVERYTHING else mx_user_guids(con)
        ids, strangers = end_user_ids(con, user_guids), strange_user_guids(con, user_guids)
    return UsersToList(context.run.run_id, warehouse.landing().url, list(user_guids), ids, strangers)


@dg.op(name=READ)
def read_member_lists(context: dg.OpExecutionContext, to_list: UsersToList, mx: MxResource) -> ListsRead:
    """Land every user's member list, ``mx.concurrency`` users at a time; never the warehouse."""
    area, api_log, failed = LandingArea(to_list.landing_url), ApiCallLog(to_list.run_id), {}
    with (
        LandingBatch(area, MEMBERS_LANDED.name, tables.MEMBERS, member_row, run_id=to_list.run_id) as batch,
        mx.client([api_log]) as client,
    ):
        land = partial(_land_member_list, client, batch, to_list)
        for user_guid, failure in read_each(land, to_list.user_guids, concurrency=mx.concurrency):
            if failure is not None:
                failed[user_guid] = failure
    context.log.info(f"{len(to_list.user_guids)} users' member lists landed, {len(failed)} reads failed")
    return ListsRead(to_list, failed, api_log)


def _land_member_list(client: MxClient, batch: LandingBatch, to_list: UsersToList, user_guid: str) -> str | None:
    """Land one user's member list, as its read ended; returns why it failed (None: it did not)."""
    landing = batch.landing(member_guid=None, user_guid=user_guid)
    try:
        listing = list_members(client, user_guid, landing)
        if listing.not_found is not None and users_gone(
            client, {user_guid: listing}, to_list.end_user_ids, landing, to_list.strangers
        ):
            landing.finish(outcome="gone", listed_guids=listing.guids)
            return None
        if listing.failure is not None:  # a 404 MX did not confirm is one too (quarantined by ``users_gone``)
            reason = failure_reason(MEMBER_LIST_READ, listing.failure)
            landing.finish(outcome="failed", reason=reason, listed_guids=listing.guids)
            return reason
        listed_from = listing.started_at if listing.complete else None  # only a complete list retires what it lacks
        landing.finish(outcome="synced", listed_guids=listing.guids, listed_from=listed_from)
        return None
    except BaseException as exc:  # what arrived is true: landed as a failed read before the error goes on
        landing.finish(outcome="failed", reason=failure_reason(MEMBER_LIST_READ, exc))
        raise


@dg.op(name=LOAD, out=dg.Out(dg.Nothing), pool=POOL)
def load_member_lists(context: dg.OpExecutionContext, read: ListsRead, warehouse: WarehouseResource):
    """Merge every landed member list (this run's and any a killed run left) and settle each."""
    wh = warehouse.open()
    loaded = load_landed(wh, LandingArea(read.to_list.landing_url), run_id=context.run.run_id, api_log=read.api_log,
                         table=MEMBERS_LANDED, alongside=EVERY_LANDED)  # fmt: skip
    metadata = step_metadata(
        wh,
        tables.MEMBERS,
        read.api_log,
        loaded,
        read_failures=len(read.failed),
        users_read=len(read.to_list.user_guids),
        members_loaded=len(loaded.members),  # users' lists, another run's leftovers included
        landed_loaded_before=loaded.already_loaded,
        users_failed=dg.MetadataValue.json(failure_reasons(context, read.failed)),
        members_retired=dg.MetadataValue.json(sorted(loaded.settled.retired)),
        members_reinstated=dg.MetadataValue.json(sorted(loaded.settled.reinstated)),
        users_retired=dg.MetadataValue.json(sorted(loaded.settled.owners_retired)),
    )
    return dg.Output(None, metadata=metadata)


@dg.config_mapping
def _plan_config(config: ScopeConfig) -> dict:
    """The asset's config, as the data team sets it, is the plan step's."""
    return {PLAN: {"config": config.model_dump()}}


@dg.graph_multi_asset(
    name="__".join(tables.MEMBERS.key_path),
    group_name=GROUP,
    ins={"after_users": dg.AssetIn(key=tables.USERS.key_path, dagster_type=dg.Nothing)},
    outs={
        "mx_members": dg.AssetOut(
            key=tables.MEMBERS.key_path,
            kinds=KINDS,
            description="One row per MX member (a user's connection to one institution), payload as MX listed it.",
        )
    },
    config=_plan_config,
)
def mx_members(after_users):
    return {"mx_members": load_member_lists(read_member_lists(plan_member_lists(after_users)))}
