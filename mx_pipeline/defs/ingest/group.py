"""The ingest group: what its steps share.

Every read from MX is three steps, one asset: a plan on one short connection, a read that lands what MX sent in the
landing area and never opens the warehouse, and a load that merges every landed read in bulk under the
``duckdb_warehouse`` pool (``users.py``, ``members.py``, ``status.py``, ``accounts.py``, ``transactions.py``; the
files: ``mx_pipeline/landing``, the loader: ``warehouse/landed.py``). So any number of runs read MX side by side,
and only loads wait on each other, for seconds: each load merges what every table has landed, so the loads queued
behind it find their reads merged and settle only their own run.

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

import dagster as dg

POOL = "duckdb_warehouse"
GROUP = "ingest"
KINDS = {"python", "duckdb"}


MEMBER_ROUTES = dg.AssetKey(["ops", "member_routes"])  # written by the status gate (defs/lifecycle)
REFRESH_ATTEMPTS = dg.AssetKey(["ops", "refresh_attempts"])  # aggregations asked before a read (defs/refresh)


# Dagster's own freshness on what analysts read, beside the per-member SLAs of the refresh scheduler: the
# tables as a whole must have been loaded within a day (warn) and a day and two hours (fail).
ANALYSTS_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=24))
