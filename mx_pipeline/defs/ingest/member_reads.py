"""The three steps of a member's own landed read (its status, its accounts), whatever it reads.

- plan (one short connection): the members to read, the others with the reason, and our ids of their users;
- read (no pool, no warehouse): each member's read lands in the landing area (``landing/records.py``),
  ``mx.concurrency`` reads at a time; one read may serve several members of one user, by one list of the user's
  (``LandTogether``); a read MX answered 404 waits for MX's fresh lists: a member they confirm
  gone is landed as such (the load retires it), any other 404 as a failed, quarantined read;
- load (the warehouse pool, for the moments of a load): merges every landed member of the table, whichever run
  landed it, settles each read (``warehouse/landed_reads.py``), then retires the members MX confirmed gone.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import dagster as dg

from mx_pipeline.defs.ingest.listing import Confirmation, Suspects
from mx_pipeline.defs.ingest.parallel import read_each
from mx_pipeline.defs.ingest.report import failure_reasons, step_metadata
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.batch import LandingBatch
from mx_pipeline.landing.records import RecordLanding
from mx_pipeline.mx import MxClient, NotFound
from mx_pipeline.warehouse import ApiCallLog
from mx_pipeline.warehouse.end_users import end_user_ids
from mx_pipeline.warehouse.landed import LandedTable, LoadReport, load_landed
from mx_pipeline.warehouse.landed_reads import EVERY_LANDED
from mx_pipeline.warehouse.members import ListedStatuses, MemberNotFetched, MemberToFetch
from mx_pipeline.warehouse.rows import Load, Row
from mx_pipeline.warehouse.sync_state import failure_reason


@dataclass(frozen=True)
class MembersToRead:
    """The plan step's answer: the members to read, the others with the reason, our ids of their users."""

    run_id: str
    landing_url: str
    members: list[MemberToFetch]
    not_fetched: list[MemberNotFetched]
    end_user_ids: dict[str, str]  # user guid -> our id, to settle a 404's user
    listed: ListedStatuses = field(default_factory=dict)  # what this run's member lists said of the members

    @property
    def area(self) -> LandingArea:
        return LandingArea(self.landing_url)


@dataclass(frozen=True)
class MembersRead:
    """The read step's answer: the members whose read failed (with the reason), and what MX's fresh lists said of
    those whose read answered 404."""

    to_read: MembersToRead
    failed: dict[str, tuple[str, str]]  # member guid -> (user guid, reason)
    confirmation: Confirmation
    api_log: ApiCallLog = field(repr=False)


def plan_members(
    context: dg.OpExecutionContext,
    warehouse: WarehouseResource,
    members: Callable[..., tuple[list[MemberToFetch], list[MemberNotFetched]]],
    listed: Callable[..., ListedStatuses] | None = None,
) -> MembersToRead:
    """``members(con)``: the members to read and the others; our ids of their users come on the same connection,
    and ``listed(con, to_read)``: what this run's member lists said of them, when the read can use it."""
    with warehouse.open().connect() as con:
        to_read, not_fetched = members(con)
        ids = end_user_ids(con, sorted({member.user_guid for member in to_read}))
        said = listed(con, to_read) if listed is not None else {}
    return MembersToRead(context.run.run_id, warehouse.landing().url, to_read, not_fetched, ids, said)


# Reads one member into its landing and finishes it; returns why it failed (None: it did not). A 404 it raises,
# with the landing unfinished: whether it was a bad read depends on what MX's fresh lists say (``read_members``).
LandOne = Callable[[MxClient, RecordLanding, MemberToFetch], str | None]
# The same for several members of one user, read by one list of the user's (member guid -> landing): returns why
# each read it finished failed (None: it did not); a member it leaves unfinished is read alone (``LandOne``).
LandTogether = Callable[[MxClient, dict[str, RecordLanding]], dict[str, str | None]]


