"""Members' asynchronous aggregation and their (non-sequential) connection-status machine.

Callers hold ``world.lock``. Jobs finish lazily: ``tick`` completes every job whose time has come, and it runs
before each API request, on every clock advance and from the server's background ticker.
MX facts: "MX will immediately validate the provided credentials and attempt to aggregate" on create (S11
createMember); aggregate answers 202, same-kind job running -> 202 as is, other kind -> 409, a recent
aggregation may be declined with 202 (errors page; S11 aggregateMember); a CHALLENGED member becomes EXPIRED when
the answer does not come in time (academy); the CONNECTION_STATUS webhook fires on entering one of the eight
end-user-actionable statuses; AGGREGATION ``member_data_updated`` fires after a completed aggregation.
"""

import random
from datetime import datetime, timedelta

from mx_pipeline.mx.statuses import END_USER_ACTIONABLE, ConnectionStatus
from mx_pipeline.sandbox.datagen import DataChanges, add_posted_purchases, advance_member_data, start_member_data
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.institutions import (
    CHALLENGE_LATER_PASSWORD,
    INSTITUTIONS,
    make_challenges,
    outcome_for_answers,
    outcome_for_credentials,
    status_message,
)
from mx_pipeline.sandbox.records import Job, Member, Outcome
from mx_pipeline.sandbox.world import World

S = ConnectionStatus
NEEDS_NEW_CREDENTIALS = frozenset({S.DENIED, S.PREVENTED, S.IMPAIRED})


def create_member(
    world: World,
    user_guid: str,
    institution_code: str,
    credentials: dict[str, str],
    *,
    id: str | None = None,
    metadata: str | None = None,
    skip_aggregation: bool = False,
    background_aggregation_is_disabled: bool = False,
    include_transactions: bool = True,
) -> Member:
    """A new member; unless ``skip_aggregation`` its first aggregation starts at once (status CREATED)."""
    world.user(user_guid)
    if institution_code not in INSTITUTIONS:
        raise MxError(404, "Institution not found.")
    for other in world.members_of(user_guid):
        if other.institution_code == institution_code and other.credentials == credentials:
            raise MxError(409, "A member with these credentials already exists for this user.")
    member = Member(
        guid=world.new_guid("MBR"),
        user_guid=user_guid,
        institution_code=institution_code,
        credentials=dict(credentials),
        created_at=world.now(),
        id=id,
        metadata=metadata,
        background_aggregation_is_disabled=background_aggregation_is_disabled,
        include_transactions=include_transactions,
    )
    world.add_member(member)
    if not skip_aggregation:
        start_job(world, member, "aggregate", plan_outcome(world, member))
    return member


def update_credentials(world: World, member: Member, credentials: dict[str, str], skip_aggregation: bool) -> None:
    """New credentials clear ``needs_updated_credentials`` and start an aggregation (S25 aggregated_at)."""
    member.credentials.update(credentials)
    member.needs_updated_credentials = False
    if skip_aggregation:
        return
    member.job = None
    set_status(world, member, S.UPDATED)
    start_job(world, member, "aggregate", plan_outcome(world, member))


def request_job(world: World, member: Member, kind: str) -> bool:
    """POST aggregate / check_balance. Returns whether a new job started (False = member answered as is)."""
    if member.job is not None:
        if member.job.kind == kind:
            return False
        raise MxError(409, f"A {member.job.kind} job is already running on this member.")
    if member.needs_updated_credentials:
        return False  # S25: "when true, MX will not attempt to aggregate the member"
    institution = INSTITUTIONS[member.institution_code]
    recent = member.successfully_aggregated_at and world.now() - member.successfully_aggregated_at < timedelta(
        seconds=world.config.aggregation_throttle_seconds
    )
    if kind == "aggregate" and institution.has_aggregation_limits and recent:
        return False
    start_job(world, member, kind, plan_outcome(world, member))
    return True


