"""``raw.mx_transactions``: planned on the warehouse, read from MX without it, loaded in bulk.

The heaviest read of a sync (a member's transactions run to many pages) is the one step that must scale past the
one DuckDB writer, so it is three steps, one asset:

- ``plan_transaction_reads`` (one short connection): which members to read, each one's window, and what the
  late-arrival check needs of the warehouse (``warehouse/read_plan.py``).
- ``read_transactions`` (no pool, no warehouse): reads MX and lands every member's pages in the landing area
  (``mx_pipeline/landing``), and asks MX's fresh lists about any member whose read answered 404. It takes no
  warehouse resource at all, so any number of runs read at once, wherever they run, while another step, run or
  analyst holds the DuckDB file.
- ``load_transactions`` (the warehouse pool, for the seconds of a load): merges every landed member in bulk,
  whichever run landed it (with every other table's landed reads), retires what MX confirmed gone, and records the
  API calls (``warehouse/landed.py``).

A run killed between reading and loading leaves complete members landed: the next load, of any run, takes them.
"""

from dataclasses import dataclass, field
from functools import partial

import dagster as dg

from mx_pipeline.defs.ingest.config import TransactionsConfig
from mx_pipeline.defs.ingest.group import ANALYSTS_FRESHNESS, GROUP, KINDS, POOL
from mx_pipeline.defs.ingest.listing import Confirmation, Suspects, utc_now
from mx_pipeline.defs.ingest.parallel import read_each
from mx_pipeline.defs.ingest.report import failure_reasons, step_metadata
from mx_pipeline.defs.jobs import reads_unchanged_members
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.landing.parser import release_parser
from mx_pipeline.warehouse import ApiCallLog, tables
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.landed_reads import EVERY_LANDED
from mx_pipeline.warehouse.members import MemberNotFetched, MemberToFetch, members_to_read
from mx_pipeline.warehouse.read_plan import ReadPlan, SyncPolicy, plan_transaction_reads
from mx_pipeline.warehouse.sync_state import SyncOutcome, record_syncs
from mx_pipeline.warehouse.transaction_sync import MemberRead, extract_member_transactions

PLAN, READ, LOAD = "plan_transaction_reads", "read_transactions", "load_transactions"


@dataclass(frozen=True)
class TransactionsToRead:
    """The plan step's answer: the members to read and how, and the others with the reason they are not."""

    plan: ReadPlan
    members: list[MemberToFetch]
    not_fetched: list[MemberNotFetched]


@dataclass(frozen=True)
class TransactionsRead:
    """The read step's answer: every member's read, landed, and what the writing step must record of it."""

    to_read: TransactionsToRead
    reads: list[MemberRead]
    confirmation: Confirmation  # what MX's fresh lists said of the members whose read answered 404
    api_log: ApiCallLog = field(repr=False)


@dg.op(name=PLAN, ins={"after_accounts": dg.In(dg.Nothing)})
def plan_reads(
    context: dg.OpExecutionContext, config: TransactionsConfig, warehouse: WarehouseResource
) -> TransactionsToRead:
    """Plan the run's reads on one short connection; a member not read is recorded as skipped, with the reason."""
    run_id, wh = context.run.run_id, warehouse.open()
    policy = SyncPolicy(config.history_days, config.reconcile_lookback_days, config.overlap_days)
    with wh.connect() as con:
        members, not_fetched = members_to_read(con, config.scope, read_unchanged=reads_unchanged_members(context))
        skipped = [SyncOutcome(m.guid, m.user_guid, "skipped", run_id, m.reason) for m in not_fetched]
        record_syncs(con, skipped, now=utc_now())
        plan = plan_transaction_reads(con, warehouse.landing(), members, policy, run_id=run_id)
    return TransactionsToRead(plan, members, not_fetched)


@dg.op(name=READ)
def read_transactions(context: dg.OpExecutionContext, to_read: TransactionsToRead, mx: MxResource) -> TransactionsRead:
    """Read every planned member from MX into the landing area, ``mx.concurrency`` at a time; never the warehouse."""
    plan, members = to_read.plan, to_read.members
    area, api_log, suspects, reads = plan.area, ApiCallLog(plan.run_id), Suspects(), []
    with mx.client([api_log]) as client:

        def extract(member: MemberToFetch) -> MemberRead:
            pages = partial(client.list_member_transaction_pages, member.user_guid, member.guid)
            return extract_member_transactions(area, plan, member, suspects.watching(member, pages))

        for i, (member, read) in enumerate(read_each(extract, members, concurrency=mx.concurrency), 1):
            reads.append(read)
            context.log.info(f"member {i}/{len(members)} {member.guid}: {read.listed} listed, {read.refused} refused")
        confirmation = suspects.confirm(client, plan.end_user_ids)  # a 404: is the member gone at MX?
    release_parser()  # its memory goes back before the load
    return TransactionsRead(to_read, reads, confirmation, api_log)


@dg.op(name=LOAD, out=dg.Out(dg.Nothing), pool=POOL)
def load_transactions(context: dg.OpExecutionContext, read: TransactionsRead, warehouse: WarehouseResource):
    """Merge every landed member into the warehouse in bulk (this run's and any a killed run left), then retire
    the members MX confirmed gone."""
    run_id, wh, plan = context.run.run_id, warehouse.open(), read.to_read.plan
    loaded = load_landed(wh, plan.area, run_id=run_id, api_log=read.api_log, alongside=EVERY_LANDED)
    # The 404 was landed as a failed read and quarantined (one bad read stays a failed, quarantined read).
    retired = read.confirmation.retire(wh, run_id)
    plan.discard()
    failed = {r.member_guid: r.error for r in read.reads if r.error and r.member_guid not in retired}
    metadata = step_metadata(
        wh,
        tables.TRANSACTIONS,
        read.api_log,
        loaded,
        read_failures=len(failed),
        listed=sum(r.listed for r in read.reads),
        vanished_marked_removed=loaded.removed,
        members_synced=sum(not r.error for r in read.reads),
        members_loaded=len(loaded.members),
        landed_loaded_before=loaded.already_loaded,
        members_failed=dg.MetadataValue.json(failure_reasons(context, failed)),
        members_retired=dg.MetadataValue.json(retired),
        members_not_fetched=dg.MetadataValue.json({m.guid: m.reason for m in read.to_read.not_fetched}),
    )
    return dg.Output(None, metadata=metadata)


@dg.config_mapping
def _plan_config(config: TransactionsConfig) -> dict:
    """The asset's config, as the data team sets it, is the plan step's."""
    return {PLAN: {"config": config.model_dump()}}


@dg.graph_multi_asset(
    name="__".join(tables.TRANSACTIONS.key_path),
    group_name=GROUP,
    ins={"after_accounts": dg.AssetIn(key=tables.ACCOUNTS.key_path, dagster_type=dg.Nothing)},
    outs={
        "mx_transactions": dg.AssetOut(
            key=tables.TRANSACTIONS.key_path,
            kinds=KINDS,
            freshness_policy=ANALYSTS_FRESHNESS,
            description=(
                "One row per MX transaction (pending or posted) of a fetchable member, read incrementally by "
                "from_updated_at; a transaction MX stops listing gets removed_at, it is never deleted."
            ),
        )
    },
    config=_plan_config,
)
def mx_transactions(after_accounts):
    return {"mx_transactions": load_transactions(read_transactions(plan_reads(after_accounts)))}
