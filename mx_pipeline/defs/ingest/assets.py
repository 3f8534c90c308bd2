"""Ingest assets: MX users -> members -> member status, into ``raw``; accounts and transactions are landed first
(``accounts.py``, ``transactions.py``).

Each asset fetches through the ``mx`` resource, writes through ``mx_pipeline.warehouse`` (validated, upserted
by guid, rejects quarantined) and reports what it did (``report.py``). DuckDB allows one process in the file at a
time: ``mx_users``, which registers everyone, holds the ``duckdb_warehouse`` pool (limit 1 in the instance
config); the others open the file only for short units of work and wait on it when another process holds it
(``warehouse/connection.py``), so runs of different members read MX side by side.

What MX no longer has is retired (``warehouse/retire.py``): a user a complete ``list_users`` lacks, a member
a complete list of its user lacks, an account a complete list of its member lacks. A 404 on a member's own
read (status, accounts, transactions) is only a suspicion: it retires the member when a fresh complete list
of its user confirms it, and is a quarantined read otherwise (``listing.py``); a 404 on a user's member list
retires the user when ``list_users`` by our id for it confirms it. What a wrong list retired and MX lists
again comes back. Each step retires and reinstates in one transaction.

A read that fails after the transport's retries (a user's member list, a member's status, accounts or
transactions) never stops the step: the others are read and everything that arrived is written, the failure is
recorded with its reason (``warehouse/sync_state.py``, shown in ``member_health``), the check
``every_member_read`` fails the run after its last read, and the freshness sensor reads it again after a
back-off. No warehouse connection is open while MX is asked: each step reads, then writes in short transactions.
Status, accounts and transactions read ``mx.concurrency`` members at a time (``parallel.py``), every request under
the one client's rate limiter, every write in turn.
"""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from mx_pipeline.defs.ingest.config import ScopeConfig, UsersConfig
from mx_pipeline.defs.ingest.listing import (
    Suspects,
    list_members,
    retire_absent_members,
    retire_deleted_users,
    utc_now,
)
from mx_pipeline.defs.ingest.parallel import read_all
from mx_pipeline.defs.ingest.report import failure_reasons, step_result
from mx_pipeline.defs.jobs import run_key_of
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.mx import READ_FAILURES, MalformedResponse, NotFound
from mx_pipeline.warehouse import ApiCallLog, RawLoader, retire, tables
from mx_pipeline.warehouse.end_users import (
    add_end_users_from_csv,
    end_users_to_register,
    mx_user_guids,
    record_registrations,
)
from mx_pipeline.warehouse.members import (
    EVERYTHING,
    listed_members,
    record_status_changes,
    status_counts,
    users_in_scope,
)
from mx_pipeline.warehouse.rows import member_row, member_status_row, user_row
from mx_pipeline.warehouse.sync_state import (
    MEMBER_LIST_READ,
    STATUS_READ,
    failure_reason,
    record_failed_reads,
    record_member_lists,
)

POOL = "duckdb_warehouse"
GROUP = "ingest"
KINDS = {"python", "duckdb"}


MEMBER_ROUTES = dg.AssetKey(["ops", "member_routes"])  # written by the status gate (defs/lifecycle)
REFRESH_ATTEMPTS = dg.AssetKey(["ops", "refresh_attempts"])  # aggregations asked before a read (defs/refresh)


# Dagster's own freshness on what analysts read, beside the per-member SLAs of the refresh scheduler: the
# tables as a whole must have been loaded within a day (warn) and a day and two hours (fail).
ANALYSTS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=24))