def plan_outcome(world: World, member: Member) -> Outcome:
    """Scripted outcome first, then abuse degradation, then the credentials, then seeded institution events."""
    if member.scripted_outcomes:
        return member.scripted_outcomes.popleft()
    if member.degraded_until and world.now() < member.degraded_until:
        return Outcome(S.DEGRADED)
    outcome = outcome_for_credentials(member.credentials)
    if outcome.status != S.CONNECTED or member.successfully_aggregated_at is None:
        return outcome
    if member.credentials.get("PASSWORD") == CHALLENGE_LATER_PASSWORD:
        return Outcome(S.CHALLENGED, "TEXT")
    config = world.config
    draw = random.Random(f"{config.seed}:{member.guid}:{world.aggregation_count[member.guid]}").random()
    thresholds = (
        (config.rechallenge_rate, Outcome(S.CHALLENGED, "TEXT")),
        (config.institution_degrade_rate, Outcome(S.DEGRADED)),
        (config.institution_disable_rate, Outcome(S.DISABLED)),
    )
    cumulative = 0.0
    for rate, scripted in thresholds:
        cumulative += rate
        if draw < cumulative:
            return scripted
    return outcome


def start_job(world: World, member: Member, kind: str, outcome: Outcome, *, is_background: bool = False) -> None:
    now = world.now()
    seconds = world.config.aggregation_seconds if kind == "aggregate" else world.config.aggregation_seconds / 2
    member.job = Job(kind, now, now + timedelta(seconds=seconds), outcome, is_background)
    member.is_being_aggregated = True
    member.aggregated_at = now
    member.challenges = []
    world.aggregation_count[member.guid] += 1
    world.watched_members.add(member.guid)


def resume(world: World, member: Member, answers: dict[str, str]) -> None:
    """PUT resume: answers go to the waiting job, which carries on (RESUMED) and ends by the answers."""
    if member.connection_status != S.CHALLENGED or not member.challenges:
        raise MxError(409, "This member is not waiting for MFA answers.")
    outcome = outcome_for_answers(member.challenges, answers)
    set_status(world, member, S.RESUMED)
    start_job(world, member, "aggregate", outcome)


def tick(world: World) -> None:
    """Finish due jobs, expire unanswered challenges and start due background aggregations."""
    now = world.now()
    _start_background_aggregations(world, now)
    for guid in list(world.watched_members):
        member = world.members.get(guid)
        if member is None:
            world.watched_members.discard(guid)
        elif member.job is not None and member.job.completes_at <= now:
            finish_job(world, member)
        elif member.job is None and member.connection_status == S.CHALLENGED:
            expiry = timedelta(seconds=world.config.challenge_expiry_seconds)
            if member.challenged_at and now - member.challenged_at >= expiry:
                member.challenges = []
                set_status(world, member, S.EXPIRED)
                world.watched_members.discard(guid)
        elif member.job is None:
            world.watched_members.discard(guid)


def _start_background_aggregations(world: World, now: datetime) -> None:
    """MX re-aggregates connected members about every 24 h unless background aggregation is disabled (S25 tag
    ``accounts``; S11 ``background_aggregation_is_disabled``). Scanned at most once per sandbox minute."""
    hours = world.config.background_aggregation_hours
    if not hours or (world.last_background_scan and now - world.last_background_scan < timedelta(minutes=1)):
        return
    world.last_background_scan = now
    due = now - timedelta(hours=hours)
    for member in world.members.values():
        user = world.users.get(member.user_guid)
        if (
            member.job is None
            and member.connection_status == S.CONNECTED
            and not member.background_aggregation_is_disabled
            and member.successfully_aggregated_at is not None
            and member.successfully_aggregated_at <= due
            and not (user and user.is_disabled)
        ):
            start_job(world, member, "aggregate", plan_outcome(world, member), is_background=True)


def finish_job(world: World, member: Member) -> None:
    """Complete the member's running job now, applying its planned outcome."""
    job = member.job
    if job is None:
        return
    now = world.now()
    member.job = None
    member.is_being_aggregated = False
    status = job.outcome.status
    if status == S.CHALLENGED:
        member.challenges = make_challenges(job.outcome.challenge_kind or "TEXT", world.new_guid)
        member.challenged_at = now
        set_status(world, member, S.CHALLENGED, force_webhook=True)
        return
    world.watched_members.discard(member.guid)
    if status != S.CONNECTED:
        member.needs_updated_credentials = status in NEEDS_NEW_CREDENTIALS
        set_status(world, member, status)
        return
    changes = _refresh_data(world, member, now, with_transactions=job.kind == "aggregate")
    member.successfully_aggregated_at = now
    set_status(world, member, S.CONNECTED)
    if job.kind == "aggregate":
        _emit_aggregation_webhook(world, member, job, changes, now)


