"""The sandbox's own admin hook under ``/_sandbox/`` (not MX): truth, clock, forced statuses, scripts, data.

No auth, no faults, no rate limits. JSON in, JSON out (``application/json``).
"""

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mx_pipeline.mx.statuses import ConnectionStatus
from mx_pipeline.sandbox import aggregation
from mx_pipeline.sandbox.clock import iso
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.faults import faults_endpoint
from mx_pipeline.sandbox.records import Outcome
from mx_pipeline.sandbox.wire import member_json, member_status_json
from mx_pipeline.sandbox.world import World


def _status(value: Any) -> ConnectionStatus:
    try:
        return ConnectionStatus(str(value))
    except ValueError:
        raise MxError(422, f"Unknown connection_status {value!r}.") from None


def _outcome(item: Any) -> Outcome:
    """``"CHALLENGED"``, ``"CHALLENGED:OPTIONS"`` or ``{"connection_status": ..., "challenge_type": ...}``."""
    if isinstance(item, dict):
        return Outcome(_status(item.get("connection_status")), item.get("challenge_type"))
    status, _, kind = str(item).partition(":")
    return Outcome(_status(status), kind or None)


def admin_endpoint(handler: Callable[[World, dict, dict], Any]):
    async def endpoint(request: Request) -> Response:
        world: World = request.app.state.runtime.world
        raw = await request.body()
        try:
            body = (await request.json()) if raw.strip() else {}
            with world.lock:
                aggregation.tick(world)
                result = handler(world, dict(request.path_params), body if isinstance(body, dict) else {})
                aggregation.tick(world)
        except MxError as error:
            return JSONResponse(error.body(), error.status)
        except ValueError:
            return JSONResponse({"error": {"message": "invalid JSON"}}, 400)
        return JSONResponse(result)

    endpoint.__name__ = handler.__name__
    return endpoint


def truth(world, params, body):
    """Counts and logs: users, members, transactions, members by status, abuse degradations, webhooks."""
    return world.truth()


def clock(world, params, body):
    return {"now": iso(world.now())}


def advance_clock(world, params, body):
    """``{"seconds": N}`` (or minutes/hours/days); jobs that come due finish at once."""
    seconds = float(body.get("seconds", 0)) + 60 * float(body.get("minutes", 0))
    seconds += 3600 * float(body.get("hours", 0)) + 86400 * float(body.get("days", 0))
    world.clock.advance(seconds)
    aggregation.tick(world)
    return {"now": iso(world.now())}


def member_truth(world, params, body):
    member = world.member_by_guid(params["member_guid"])
    return {
        "member": member_json(member, world.user(member.user_guid)),
        "status": member_status_json(member),
        "credentials": {"LOGIN": member.credentials.get("LOGIN")},
        "job": None if member.job is None else {"kind": member.job.kind, "completes_at": iso(member.job.completes_at)},
        "scripted_outcomes": [o.status.value for o in member.scripted_outcomes],
        "degraded_until": iso(member.degraded_until),
        "transactions": len(world.transactions.get(member.guid, {})),
        "aggregations_started": world.aggregation_count[member.guid],
        "abuse_degradations": [a for a in world.abuse_degradations if a["member_guid"] == member.guid],
        "status_history": [h for h in world.status_history if h["member_guid"] == member.guid],
    }


def force_connection_status(world, params, body):
    """``{"connection_status": "CHALLENGED", "challenge_type": "OPTIONS"}``: set it now (fires webhooks)."""
    member = world.member_by_guid(params["member_guid"])
    aggregation.force_status(world, member, _status(body.get("connection_status")), body.get("challenge_type"))
    return member_truth(world, params, body)


