"""What every MX API request goes through: latency, basic auth (401), Accept (406), injected faults, per-user
and per-member limits (429), the aggregation tick, the handler under the world lock, and MX-shaped errors.

MX's classic API wants ``Accept: application/vnd.mx.api.v1+json`` (406 otherwise) and HTTP Basic with
client_id:api_key (401 otherwise) (research/mx_api.md 1.1, 1.2, 1.4). Which of 401/406 MX checks first is not
documented: the sandbox checks auth first.
"""

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from mx_pipeline.sandbox import aggregation
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.faults import FaultInjector
from mx_pipeline.sandbox.limits import RateLimiter
from mx_pipeline.sandbox.world import World

MX_MEDIA_TYPE = "application/vnd.mx.api.v1+json"


@dataclass
class Runtime:
    """The live parts an endpoint needs, kept on ``app.state.runtime``."""

    world: World
    limiter: RateLimiter
    faults: FaultInjector


def mx_json(body: dict[str, Any], status: int = 200) -> Response:
    """A success (or error) body with MX's vendor media type. orjson: a page of 1,000 transactions is the
    sandbox's heaviest answer, and its handlers run one at a time (json.dumps took a third of a page's time)."""
    return Response(orjson.dumps(body), status_code=status, media_type=MX_MEDIA_TYPE)


def no_content() -> Response:
    return Response(status_code=204)


def error_response(error: MxError) -> Response:
    response = mx_json(error.body(), error.status)
    response.headers.update(error.headers)
    return response


def _check_auth(request: Request, client_id: str, api_key: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    try:
        given_id, _, given_key = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        given_id = given_key = ""
    valid = (
        scheme.lower() == "basic"
        and hmac.compare_digest(given_id.encode(), client_id.encode())
        and hmac.compare_digest(given_key.encode(), api_key.encode())
    )
    if not valid:
        raise MxError(401, "Unauthorized: invalid client_id or api_key.")


def _check_accept(request: Request) -> None:
    if MX_MEDIA_TYPE not in request.headers.get("accept", ""):
        raise MxError(406, f"Not acceptable: send the header Accept: {MX_MEDIA_TYPE}.")


async def _json_body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        raise MxError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise MxError(400, "The request body must be a JSON object.")
    return body


Handler = Callable[[Request, World, dict[str, Any] | None], Response]


def mx_endpoint(handler: Handler, *, job_request: bool = False, needs_accept: bool = True):
    """Wrap a sync handler ``(request, world, body) -> Response`` into an MX API endpoint.

    ``needs_accept=False`` for operations whose spec entry declares neither a body nor an Accept header (DELETE
    member): MX's own SDK sends no Accept there, so MX must take the request without one.
    """

    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        world = runtime.world
        config = world.config
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        fault = None
        try:
            _check_auth(request, config.client_id, config.api_key)
            if needs_accept:
                _check_accept(request)
            fault = runtime.faults.draw(request.method)
            runtime.faults.refuse(fault)  # a 5xx or a 429 answers before anything is processed
            body = await _json_body(request) if request.method in ("POST", "PUT") else None
            params = request.path_params
            with world.lock:
                runtime.limiter.admit(params.get("user_guid"), params.get("member_guid"), job_request)
                aggregation.tick(world)
                response = handler(request, world, body)
        except MxError as error:
            return error_response(error)
        return runtime.faults.spoil(fault, response)  # a corrupted body, or a 5xx after the write

    endpoint.__name__ = handler.__name__
    return endpoint


def require_object(body: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """``body[key]`` as a dict, or 400 (MX: "required parameter missing")."""
    value = (body or {}).get(key)
    if not isinstance(value, dict):
        raise MxError(400, f"The request body must contain a '{key}' object.")
    return value


def query_flag(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    return raw.lower() in ("true", "1")
