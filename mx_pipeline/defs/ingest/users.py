"""``raw.mx_users``: our end users registered at MX, and MX's list of this client's users, landed then loaded.

- ``plan_users`` (one short connection): our end users from the CSV into ``ops.end_users``, and those with no MX
  user yet;
- ``read_users`` (no pool, no warehouse): lands MX's list of users whole (``users/run=<id>/user=all/``), then
  registers each end user MX does not list by our id (``ensure_user`` looks the id up before it creates, so a
  registration repeated after a crash creates nothing) and lands the user it made. A list that fails fails the step:
  only a complete list may retire anyone, and registering beside a list we could not read could create a user twice;
- ``load_users`` (the warehouse pool, for the moments of a load): merges the landed users and settles the list
  (``warehouse/landed_reads.py``): a complete list retires the users it lacks and brings back those a wrong one
  retired, and every end user MX lists by our id is registered as that user.
"""

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mx_pipeline.defs.ingest.config import DEMO_USERS_CSV, UsersConfig
from mx_pipeline.defs.ingest.group import GROUP, KINDS, POOL
from mx_pipeline.defs.ingest.listing import Listing
from mx_pipeline.defs.ingest.report import step_metadata
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.records import RecordLanding
from mx_pipeline.warehouse import ApiCallLog, tables
from mx_pipeline.warehouse.end_users import EndUsersCsvError, add_end_users_from_csv, end_users_to_register
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.landed_reads import EVERY_LANDED, EVERY_USER, USERS_LANDED
from mx_pipeline.warehouse.rows import user_row
from mx_pipeline.warehouse.sync_state import USER_LIST_READ, failure_reason

PLAN, READ, LOAD = "plan_users", "read_users", "load_users"


@dataclass(frozen=True)
class UsersToRegister:
    """The plan step's answer: our end users with no MX user yet, and how many the CSV added."""

    run_id: str
    landing_url: str
    to_register: list[str]  # our ids
    end_users_added: int


@dataclass(frozen=True)
class UsersRead:
    """The read step's answer: the end users it registered (our id -> MX user guid)."""

    to_register: UsersToRegister
    registered: dict[str, str]
    api_log: ApiCallLog = field(repr=False)


@dg.op(name=PLAN)
def plan_users(context: dg.OpExecutionContext, config: UsersConfig, warehouse: WarehouseResource) -> UsersToRegister:
    """Add the CSV's end users, and take those to register, on one short connection."""
    csv = _users_csv(config.users_csv)
    with warehouse.open().connect() as con:
        try:
            added = add_end_users_from_csv(con, csv, source=csv.name) if csv else 0
        except EndUsersCsvError as exc:
            raise dg.Failure(f'{exc}: fix raw__mx_users\' users_csv, or set it to "" for no CSV') from None
        to_register = end_users_to_register(con)
    return UsersToRegister(context.run.run_id, warehouse.landing().url, to_register, added)


def _users_csv(setting: str) -> Path | None:
    """The CSV to read: none for "", nor for the default (the demo's users) where it is not there, as in the image,
    which leaves them out. Any other path must be a file: a mistyped one must not register nobody quietly."""
    if not setting or (Path(setting) == DEMO_USERS_CSV and not DEMO_USERS_CSV.exists()):
        return None
    return Path(setting)


@dg.op(name=READ)
def read_users(context: dg.OpExecutionContext, to_register: UsersToRegister, mx: MxResource) -> UsersRead:
    """Land MX's whole list of users, then register the end users it lacks; never the warehouse."""
    area, api_log = LandingArea(to_register.landing_url), ApiCallLog(to_register.run_id)
    landing = RecordLanding(area, USERS_LANDED.name, tables.USERS, user_row,
                            run_id=to_register.run_id, member_guid=None, user_guid=EVERY_USER)  # fmt: skip
    listing, guid_of_id, registered = Listing(landing), {}, {}
    try:
        with mx.client([api_log]) as client:

            def users():
                for user in client.list_users(on_malformed=listing.on_malformed):
                    guid_of_id.setdefault(user.id, user.guid)
                    yield user

            listing.read(users)
            if listing.failure is not None:
                raise listing.failure
            for user_id in to_register.to_register:  # one MX has just listed is registered already
                if (user_guid := guid_of_id.get(user_id)) is None:
                    user = client.ensure_user(id=user_id)
                    landing.add(user)
                    listing.guids.add(user.guid)  # MX has it now: the list must not retire it
                    user_guid = user.guid
                registered[user_id] = user_guid
    except BaseException as exc:  # what arrived is true (and a user just created must be loaded): landed, failed
        landing.finish(outcome="failed", reason=failure_reason(USER_LIST_READ, exc), listed_guids=listing.guids)
        raise
    listed_from = listing.started_at if listing.complete else None  # only a complete list retires what it lacks
    landing.finish(outcome="synced", listed_guids=listing.guids, listed_from=listed_from)
    context.log.info(f"{len(listing.guids)} users listed, {len(registered)} end users registered")
    return UsersRead(to_register, registered, api_log)


@dg.op(name=LOAD, out=dg.Out(dg.Nothing), pool=POOL)
def load_users(context: dg.OpExecutionContext, read: UsersRead, warehouse: WarehouseResource):
    """Merge the landed users (this run's and any a killed run left), settle the list, record the registrations."""
    wh = warehouse.open()
    area = LandingArea(read.to_register.landing_url)
    loaded = load_landed(
        wh, area, run_id=context.run.run_id, api_log=read.api_log, table=USERS_LANDED, alongside=EVERY_LANDED
    )
    metadata = step_metadata(
        wh,
        tables.USERS,
        read.api_log,
        loaded,
        end_users_added=read.to_register.end_users_added,
        users_registered=len(read.registered),
        users_retired=dg.MetadataValue.json(sorted(loaded.settled.retired)),
        users_reinstated=dg.MetadataValue.json(sorted(loaded.settled.reinstated)),
    )
    return dg.Output(None, metadata=metadata)


@dg.config_mapping
def _plan_config(config: UsersConfig) -> dict:
    """The asset's config, as the data team sets it, is the plan step's."""
    return {PLAN: {"config": config.model_dump()}}


@dg.graph_multi_asset(
    name="__".join(tables.USERS.key_path),
    group_name=GROUP,
    outs={
        "mx_users": dg.AssetOut(
            key=tables.USERS.key_path,
            kinds=KINDS,
            description="One row per MX user of this client (our end user's id is MX's `id`), payload as MX sent it.",
        )
    },
    config=_plan_config,
)
def mx_users():
    return {"mx_users": load_users(read_users(plan_users()))}