def script_outcomes(world, params, body):
    """``{"outcomes": ["CHALLENGED", "CONNECTED"]}``: how the member's next aggregations end, in order."""
    member = world.member_by_guid(params["member_guid"])
    outcomes = body.get("outcomes")
    if not isinstance(outcomes, list):
        raise MxError(400, "outcomes must be a list.")
    member.scripted_outcomes.extend(_outcome(o) for o in outcomes)
    return member_truth(world, params, body)


def add_transactions(world, params, body):
    """``{"count": N}`` new posted purchases today on a connected member."""
    member = world.member_by_guid(params["member_guid"])
    return {"created": aggregation.add_transactions(world, member, int(body.get("count", 1)))}


def replace_member(world, params, body):
    """MX replaces a member (e.g. an OAuth migration): the old one is deleted and a new member for the same user,
    institution and login appears, with the same history under new guids; its first aggregation starts at once."""
    old = world.member_by_guid(params["member_guid"])
    world.forget_member(old)
    new = aggregation.create_member(
        world,
        old.user_guid,
        old.institution_code,
        old.credentials,
        background_aggregation_is_disabled=old.background_aggregation_is_disabled,
        include_transactions=old.include_transactions,
    )
    aggregation.tick(world)  # instant aggregation (aggregation_seconds 0) answers the member already CONNECTED
    return {"replaced_member_guid": old.guid, "member_guid": new.guid} | member_truth(
        world, {"member_guid": new.guid}, {}
    )


def user_transactions(world, params, body):
    """The user's live transactions as MX holds them now (a deleted member's are gone), oldest first."""
    rows = world.live_transactions_of_user(params["user_guid"])
    return {
        "transactions": [
            {
                "guid": t.guid,
                "account_guid": t.account_guid,
                "member_guid": t.member_guid,
                "amount": t.amount,
                "type": t.type,
                "date": t.date.isoformat(),
                "status": t.status,
                "description": t.description,
            }
            for t in rows
        ]
    }


def finish_member_aggregation(world, params, body):
    member = world.member_by_guid(params["member_guid"])
    aggregation.finish_job(world, member)
    return member_truth(world, params, body)


def finish_all_aggregations(world, params, body):
    finished = [m.guid for m in world.members.values() if m.job is not None]
    for guid in finished:
        aggregation.finish_job(world, world.members[guid])
    return {"finished": finished}


def webhooks(world, params, body):
    return {"emitted": list(world.outbox)}


def admin_routes(webhook_log: Callable[[], dict] | None) -> list[Route]:
    """Routes under /_sandbox/."""

    def webhook_truth(world, params, body):
        return webhooks(world, params, body) | {"delivery": webhook_log() if webhook_log else None}

    webhook_truth.__name__ = "webhook_truth"
    member = "/_sandbox/members/{member_guid}"
    return [
        Route("/_sandbox/truth", admin_endpoint(truth), methods=["GET"]),
        Route("/_sandbox/clock", admin_endpoint(clock), methods=["GET"]),
        Route("/_sandbox/clock/advance", admin_endpoint(advance_clock), methods=["POST"]),
        Route("/_sandbox/webhooks", admin_endpoint(webhook_truth), methods=["GET"]),
        Route("/_sandbox/aggregations/finish", admin_endpoint(finish_all_aggregations), methods=["POST"]),
        Route(member, admin_endpoint(member_truth), methods=["GET"]),
        Route(f"{member}/connection_status", admin_endpoint(force_connection_status), methods=["POST"]),
        Route(f"{member}/script", admin_endpoint(script_outcomes), methods=["POST"]),
        Route(f"{member}/transactions", admin_endpoint(add_transactions), methods=["POST"]),
        Route(f"{member}/finish_aggregation", admin_endpoint(finish_member_aggregation), methods=["POST"]),
        Route(f"{member}/replace", admin_endpoint(replace_member), methods=["POST"]),
        Route("/_sandbox/users/{user_guid}/transactions", admin_endpoint(user_transactions), methods=["GET"]),
        Route("/_sandbox/faults", faults_endpoint, methods=["GET", "POST"]),
    ]
