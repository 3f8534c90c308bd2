"""The ingest group: what its steps share, and the users' registration (``raw.mx_users``).

Every later read of a sync is three steps, one asset: a plan on one short connection, a read that lands what MX
sent in the landing area and never opens the warehouse, and a load that merges every landed read in bulk under the
``duckdb_warehouse`` pool (``members.py``, ``status.py``, ``accounts.py``, ``transactions.py``; the files:
``mx_pipeline/landing``, the loader: ``warehouse/landed.py``). So any number of sync runs read MX side by side,
and only loads wait on each other. ``mx_users`` registers our end users at MX (it creates MX users, and must
never do so twice): it runs only in the ``ingest`` job, and holds the pool for its whole run.

What MX no longer has is retired (``warehouse/retire.py``): a user a complete ``list_users`` lacks, a member
a complete list of its user lacks, an account a complete list of its member lacks. A 404 on a member's own
read (status, accounts, transactions) is only a suspicion: it retires the member when a fresh complete list
of its user confirms it, and is a quarantined read otherwise (``listing.py``); a 404 on a user's member list
retires the user when ``list_users`` by our id for it confirms it. What a wrong list retired and MX lists
again comes back. Each load retires and reinstates in its one transaction.

A read that fails after the transport's retries (a user's member list, a member's status, accounts or
transactions) never stops the step: the others are read and everything that arrived is landed, the failure is
recorded with its reason when it is loaded (``warehouse/sync_state.py``, shown in ``member_health``), the check
``every_member_read`` fails the run after its last read, and the freshness sensor reads it again after a
back-off. Reads run ``mx.concurrency`` members (or users) at a time (``parallel.py``), every request under the one
client's rate limiter.
"""

from datetime import timedelta
from pathlib import Path

import dagster as dg

from mx_pipeline.defs.ingest.config import UsersConfig
from mx_pipeline.defs.ingest.listing import utc_now
from mx_pipeline.defs.ingest.report import step_result
from mx_pipeline.defs.resources import MxResource, WarehouseResource
from mx_pipeline.warehouse import ApiCallLog, RawLoader, retire, tables
from mx_pipeline.warehouse.end_users import (
    add_end_users_from_csv,
    end_users_to_register,
    record_registrations,
)
from mx_pipeline.warehouse.rows import user_row

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