def _refresh_data(world: World, member: Member, now: datetime, with_transactions: bool) -> DataChanges:
    if member.data is None:
        bank = world.bank_login_of(member)
        member.data = start_member_data(world.config.seed, member.guid, member.user_guid, now, bank)
        for account in member.data.accounts:
            world.accounts[account.guid] = account
    pending = world.pending_of_member(member.guid)
    changes = advance_member_data(
        member.data,
        now,
        world.config.history_days,
        pending,
        with_transactions=with_transactions and member.include_transactions,
    )
    rows = world.transactions.setdefault(member.guid, {})
    for txn in changes.removed:
        rows.pop(txn.guid, None)
    for txn in changes.created:
        rows[txn.guid] = txn
    return changes


def add_transactions(world: World, member: Member, count: int) -> list[str]:
    """Admin: ``count`` new posted purchases today on the member's accounts (the member must have data), as an
    aggregation brings them at MX: ``successfully_aggregated_at`` moves to now."""
    if member.data is None:
        raise MxError(409, "Member has no data yet: connect it first.")
    created = add_posted_purchases(member.data, world.now(), count)
    rows = world.transactions.setdefault(member.guid, {})
    for txn in created:
        rows[txn.guid] = txn
    member.successfully_aggregated_at = world.now()
    return [t.guid for t in created]


def set_status(
    world: World, member: Member, status: ConnectionStatus, *, force_webhook: bool = False, cause: str = "aggregation"
) -> None:
    """Change the status, log it, and fire CONNECTION_STATUS when entering an end-user-actionable status."""
    previous = member.connection_status
    member.connection_status = status
    now = world.now()
    world.status_history.append(
        {"member_guid": member.guid, "from": previous.value, "to": status.value, "at": now.isoformat(), "cause": cause}
    )
    if status in END_USER_ACTIONABLE and (status != previous or force_webhook):
        world.emit(
            {
                "action": "CHANGED",
                "connection_status": status.value,
                "connection_status_id": status.id,
                "connection_status_message": status_message(status, INSTITUTIONS[member.institution_code]),
                "member_guid": member.guid,
                "type": "CONNECTION_STATUS",
                "user_guid": member.user_guid,
            }
        )


def force_status(
    world: World, member: Member, status: ConnectionStatus, challenge_kind: str | None = None, cause: str = "admin"
) -> None:
    """Admin / abuse: put a member in ``status`` now (any running job is dropped)."""
    member.job = None
    member.is_being_aggregated = False
    member.challenges = []
    if status == S.CHALLENGED:
        member.challenges = make_challenges(challenge_kind or "TEXT", world.new_guid)
        member.challenged_at = world.now()
        world.watched_members.add(member.guid)
    member.needs_updated_credentials = status in NEEDS_NEW_CREDENTIALS
    set_status(world, member, status, force_webhook=status == S.CHALLENGED, cause=cause)


def degrade_for_abuse(world: World, member: Member, reason: str) -> None:
    """The sandbox's model of MX degrading a member its client hammers; recorded so tests can prove innocence."""
    now = world.now()
    member.degraded_until = now + timedelta(seconds=world.config.abuse_degraded_seconds)
    world.abuse_degradations.append(
        {"member_guid": member.guid, "user_guid": member.user_guid, "reason": reason, "at": now.isoformat()}
    )
    force_status(world, member, S.DEGRADED, cause=f"abuse: {reason}")


def _emit_aggregation_webhook(world: World, member: Member, job: Job, changes: DataChanges, now: datetime) -> None:
    user = world.users.get(member.user_guid)
    world.emit(
        {
            "action": "member_data_updated",
            "completed_at": int(now.timestamp()),
            "completed_on": now.date().isoformat(),
            "is_background": job.is_background,
            "job_guid": world.new_guid("JOB"),
            "member_guid": member.guid,
            "transactions_created_count": len(changes.created),
            "transactions_updated_count": len(changes.updated),
            "type": "AGGREGATION",
            "user_guid": member.user_guid,
            "user_id": user.id if user else None,
        }
    )
