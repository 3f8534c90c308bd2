"""``raw.mx_accounts``: planned on the warehouse, read from MX without it, loaded in bulk (as ``transactions.py``).

- ``plan_account_reads`` (one short connection): the members the status gate routed ready, and our ids of their
  users (to settle a 404).
- ``read_accounts`` (no pool, no warehouse): lists every member's accounts into the landing area
  (``landing/records.py``), ``mx.concurrency`` members at a time, and asks MX's fresh lists about any member whose
  list answered 404.
- ``load_accounts`` (the warehouse pool, for the moments of a load): merges every landed member, whichever run
  landed it, settles each list (``warehouse/landed_accounts.py``: what a complete list lacks is retired, what a
  wrong one retired comes back, a failed read is recorded), then retires the members MX confirmed gone.
"""

from dataclasses import dataclass, field
from functools import partial

import dagster as dg

from mx_pipeline.defs.ingest.assets import ANALYSTS_FRESHNESS, GROUP, KINDS, MEMBER_ROUTES, POOL
from mx_pipeline.defs.ingest.config import ScopeConfig
from mx_pipeline.defs.ingest.listing import Confirmation, Listing, Suspects
from mx_pipeline.defs.ingest.parallel import read_each
from mx_pipeline.defs.ingest.report import failure_reasons, step_metadata
from mx_pipeline.defs.jobs import reads_unchanged_members
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.records import RecordLanding
from mx_pipeline.mx import MxClient
from mx_pipeline.warehouse import ApiCallLog, tables
from mx_pipeline.warehouse.end_users import end_user_ids
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.landed_accounts import ACCOUNTS_LANDED
from mx_pipeline.warehouse.members import MemberNotFetched, MemberToFetch, members_to_read
from mx_pipeline.warehouse.rows import account_row
from mx_pipeline.warehouse.sync_state import ACCOUNTS_READ, failure_reason

PLAN, READ, LOAD = "plan_account_reads", "read_accounts", "load_accounts"


@dataclass(frozen=True)
class AccountsToRead:
    """The plan step's answer: the members to read, the others with the reason, our ids of their users."""

    run_id: str
    landing_url: str
    members: list[MemberToFetch]
    not_fetched: list[MemberNotFetched]
    end_user_ids: dict[str, str]  # user guid -> our id, to settle a 404's user


@dataclass(frozen=True)
class AccountsRead:
    """The read step's answer: the members whose read failed (with the reason), and what MX's fresh lists said of
    those whose read answered 404."""

    to_read: AccountsToRead
    failed: dict[str, tuple[str, str]]  # member guid -> (user guid, reason)
    confirmation: Confirmation
    api_log: ApiCallLog = field(repr=False)


@dg.op(name=PLAN, ins={"after_routes": dg.In(dg.Nothing)})
def plan_account_reads(
    context: dg.OpExecutionContext, config: ScopeConfig, warehouse: WarehouseResource
) -> AccountsToRead:
    """The members to read, on one short connection."""
    with warehouse.open().connect() as con:
        members, not_fetched = members_to_read(con, config.scope, read_unchanged=reads_unchanged_members(context))
        ids = end_user_ids(con, sorted({member.user_guid for member in members}))
    return AccountsToRead(context.run.run_id, warehouse.landing().url, members, not_fetched, ids)


@dg.op(name=READ)
def read_accounts(context: dg.OpExecutionContext, to_read: AccountsToRead, mx: MxResource) -> AccountsRead:
    """List every planned member's accounts into the landing area, ``mx.concurrency`` at a time; never the
    warehouse."""
    area, api_log, suspects, failed = LandingArea(to_read.landing_url), ApiCallLog(to_read.run_id), Suspects(), {}
    with mx.client([api_log]) as client:
        read = partial(_land_accounts, client, area, to_read.run_id, suspects)
        for member, failure in read_each(read, to_read.members, concurrency=mx.concurrency):
            if failure is not None:
                failed[member.guid] = (member.user_guid, failure)
        confirmation = suspects.confirm(client, to_read.end_user_ids)  # a 404: is the member gone at MX?
    context.log.info(f"{len(to_read.members)} members' accounts landed, {len(failed)} reads failed")
    return AccountsRead(to_read, failed, confirmation, api_log)


def _land_accounts(
    client: MxClient, area: LandingArea, run_id: str, suspects: Suspects, member: MemberToFetch
) -> str | None:
    """Land one member's account list, as its read ended; returns why it failed (None: it did not)."""
    landing = RecordLanding(
        area, ACCOUNTS_LANDED.name, tables.ACCOUNTS, account_row,
        run_id=run_id, member_guid=member.guid, user_guid=member.user_guid,
    )  # fmt: skip
    listing = Listing(landing, member.guid)
    note_404 = suspects.noter(member.guid, member.user_guid)

    def not_found(exc) -> None:  # a failed read, quarantined, until MX's fresh list says the member is gone
        note_404(exc)
        listing.failure = exc
        landing.reject_page(f"{type(exc).__name__}: {exc}")

    accounts = partial(client.list_member_accounts, member.user_guid, member.guid, on_malformed=listing.on_malformed)
    listing.read(accounts, on_not_found=not_found)
    if listing.failure is not None:
        reason = failure_reason(ACCOUNTS_READ, listing.failure)
        landing.finish(outcome="failed", reason=reason, listed_guids=listing.guids)
        return reason
    listed_from = listing.started_at if listing.complete else None
    landing.finish(outcome="synced", listed_guids=listing.guids, listed_from=listed_from)
    return None


@dg.op(name=LOAD, out=dg.Out(dg.Nothing), pool=POOL)
def load_accounts(context: dg.OpExecutionContext, read: AccountsRead, warehouse: WarehouseResource):
    """Merge every landed member's accounts (this run's and any a killed run left) and settle each list, then
    retire the members MX confirmed gone."""
    run_id, wh = context.run.run_id, warehouse.open()
    area = LandingArea(read.to_read.landing_url)
    loaded = load_landed(wh, area, run_id=run_id, api_log=read.api_log, table=ACCOUNTS_LANDED)
    members_retired = read.confirmation.retire(wh, run_id)
    failed = {m: failure for m, failure in read.failed.items() if m not in members_retired}
    metadata = step_metadata(
        wh,
        tables.ACCOUNTS,
        read.api_log,
        loaded.counts,
        loaded.quarantined,
        read_failures=len(failed),
        members_read=len(read.to_read.members),
        members_loaded=len(loaded.members),
        landed_loaded_before=loaded.already_loaded,
        members_failed=dg.MetadataValue.json(failure_reasons(context, failed)),
        members_not_fetched=dg.MetadataValue.json({m.guid: m.reason for m in read.to_read.not_fetched}),
        accounts_retired=dg.MetadataValue.json(sorted(loaded.settled.retired)),
        accounts_reinstated=dg.MetadataValue.json(sorted(loaded.settled.reinstated)),
        members_retired=dg.MetadataValue.json(members_retired),
    )
    return dg.Output(None, metadata=metadata)


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
