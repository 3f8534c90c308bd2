"""MX members: CRUD, status, aggregate, check_balance, MFA (challenges + resume) and credentials (S11)."""

from starlette.requests import Request
from starlette.responses import Response

from mx_pipeline.mx.statuses import ConnectionStatus
from mx_pipeline.sandbox import aggregation
from mx_pipeline.sandbox.endpoint import mx_json, no_content, require_object
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.institutions import INSTITUTIONS, challenge_json, credential_guid, credentials_json
from mx_pipeline.sandbox.pagination import paged_body
from mx_pipeline.sandbox.records import Member
from mx_pipeline.sandbox.wire import member_json, member_status_json
from mx_pipeline.sandbox.world import World


def _member(request: Request, world: World) -> Member:
    return world.member(request.path_params["user_guid"], request.path_params["member_guid"])


def _member_body(world: World, member: Member, status: int = 200) -> Response:
    return mx_json({"member": member_json(member, world.user(member.user_guid))}, status)


def credentials_by_field(institution_code: str, credentials) -> dict[str, str]:
    """``[{guid, value}]`` (guids from GET /institutions/{code}/credentials) -> {field_name: value}."""
    if not isinstance(credentials, list):
        raise MxError(400, "credentials must be an array of {guid, value}.")
    institution = INSTITUTIONS[institution_code]
    field_by_guid = {
        credential_guid(institution, c["field_name"]): c["field_name"] for c in credentials_json(institution)
    }
    result = {}
    for item in credentials:
        if not isinstance(item, dict) or item.get("guid") not in field_by_guid:
            raise MxError(422, "Unknown credential guid for this institution.")
        result[field_by_guid[item["guid"]]] = str(item.get("value", ""))
    return result


def list_members(request: Request, world: World, body) -> Response:
    user = world.user(request.path_params["user_guid"])
    members = world.members_of(user.guid)
    return mx_json(paged_body(request, "members", members, lambda m: member_json(m, user)))


def create_member(request: Request, world: World, body) -> Response:
    """POST members answers 202: "MX will immediately validate the provided credentials and attempt to aggregate"."""
    user_guid = request.path_params["user_guid"]
    world.user(user_guid)
    fields = require_object(body, "member")
    code = fields.get("institution_code")
    if not code or "credentials" not in fields:
        raise MxError(400, "institution_code and credentials are required.")
    if code not in INSTITUTIONS:
        raise MxError(404, "Institution not found.")
    member = aggregation.create_member(
        world,
        user_guid,
        code,
        credentials_by_field(code, fields["credentials"]),
        id=fields.get("id"),
        metadata=fields.get("metadata"),
        skip_aggregation=bool(fields.get("skip_aggregation")),
        background_aggregation_is_disabled=bool(fields.get("background_aggregation_is_disabled")),
    )
    return _member_body(world, member, 202)


def read_member(request: Request, world: World, body) -> Response:
    return _member_body(world, _member(request, world))


def update_member(request: Request, world: World, body) -> Response:
    """PUT member: only credentials, id and metadata change; new credentials re-aggregate (S11 updateMember)."""
    member = _member(request, world)
    fields = require_object(body, "member")
    for name in ("id", "metadata"):
        if name in fields:
            setattr(member, name, fields[name])
    if "background_aggregation_is_disabled" in fields:
        member.background_aggregation_is_disabled = bool(fields["background_aggregation_is_disabled"])
    if fields.get("credentials"):
        credentials = credentials_by_field(member.institution_code, fields["credentials"])
        aggregation.update_credentials(world, member, credentials, bool(fields.get("skip_aggregation")))
    return _member_body(world, member)


def delete_member(request: Request, world: World, body) -> Response:
    world.forget_member(_member(request, world))
    return no_content()


def read_member_status(request: Request, world: World, body) -> Response:
    return mx_json({"member": member_status_json(_member(request, world))})


def aggregate_member(request: Request, world: World, body) -> Response:
    """POST aggregate: 202 with the member whether or not a new job started (recent data may be kept as is)."""
    member = _member(request, world)
    aggregation.request_job(world, member, "aggregate")
    return _member_body(world, member, 202)


def check_balances(request: Request, world: World, body) -> Response:
    member = _member(request, world)
    aggregation.request_job(world, member, "balance")
    return _member_body(world, member, 202)


def list_member_challenges(request: Request, world: World, body) -> Response:
    """200 with the challenges, or 204 when the member is not CHALLENGED (S11 listMemberChallenges)."""
    member = _member(request, world)
    if member.connection_status != ConnectionStatus.CHALLENGED or not member.challenges:
        return no_content()
    return mx_json(paged_body(request, "challenges", member.challenges, challenge_json))


def resume_aggregation(request: Request, world: World, body) -> Response:
    """PUT resume with ``{"member": {"challenges": [{guid, value}]}}`` answers 202."""
    member = _member(request, world)
    answers = require_object(body, "member").get("challenges")
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise MxError(400, "member.challenges must be an array of {guid, value}.")
    aggregation.resume(world, member, {str(a.get("guid")): str(a.get("value", "")) for a in answers})
    return _member_body(world, member, 202)


def list_member_credentials(request: Request, world: World, body) -> Response:
    member = _member(request, world)
    fields = credentials_json(INSTITUTIONS[member.institution_code])
    return mx_json(paged_body(request, "credentials", fields, lambda c: c))
