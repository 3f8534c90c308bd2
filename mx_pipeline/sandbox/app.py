"""The sandbox ASGI app: MX's classic API paths (S11), the Connect page and the /_sandbox/ admin hook."""

import asyncio
import contextlib

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from mx_pipeline.sandbox import aggregation, api_data, api_members, api_users
from mx_pipeline.sandbox.admin import admin_routes
from mx_pipeline.sandbox.endpoint import Runtime, error_response, mx_endpoint
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.faults import FaultInjector
from mx_pipeline.sandbox.limits import RateLimiter
from mx_pipeline.sandbox.webhooks import WebhookSender
from mx_pipeline.sandbox.widget import widget_routes
from mx_pipeline.sandbox.world import World

USER = "/users/{user_guid}"
MEMBER = USER + "/members/{member_guid}"


def _api(path: str, handler, methods: list[str], job_request: bool = False, needs_accept: bool = True) -> Route:
    return Route(path, mx_endpoint(handler, job_request=job_request, needs_accept=needs_accept), methods=methods)


def api_routes() -> list[Route]:
    """Every MX endpoint the sandbox serves (listed in README.md)."""
    return [
        _api("/users", api_users.list_users, ["GET"]),
        _api("/users", api_users.create_user, ["POST"]),
        _api(USER, api_users.read_user, ["GET"]),
        _api(USER, api_users.update_user, ["PUT"]),
        _api(USER, api_users.delete_user, ["DELETE"]),
        _api(USER + "/widget_urls", api_users.request_widget_url, ["POST"]),
        _api("/institutions", api_data.list_institutions, ["GET"]),
        _api("/institutions/{institution_code}", api_data.read_institution, ["GET"]),
        _api("/institutions/{institution_code}/credentials", api_data.list_institution_credentials, ["GET"]),
        _api(USER + "/members", api_members.list_members, ["GET"]),
        _api(USER + "/members", api_members.create_member, ["POST"]),
        _api(MEMBER, api_members.read_member, ["GET"]),
        _api(MEMBER, api_members.update_member, ["PUT"]),
        _api(MEMBER, api_members.delete_member, ["DELETE"], needs_accept=False),
        _api(MEMBER + "/status", api_members.read_member_status, ["GET"]),
        _api(MEMBER + "/aggregate", api_members.aggregate_member, ["POST"], job_request=True),
        _api(MEMBER + "/check_balance", api_members.check_balances, ["POST"], job_request=True),
        _api(MEMBER + "/challenges", api_members.list_member_challenges, ["GET"]),
        _api(MEMBER + "/resume", api_members.resume_aggregation, ["PUT"]),
        _api(MEMBER + "/credentials", api_members.list_member_credentials, ["GET"]),
        _api(MEMBER + "/accounts", api_data.list_member_accounts, ["GET"]),
        _api(MEMBER + "/accounts/{account_guid}", api_data.read_account, ["GET"]),
        _api(MEMBER + "/transactions", api_data.list_member_transactions, ["GET"]),
        _api(USER + "/accounts", api_data.list_user_accounts, ["GET"]),
        _api(USER + "/accounts/{account_guid}", api_data.read_account, ["GET"]),
        _api(USER + "/accounts/{account_guid}/transactions", api_data.list_account_transactions, ["GET"]),
        _api(USER + "/transactions", api_data.list_user_transactions, ["GET"]),
        _api(USER + "/categories/default", api_data.list_default_categories, ["GET"]),
        _api("/categories/default", api_data.list_default_categories, ["GET"]),
        _api("/merchants/{merchant_guid}", api_data.read_merchant, ["GET"]),
    ]


async def _not_found(request: Request, exc: HTTPException):
    return error_response(MxError(404, "Resource not found."))


async def _method_not_allowed(request: Request, exc: HTTPException):
    return error_response(MxError(405, "Method not allowed on this resource."))


def create_app(
    world: World, *, webhook_sender: WebhookSender | None = None, tick_interval_seconds: float = 0.25
) -> Starlette:
    """The sandbox app over ``world``. A background task finishes due jobs so webhooks fire without traffic."""
    if webhook_sender is not None:
        world.webhook_sink = webhook_sender.enqueue
    runtime = Runtime(world, RateLimiter(world), FaultInjector.from_config(world.config))

    async def ticker() -> None:
        while True:
            await asyncio.sleep(tick_interval_seconds)
            with world.lock:
                aggregation.tick(world)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(ticker())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = Starlette(
        routes=[*api_routes(), *widget_routes(), *admin_routes(webhook_sender.log if webhook_sender else None)],
        exception_handlers={404: _not_found, 405: _method_not_allowed},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.webhook_sender = webhook_sender
    return app