@dg.asset(
    key=tables.USERS.key_path,
    group_name=GROUP,
    kinds=KINDS,
    pool=POOL,
    description="One row per MX user of this client (our end user's id is MX's `id`), payload as MX sent it.",
)
def mx_users(
    context: dg.AssetExecutionContext, config: UsersConfig, mx: MxResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    run_id, wh, api_log = context.run.run_id, warehouse.open(), ApiCallLog(context.run.run_id)
    csv = Path(config.users_csv)
    with wh.connect() as con:
        added = add_end_users_from_csv(con, csv, source=csv.name) if csv.exists() else 0
    registered: dict[str, str] = {}
    with mx.client([api_log]) as client, RawLoader(wh, tables.USERS, user_row, run_id=run_id, api_log=api_log) as load:
        listed_from, listed, guid_of_id = utc_now(), set(), {}
        for user in client.list_users():  # a page that fails, fails the asset: only a complete list gets here
            load.add(user)
            listed.add(user.guid)
            guid_of_id.setdefault(user.id, user.guid)
        with wh.connect() as con:
            with retire.atomically(con):  # a user a wrong list retired comes back; then, what MX no longer lists
                reinstated = retire.reinstate_users(con, listed, now=utc_now())
                gone = retire.users_absent(con, listed, listed_from=listed_from)
                retired = retire.retire_users(con, gone, reason=retire.USER_REMOVED, run_id=run_id, now=utc_now())
            to_register = end_users_to_register(con)
        for user_id in to_register:  # one MX has just listed is registered already: nothing to ask MX
            if (user_guid := guid_of_id.get(user_id)) is None:
                user = client.ensure_user(id=user_id)  # idempotent: looks the id up before creating
                load.add(user)
                user_guid = user.guid
            registered[user_id] = user_guid
    with wh.connect() as con:
        record_registrations(con, registered, now=utc_now())
    return step_result(
        wh,
        tables.USERS,
        api_log,
        load.counts,
        load.quarantined,
        end_users_added=added,
        users_registered=len(registered),
        users_retired=dg.MetadataValue.json(retired),
        users_reinstated=dg.MetadataValue.json(reinstated),
    )


@dg.asset(
    key=tables.MEMBERS.key_path,
    deps=[mx_users],
    group_name=GROUP,
    kinds=KINDS,
    description="One row per MX member (a user's connection to one institution), payload as MX listed it.",
)
def mx_members(
    context: dg.AssetExecutionContext, config: ScopeConfig, mx: MxResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    run_id, wh, api_log = context.run.run_id, warehouse.open(), ApiCallLog(context.run.run_id)
    with wh.connect() as con:
        user_guids = users_in_scope(con, config.scope) if config.scope != EVERYTHING else mx_user_guids(con)
    with (
        mx.client([api_log]) as client,
        RawLoader(wh, tables.MEMBERS, member_row, run_id=run_id, api_log=api_log) as load,
    ):
        listings = {user_guid: list_members(client, user_guid, load) for user_guid in user_guids}
        users_retired = retire_deleted_users(client, wh, listings, load, run_id)  # a 404: deleted at MX?
    failed = {u: failure_reason(MEMBER_LIST_READ, x.failure) for u, x in listings.items() if x.failure is not None}
    with wh.connect() as con:
        retired = retire_absent_members(con, listings, run_id)
        record_member_lists(con, {u: failed.get(u) for u in listings}, run_id=run_id, now=utc_now())
    return step_result(
        wh,
        tables.MEMBERS,
        api_log,
        load.counts,
        load.quarantined,
        read_failures=len(failed),
        users_read=len(user_guids),
        users_failed=dg.MetadataValue.json(failure_reasons(context, failed)),
        members_retired=dg.MetadataValue.json(retired),
        users_retired=dg.MetadataValue.json(users_retired),
    )


@dg.asset(
    key=tables.MEMBER_STATUS.key_path,
    deps=[mx_members, REFRESH_ATTEMPTS],
    group_name=GROUP,
    kinds=KINDS,
    description=(
        "One row per member: its latest status read (connection_status, is_being_aggregated, ...). "
        "Status changes are appended to ops.member_status_history."
    ),
)
def member_status(
    context: dg.AssetExecutionContext, config: ScopeConfig, mx: MxResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    run_id, wh, api_log = context.run.run_id, warehouse.open(), ApiCallLog(context.run.run_id)
    with wh.connect() as con:
        members = listed_members(con, config.scope)
    spec = tables.MEMBER_STATUS
    suspects, failed = Suspects(), {}
    with mx.client([api_log]) as client, RawLoader(wh, spec, _status_row, run_id=run_id, api_log=api_log) as load:

        def read_status(member: tuple[str, str]) -> None:
            member_guid, user_guid = member
            try:
                load.add((client.read_member_status(user_guid, member_guid), user_guid))
            except NotFound as exc:
                suspects.noter(member_guid, user_guid)(exc)
            except READ_FAILURES as exc:
                failed[member_guid] = (user_guid, failure_reason(STATUS_READ, exc))
                if isinstance(exc, MalformedResponse):
                    load.reject_page(f"{type(exc).__name__}: {exc}", member_guid)

        read_all(read_status, members, concurrency=mx.concurrency)
        retired = suspects.settle(client, wh, load, run_id)
    failed |= {m: (u, failure_reason(STATUS_READ, exc)) for m, (u, exc) in suspects.unconfirmed.items()}
    with wh.connect() as con:
        record_failed_reads(con, failed, run_id=run_id, now=utc_now())
        changes = record_status_changes(con, run_id=run_id)
        by_status = status_counts(con)
        ledger = warehouse.ledger(con)
        # Whatever this run held (a webhook's members, a refresh batch) is fresh now: others may claim it.
        ledger.release(run_key=run_key_of(context))
        ledger.mirror(con)  # the refresh attempts a shared ledger holds, for analysts and member_health
    return step_result(
        wh,
        spec,
        api_log,
        load.counts,
        load.quarantined,
        read_failures=len(failed),
        members_failed=dg.MetadataValue.json(failure_reasons(context, failed)),
        status_changes=changes,
        members_by_status=dg.MetadataValue.json(by_status),
        members_retired=dg.MetadataValue.json(retired),
    )


def _status_row(pair, load):
    status, user_guid = pair
    return member_status_row(status, user_guid, load)
