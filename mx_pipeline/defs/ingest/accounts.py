"""``raw.mx_accounts``: planned on the warehouse, listed from MX without it, loaded in bulk (``member_reads.py``).

The members read are those the status gate routed ready; a list read whole retires the accounts it lacks when it
is loaded, and a list that shows an account a wrong list retired brings it back.

A user with two or more members to read has them read by one list of the user's accounts (``/users/{u}/accounts``),
not one list a member: MX's rate is spent per request, and the user's list is each member's list put together,
each account naming its member (``member_guid``, which MX sets to the member that holds it). So:
- an account goes to its member's read; every guid the list shows counts as listed in each member's read, so an
  account is retired only when MX lists it under no member of its user;
- an account of a member not read this run (routed elsewhere, or unknown to us yet), well formed or not, is left to
  that member's own read, as before;
- a record that names no member's guid at all cannot be placed: it is quarantined in one member's read;
- a record without a guid leaves the list of each member it may be of incomplete (it retires nothing);
- a member the user's list names in no record is read by its own list (``member_reads.py``): MX answers 404 there
  for a member deleted meanwhile, whom the lists of its user then retire, where an empty list would retire only its
  accounts.
"""

import re
from collections.abc import Callable
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
from mx_pipeline.mx import MalformedRecord, MxClient, NotFound
from mx_pipeline.mx.records import Account
from mx_pipeline.warehouse import tables
from mx_pipeline.warehouse.landed_reads import ACCOUNTS_LANDED
from mx_pipeline.warehouse.members import MemberToFetch, members_to_read
from mx_pipeline.warehouse.rows import account_row
from mx_pipeline.warehouse.sync_state import ACCOUNTS_READ, failure_reason

PLAN, READ, LOAD = "plan_account_reads", "read_accounts", "load_accounts"
MEMBER_GUID = re.compile(r"MBR-\S+")  # as the raw table's schema has it (matched whole)


@dg.op(name=PLAN, ins={"after_routes": dg.In(dg.Nothing)})
def plan_account_reads(
    context: dg.OpExecutionContext, config: ScopeConfig, warehouse: WarehouseResource
) -> MembersToRead:
    """The members the status gate routed ready, on one short connection."""
    unchanged = reads_unchanged_members(context)
    return plan_members(context, warehouse, partial(members_to_read, scope=config.scope, read_unchanged=unchanged))


@dg.op(name=READ)
def read_accounts(context: dg.OpExecutionContext, to_read: MembersToRead, mx: MxResource) -> MembersRead:
    """List every planned member's accounts into the landing area, ``mx.concurrency`` reads at a time (a user's
    members read together are one)."""
    return read_members(context, mx, to_read, ACCOUNTS_LANDED, account_row, _land_accounts, _land_users_accounts)


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


def _land_users_accounts(client: MxClient, landings: dict[str, RecordLanding]) -> dict[str, str | None]:
    """Several members of one user, from one list of the user's accounts, each account to its member's landing. A
    member the list shows nothing of is left to its own read: only its own list tells a member MX deleted meanwhile
    (404) from one without accounts."""
    by_member = _ByMember(landings)
    listing = Listing(by_member)
    user_guid = next(iter(landings.values())).user_guid
    listing.read(partial(client.list_user_accounts, user_guid, on_malformed=by_member.reject), on_not_found=_raise)
    if listing.failure is not None:
        reason = failure_reason(ACCOUNTS_READ, listing.failure)
        for landing in landings.values():
            landing.finish(outcome="failed", reason=reason, listed_guids=by_member.shown)
        return dict.fromkeys(landings, reason)
    settled = {}
    for member_guid in by_member.seen:
        whole = listing.complete and member_guid not in by_member.incomplete
        listed_from = listing.started_at if whole else None  # only a complete list retires what it lacks
        landings[member_guid].finish(outcome="synced", listed_guids=by_member.shown, listed_from=listed_from)
        settled[member_guid] = None
    return settled


class _ByMember:
    """A user's list taken apart into its members' landings (a ``RecordSink``): each record goes to the member it
    names. Every guid the list shows counts as listed in each member's read (an account is retired only when MX
    lists it under no member of its user), and a member is judged as its own list would judge it: shown at all,
    and whole unless a record of it came without a guid."""

    def __init__(self, landings: dict[str, RecordLanding]) -> None:
        self.landings = landings
        self.shown: set[str] = set()  # every guid the list showed, whoever's record it is
        self.seen: set[str] = set()  # the members the list named in a record
        self.incomplete: set[str] = set()  # the members it showed a record without a guid of
        self._first = next(iter(landings.values()))  # where a record naming no member is judged

    def add(self, account: Account) -> None:
        self._place(account.member_guid, account.guid, lambda landing: landing.add(account))

    def reject(self, error: MalformedRecord, member_guid: str | None = None) -> None:
        payload = error.payload if isinstance(error.payload, dict) else {}
        guid = payload.get("guid") if isinstance(payload.get("guid"), str) else None
        self._place(payload.get("member_guid"), guid, lambda landing: landing.reject(error))

    def reject_page(self, reason: str, member_guid: str | None = None) -> None:
        for landing in self.landings.values():  # a page of the user's list is every member's page
            landing.reject_page(reason)

    def _place(self, member_guid: object, guid: str | None, land: Callable[[RecordLanding], None]) -> None:
        if guid is not None:
            self.shown.add(guid)
        if isinstance(member_guid, str) and member_guid in self.landings:
            land(self.landings[member_guid])
            self.seen.add(member_guid)
            if guid is None:
                self.incomplete.add(member_guid)  # MX listed something its list cannot say it still has
        elif isinstance(member_guid, str) and MEMBER_GUID.fullmatch(member_guid):
            return  # another member's record: that member's own read takes it (and judges it)
        else:  # names no member: judged in one read; without a guid, it may be any member's
            land(self._first)
            if guid is None:
                self.incomplete.update(self.landings)


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
