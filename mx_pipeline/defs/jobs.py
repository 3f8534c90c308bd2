"""The jobs the data team and the sensors launch.

``ingest``: everything, for every user (what ``make demo`` runs). ``sync_members``: the same path after
registration (members -> status -> gate -> accounts -> transactions) for the users and members named in its
run config, which is how events and refreshes touch only the members they concern.
"""

from collections.abc import Iterable

import dagster as dg

from mx_pipeline.warehouse import tables

INGEST = dg.AssetSelection.groups("ingest", "lifecycle")
SCOPED_ASSETS = (tables.MEMBERS, tables.MEMBER_STATUS, tables.ACCOUNTS, tables.TRANSACTIONS)

ingest_job = dg.define_asset_job(
    "ingest", selection=INGEST, description="Register users, read members and status, route, notify, fetch."
)
sync_members_job = dg.define_asset_job(
    "sync_members",
    selection=INGEST - dg.AssetSelection.assets(tables.USERS.key_path),
    description="Re-read the members of the users in the run config: status, route, notify, fetch.",
)


def scoped_run_config(user_guids: Iterable[str] = (), member_guids: Iterable[str] = ()) -> dict:
    """Run config that limits ``sync_members`` to these users' members and these members."""
    config = {"user_guids": sorted(set(user_guids)), "member_guids": sorted(set(member_guids))}
    return {"ops": {"__".join(spec.key_path): {"config": dict(config)} for spec in SCOPED_ASSETS}}