def read_members(
    context: dg.OpExecutionContext,
    mx: MxResource,
    to_read: MembersToRead,
    table: LandedTable,
    to_row: Callable[[object, Load], Row],
    land_one: LandOne,
    land_together: LandTogether | None = None,
) -> MembersRead:
    """Land every planned member's read of ``table``; never the warehouse. With ``land_together``, a user's
    planned members are read by one list of the user's when there are two or more of them."""
    area, api_log, suspects, failed = to_read.area, ApiCallLog(to_read.run_id), Suspects(), {}
    awaiting: dict[str, RecordLanding] = {}  # the 404s' landings, finished once MX's fresh lists are read

    def read(client: MxClient, members: tuple[MemberToFetch, ...]) -> dict[str, str | None]:
        landings = {m.guid: batch.landing(member_guid=m.guid, user_guid=m.user_guid) for m in members}
        settled: dict[str, str | None] = {}  # the reads finished: why each failed (None: it did not)

        def await_lists(suspected: tuple[MemberToFetch, ...], exc: NotFound) -> None:
            for member in suspected:
                suspects.noter(member.guid, member.user_guid)(exc)
                awaiting[member.guid] = landings[member.guid]

        try:
            if len(members) > 1:
                try:
                    settled.update(land_together(client, landings))
                except NotFound as exc:  # the user's own list: each of its members is a suspect
                    await_lists(members, exc)
                    return settled
            for member in members:  # alone, or left by the user's list
                if member.guid not in settled:
                    try:
                        settled[member.guid] = land_one(client, landings[member.guid], member)
                    except NotFound as exc:
                        await_lists((member,), exc)
        except BaseException as exc:  # what arrived is true: landed as a failed read before the error goes on
            for guid, landing in landings.items():
                if not landing.finished and guid not in awaiting:
                    landing.finish(outcome="failed", reason=failure_reason(table.read, exc))
            raise
        return settled

    reads = _by_user(to_read.members) if land_together is not None else [(member,) for member in to_read.members]
    with LandingBatch(area, table.name, table.spec, to_row, run_id=to_read.run_id) as batch:
        with mx.client([api_log]) as client:
            for members, failures in read_each(partial(read, client), reads, concurrency=mx.concurrency):
                user_of = {member.guid: member.user_guid for member in members}
                failed.update((guid, (user_of[guid], why)) for guid, why in failures.items() if why is not None)
            confirmation = suspects.confirm(client, to_read.end_user_ids)  # a 404: is the member gone at MX?
        gone = confirmation.members_gone()
        for member_guid, landing in awaiting.items():
            if member_guid in gone:  # deleted at MX: not a bad read (the load retires it)
                landing.finish(outcome="gone")
                continue
            user_guid, exc = suspects.not_found[member_guid]
            landing.reject_page(f"{type(exc).__name__}: {exc}")
            failed[member_guid] = (user_guid, failure_reason(table.read, exc))
            landing.finish(outcome="failed", reason=failed[member_guid][1])
    context.log.info(f"{len(to_read.members)} members' {table.name} landed, {len(failed)} reads failed")
    return MembersRead(to_read, failed, confirmation, api_log)


def _by_user(members: list[MemberToFetch]) -> list[tuple[MemberToFetch, ...]]:
    """The members grouped by user, in the order their users first come."""
    groups: dict[str, list[MemberToFetch]] = {}
    for member in members:
        groups.setdefault(member.user_guid, []).append(member)
    return [tuple(group) for group in groups.values()]


def load_members(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, read: MembersRead, table: LandedTable
) -> tuple[LoadReport, dict]:
    """Load and settle every landed member of ``table``, then retire the members MX confirmed gone; returns the
    load and the step's metadata about its members."""
    run_id, wh = context.run.run_id, warehouse.open()
    loaded = load_landed(
        wh, read.to_read.area, run_id=run_id, api_log=read.api_log, table=table, alongside=EVERY_LANDED
    )
    members_retired = read.confirmation.retire(wh, run_id)
    failed = {m: failure for m, failure in read.failed.items() if m not in members_retired}
    metadata = dict(
        read_failures=len(failed),
        members_read=len(read.to_read.members),
        members_loaded=len(loaded.members),
        landed_loaded_before=loaded.already_loaded,
        members_failed=dg.MetadataValue.json(failure_reasons(context, failed)),
        members_retired=dg.MetadataValue.json(members_retired),
    )
    return loaded, metadata


def step_output(warehouse: WarehouseResource, read: MembersRead, table: LandedTable, loaded: LoadReport, **metadata):
    """The load step's output: its metadata, its API calls recorded."""
    wh = warehouse.open()
    return dg.Output(None, metadata=step_metadata(wh, table.spec, read.api_log, loaded,
                                                  **metadata))  # fmt: skip
