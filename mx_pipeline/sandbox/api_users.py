"""MX users and widget URLs (S11 listUsers, createUser, readUser, updateUser, deleteUser, requestWidgetURL)."""

from starlette.requests import Request
from starlette.responses import Response

from mx_pipeline.sandbox.endpoint import mx_json, no_content, query_flag, require_object
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.pagination import paged_body
from mx_pipeline.sandbox.records import WidgetUrl
from mx_pipeline.sandbox.wire import user_json
from mx_pipeline.sandbox.world import World

SUPPORTED_WIDGET_TYPES = ("connect_widget",)


def list_users(request: Request, world: World, body) -> Response:
    """GET /users, filtered by ``id``, ``email`` and ``is_disabled``."""
    if (wanted_id := request.query_params.get("id")) is not None:
        found = world.user_by_id(wanted_id)
        users = [found] if found else []
    else:
        users = list(world.users.values())
    if (email := request.query_params.get("email")) is not None:
        users = [u for u in users if u.email == email]
    if (disabled := query_flag(request, "is_disabled")) is not None:
        users = [u for u in users if u.is_disabled == disabled]
    return mx_json(paged_body(request, "users", users, user_json))


def create_user(request: Request, world: World, body) -> Response:
    """POST /users answers 200 (not 201) with the user (S11 createUser: "the user object cannot be empty")."""
    fields = require_object(body, "user")
    if not fields:
        raise MxError(400, "The user object cannot be empty.")
    user = world.create_user(
        fields.get("id"), fields.get("email"), bool(fields.get("is_disabled")), fields.get("metadata")
    )
    return mx_json({"user": user_json(user)})


def read_user(request: Request, world: World, body) -> Response:
    return mx_json({"user": user_json(world.user(request.path_params["user_guid"]))})


def update_user(request: Request, world: World, body) -> Response:
    user = world.user(request.path_params["user_guid"])
    fields = require_object(body, "user")
    if "id" in fields:
        world.change_user_id(user, fields["id"])
    for name in ("email", "metadata"):
        if name in fields:
            setattr(user, name, fields[name])
    if "is_disabled" in fields:
        user.is_disabled = bool(fields["is_disabled"])
    return mx_json({"user": user_json(user)})


def delete_user(request: Request, world: World, body) -> Response:
    world.delete_user(request.path_params["user_guid"])
    return no_content()


def request_widget_url(request: Request, world: World, body) -> Response:
    """POST widget_urls: a single-use Connect URL on this sandbox, valid ten minutes (S11 requestWidgetURL)."""
    user = world.user(request.path_params["user_guid"])
    options = require_object(body, "widget_url")
    widget_type = options.get("widget_type")
    if not widget_type:
        raise MxError(400, "widget_type is required.")
    if widget_type not in SUPPORTED_WIDGET_TYPES:
        raise MxError(400, f"The sandbox serves only {', '.join(SUPPORTED_WIDGET_TYPES)}.")
    member_guid = options.get("current_member_guid")
    if member_guid:
        world.member(user.guid, member_guid)
    token = world.new_token()
    world.widget_urls[token] = WidgetUrl(token, user.guid, world.now(), dict(options))
    base_url = str(request.base_url).rstrip("/")
    return mx_json({"widget_url": {"type": widget_type, "url": f"{base_url}/connect/{token}", "user_id": user.id}})
