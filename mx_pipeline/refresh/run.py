"""One refresh run's part: claim (for a manual run), aggregate the claimed members, record, release.

Scheduled runs arrive with their members already claimed by the sensor under the run's key; a manual run
claims its members itself, after the same safety rules unless the data team overrides them. Every path out
of the step lets go of the run's aggregation claims (:func:`releasing_claims`): done, MX failing, the
warehouse busy, a crash. Only a killed process leaves them, and they expire after the policy's claim TTL.
No warehouse connection is open while MX is called: claims are read, and attempts recorded, on short ones.

The claims and attempts live in the warehouse on one machine, and in the shared Postgres (``shared_url``,
``refresh/shared_ledger.py``) when workers run anywhere: there, renewing, recording and releasing never wait for
the DuckDB file.
"""

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg

from mx_pipeline.mx import MxClient
from mx_pipeline.refresh.aggregate import Attempt, refresh_batch
from mx_pipeline.refresh.policy import RefreshPolicy
from mx_pipeline.warehouse import Warehouse, WarehouseBusy
from mx_pipeline.warehouse.refresh_state import Ledger, claimed_by, due_members, ledger_for

MANUAL, SLA, WEBHOOK = "manual", "sla", "webhook"
AGGREGATING_TRIGGERS = (MANUAL, SLA)
RECORD_WAIT_SECONDS = 600.0

_log = logging.getLogger(__name__)


def claim_for_manual_run(
    warehouse: Warehouse,
    members: Sequence[tuple[str, str]],
    policy: RefreshPolicy,
    *,
    run_key: str,
    override_safety: bool,
    shared_url: str | None = None,
) -> list[str]:
    """Claim the named (member, user)s the rules allow now; ``override_safety`` skips only the pacing rules."""
    now = dt.datetime.now(dt.UTC)
    with warehouse.connect() as con:
        ledger = ledger_for(con, shared_url)
        due = due_members(con, policy, now=now, only=[m for m, _ in members], ignore_sla=True,
                          ignore_pacing=override_safety, ledger=ledger)  # fmt: skip
        allowed = {m.member_guid for m in due}
        ledger.claim([(m, u) for m, u in members if m in allowed], trigger=MANUAL, run_key=run_key, now=now)
        return [m.member_guid for m in claimed_by(con, run_key, ledger=ledger)]


@contextmanager
def releasing_claims(
    warehouse: Warehouse, *, run_key: str, shared_url: str | None = None, log: logging.Logger | None = None
) -> Iterator[None]:
    """Let go of the run's aggregation claims however the block ends.

    A webhook's claim stays until its status read (``member_status`` releases it). If even the release finds
    the warehouse held past its wait, or the shared Postgres out of reach, the claims expire after the claim TTL;
    the block's own outcome stands.
    """
    try:
        yield
    finally:
        try:
            with _ledger(warehouse, shared_url, wait_seconds=RECORD_WAIT_SECONDS) as ledger:
                ledger.release(run_key=run_key, triggers=AGGREGATING_TRIGGERS)
        except (WarehouseBusy, psycopg.Error) as exc:
            (log or _log).warning(f"refresh claims of {run_key} not released, they expire after the claim TTL: {exc}")


def refresh_step(
    warehouse: Warehouse,
    client: MxClient,
    policy: RefreshPolicy,
    *,
    run_key: str,
    trigger: str,
    run_id: str,
    manual_members: Sequence[tuple[str, str]] | None = None,
    override_safety: bool = False,
    shared_url: str | None = None,
    log: logging.Logger | None = None,
) -> tuple[list[Attempt], list[str]]:
    """The refresh step: claim ``manual_members`` (a manual run), aggregate every member the run holds, wait for
    them, record each attempt, and let go of the claims on every path.

    Returns the attempts, and the named members not refreshed (the safety rules, or another run holds them).
    ``shared_url``: the Postgres every worker keeps the claims and attempts in; None: the warehouse.
    """
    with releasing_claims(warehouse, run_key=run_key, shared_url=shared_url, log=log):
        refused: list[str] = []
        if manual_members is not None:
            claimed = claim_for_manual_run(
                warehouse,
                manual_members,
                policy,
                run_key=run_key,
                override_safety=override_safety,
                shared_url=shared_url,
            )
            refused = sorted({m for m, _ in manual_members} - set(claimed))
        with warehouse.connect() as con:
            ledger = ledger_for(con, shared_url)
            # A webhook's claim only keeps other triggers away while its run reads what MX already aggregated.
            targets = [m.target for m in claimed_by(con, run_key, triggers=AGGREGATING_TRIGGERS, ledger=ledger)]
            # The claims' TTL counts from now, not from when the run was queued: it outlives this step.
            ledger.renew(run_key=run_key, now=dt.datetime.now(dt.UTC))
        attempts = refresh_batch(client, targets, policy, throttle=not override_safety)
        # These rows are what the interval, cap and budget count: wait as long as it takes to store them.
        with _ledger(warehouse, shared_url, wait_seconds=RECORD_WAIT_SECONDS) as ledger:
            ledger.record(attempts, trigger=trigger, run_id=run_id)
        return attempts, refused


@contextmanager
def _ledger(warehouse: Warehouse, shared_url: str | None, *, wait_seconds: float) -> Iterator[Ledger]:
    """The ledger to write to: the shared one needs no warehouse connection, the warehouse's needs one."""
    if shared_url is not None:
        yield ledger_for(None, shared_url)
        return
    with warehouse.connect(wait_seconds=wait_seconds) as con:
        yield ledger_for(con, None)
