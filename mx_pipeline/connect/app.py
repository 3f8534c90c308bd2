"""The connect service's HTTP API (Starlette).

Product backend API (bearer token ``MX_PIPELINE_API_TOKEN`` when set):
    POST /v1/users                                   {"user_id"} -> the MX user (created once)
    POST /v1/users/{user_id}/widget_urls             {"mode", "member_guid", "client_redirect_url", ...}
    POST /v1/users/{user_id}/members                 {"member_guid"}: relay of Connect's memberConnected
End users (opaque signed links, no other credentials; what a link may open: connect/link_store.py):
    GET  /reconnect/{token}                          says whether the link works, with a Continue button
    POST /reconnect/{token}                          the button: opens the link, mints a widget URL, redirects
    GET  /connect/callback?state=&member_guid=       Connect's redirect back: records the member
MX:
    POST /webhooks/mx                                HTTP Basic; spooled before a prompt 204

Blocking work (MX calls, spool writes) runs in worker threads, never on the event loop: a slow MX holds up only
the requests waiting for it. MX calls take at most ``mx_threads`` threads; webhooks write in threads of their own.
"""

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from functools import partial
from html import escape
from urllib.parse import urlencode

from anyio import CapacityLimiter, to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mx_pipeline.connect.bodies import BodyTooLarge, CapRequestHead, read_capped
from mx_pipeline.connect.link_store import ClosedLink, ClosedWhy
from mx_pipeline.connect.links import ConnectIntent, InvalidLink, Links
from mx_pipeline.connect.redirects import UnsafeRedirect, check_return_to, check_webview_scheme
from mx_pipeline.connect.spool import Spool
from mx_pipeline.connect.webhooks import WebhookReceiver
from mx_pipeline.lifecycle.routes import ConnectMode
from mx_pipeline.mx import AuthError, MxClient, MxError, NotFound

log = logging.getLogger(__name__)
WIDGET_URL_LIFETIME_SECONDS = 600  # MX: "expires after ten minutes or upon first use"
MX_THREADS = 16  # MX calls at once; more wait their turn without holding a thread
CONTINUE_PAGE = "Your bank connection needs your attention. Continue to sign in to your bank securely with MX."
MAX_API_BODY_BYTES = 16 * 1024  # a /v1 body is a few short fields
MAX_REQUEST_HEAD_BYTES = 16 * 1024  # request line and headers: a link, a callback state, a bearer token
REFUSED_CREDENTIALS = (
    "MX refuses the connect service's credentials: retrying will not help until its operator fixes MX_CLIENT_ID,"
    " MX_API_KEY or MX_BASE_URL"
)


class BadInput(Exception):
    """The caller's request is wrong: answered 400 with the reason."""


class UnknownInput(Exception):
    """Something the caller named does not exist (for them): answered 404 naming their input, never MX's path."""


class ConnectService:
    def __init__(self, mx: MxClient, spool: Spool, links: Links, public_url: str, api_token: str | None = None) -> None:
        self.mx, self.spool, self.links = mx, spool, links
        self.public_url = public_url.rstrip("/")
        self.api_token = api_token

    def widget_url(self, intent: ConnectIntent, *, is_mobile_webview: bool = False, scheme: str | None = None) -> str:
        """A fresh MX widget URL for ``intent``; Connect sends the user back to our callback when done."""
        mode = ConnectMode(intent.mode)
        if mode is not ConnectMode.AGGREGATION and not intent.member_guid:
            raise BadInput(f"mode {mode.value!r} needs the member_guid to open Connect on")
        callback = f"{self.public_url}/connect/callback?{urlencode({'state': self.links.callback_state(intent)})}"
        widget = self.mx.request_widget_url(
            intent.user_guid,
            mode="aggregation",  # MX's own word for "accounts and transactions", not our Connect mode
            current_member_guid=intent.member_guid if mode is not ConnectMode.AGGREGATION else None,
            update_credentials=True if mode is ConnectMode.RECONNECT else None,
            client_redirect_url=callback,
            is_mobile_webview=is_mobile_webview or None,
            ui_message_webview_url_scheme=scheme,
        )
        return widget.url

    def register_user(self, user_id: str) -> str:
        """Our ``user_id``'s MX user guid (created once), spooled: the user may never come back through our callback."""
        user = self.mx.ensure_user(id=user_id)
        self.record_user(user_id, user.guid)
        return user.guid

    def widget_url_for_user(
        self,
        user_id: str,
        mode: str,
        *,
        member_guid: str | None = None,
        return_to: str | None = None,
        is_mobile_webview: bool = False,
        scheme: str | None = None,
    ) -> str:
        intent = ConnectIntent(user_id, self.register_user(user_id), mode, member_guid, return_to)
        if member_guid and ConnectMode(mode) is not ConnectMode.AGGREGATION:
            self.require_member(intent, member_guid)
        return self.widget_url(intent, is_mobile_webview=is_mobile_webview, scheme=scheme)

    def relay_member(self, user_id: str, mode: str, member_guid: str, occasion: str) -> None:
        """The product backend relays Connect's memberConnected for its user: a member of that user at MX."""
        intent = ConnectIntent(user_id, self.register_user(user_id), mode)
        self.require_member(intent, member_guid)
        self.record_member(intent, member_guid, source="relay", occasion=occasion)

    def require_member(self, intent: ConnectIntent, member_guid: str) -> None:
        """:class:`UnknownInput` unless MX knows ``member_guid`` under the intent's user (another user's is unknown)."""
        try:
            self.mx.read_member(intent.user_guid, member_guid)
        except NotFound:
            raise UnknownInput(
                f"member_guid {member_guid!r} is not a connection of user_id {intent.user_id!r}"
            ) from None

    def record_user(self, user_id: str, user_guid: str) -> None:
        """Spool which MX user is our ``user_id``: once per pair, so a re-registration under a new guid is news."""
        body = json.dumps({"user_id": user_id, "user_guid": user_guid})
        self.spool.append("user_registered", f"{user_id}:{user_guid}", body)

    def record_member(
        self, intent: ConnectIntent, member_guid: str, source: str, *, occasion: str, status: str | None = None
    ) -> None:
        """Spool that the user came back from Connect with ``member_guid``.

        ``occasion`` tells one return from another: the same occasion again, with no other event of the member
        since, is a redelivery (a reloaded redirect, a retried relay), dropped by the spool; anything else is a
        new event even if every field repeats.
        """
        event = {
            "user_id": intent.user_id,
            "user_guid": intent.user_guid,
            "member_guid": member_guid,
            "mode": intent.mode,
            "status": status,
            "source": source,
        }
        key = f"{intent.user_guid}:{member_guid}:{intent.mode}:{status}:{source}:{occasion}"
        self.spool.append("connect_callback", key, json.dumps(event), member=member_guid)


def create_app(
    service: ConnectService,
    webhooks: WebhookReceiver,
    *,
    mx_threads: int = MX_THREADS,
    redirect_origins: tuple[str, ...] = (),
) -> Starlette:
    """The service's routes; ``redirect_origins`` is the allowlist of ``client_redirect_url`` origins (redirects.py)."""
    mx_calls = CapacityLimiter(mx_threads)
    if not service.api_token:
        log.warning("MX_PIPELINE_API_TOKEN is not set: the /v1 API is open to anyone who reaches this service")

    async def calling_mx(work: Callable, *args, **kwargs):
        """``work(*args, **kwargs)``, which calls MX, in one of the MX threads."""
        return await to_thread.run_sync(partial(work, *args, **kwargs), limiter=mx_calls)

    def api(handler: Callable) -> Callable:
        async def guarded(request: Request) -> Response:
            if service.api_token and not _bearer_matches(request, service.api_token):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
            try:
                return await handler(request)
            except (BadInput, UnsafeRedirect) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            except BodyTooLarge as exc:
                return JSONResponse({"error": str(exc)}, status_code=413)
            except UnknownInput as exc:
                return JSONResponse({"error": str(exc)}, status_code=404)
            except NotFound:
                log.warning("MX answered 404 to a /v1 request no check anticipated", exc_info=True)
                return JSONResponse({"error": "something this request names was not found"}, status_code=404)
            except AuthError as exc:  # not MX being down: retrying cannot help until the operator fixes it
                log.error("%s", exc)  # names the variables to check, never their values
                return JSONResponse({"error": REFUSED_CREDENTIALS}, status_code=503)
            except MxError as exc:
                log.warning("MX call failed: %s", exc)
                return JSONResponse({"error": "MX is unavailable; try again"}, status_code=502)

        return guarded

    async def register_user(request: Request) -> Response:
        body = await _json_object(request)
        user_id = _required_str(body, "user_id")
        return JSONResponse({"user_id": user_id, "user_guid": await calling_mx(service.register_user, user_id)})

    async def widget_urls(request: Request) -> Response:
        body = await _json_object(request)
        mode = _mode(body)
        return_to = body.get("client_redirect_url")
        scheme = body.get("ui_message_webview_url_scheme")
        url = await calling_mx(
            service.widget_url_for_user,
            request.path_params["user_id"],
            mode,
            member_guid=_optional_str(body, "member_guid"),
            return_to=None if return_to is None else check_return_to(return_to, redirect_origins),
            is_mobile_webview=bool(body.get("is_mobile_webview")),
            scheme=None if scheme is None else check_webview_scheme(scheme),
        )
        return JSONResponse({"widget_url": url, "mode": mode, "expires_in_seconds": WIDGET_URL_LIFETIME_SECONDS})

    async def relay_member(request: Request) -> Response:
        body = await _json_object(request)
        member_guid = _required_str(body, "member_guid")
        mode = _mode(body)
        # Each relay is a new return from Connect, unless the backend retries its POST under one Idempotency-Key.
        occasion = request.headers.get("Idempotency-Key") or f"received:{time.time_ns()}"
        await calling_mx(service.relay_member, request.path_params["user_id"], mode, member_guid, occasion)
        return Response(status_code=204)

    async def reconnect(request: Request) -> Response:
        """GET says whether the link works and offers a button; only its POST opens the link and mints a widget URL.

        Mail scanners and link previews GET (and HEAD) every link in a message before the user sees it: were the
        GET to open it, the user's own click would find it used.
        """
        token = request.path_params["token"]
        pressed = request.method == "POST"
        try:
            link = await to_thread.run_sync(partial(service.links.open_reconnect, token, only_check=not pressed))
            if not pressed:
                return _page(CONTINUE_PAGE, button="Continue to your bank")
            return _private(RedirectResponse(await calling_mx(service.widget_url, link.intent()), status_code=303))
        except InvalidLink as exc:  # closed, expired, used, unknown or forged: its own plain words, no identifiers
            return _page(exc.page, status=exc.status)
        except NotFound:  # deleted at MX; the pipeline closes the link when its next read retires the member
            return _page(ClosedLink(ClosedWhy.RETIRED).page, status=ClosedLink.status)
        except MxError as exc:
            log.warning("could not mint a widget URL for a reconnect link: %s", exc)
            return _page("We could not reach your bank connection service. Please try again shortly.", status=502)

    async def callback(request: Request) -> Response:
        try:
            state_id, intent = await to_thread.run_sync(
                service.links.read_callback_state, request.query_params.get("state", "")
            )
        except InvalidLink as exc:
            return _page(exc.page, status=400)
        member_guid = request.query_params.get("member_guid")
        status = request.query_params.get("status")
        if member_guid:
            # A state is minted per Connect session: a reload is the same occasion.
            occasion = hashlib.sha256(state_id.encode()).hexdigest()[:16]
            await to_thread.run_sync(  # a spool write: off the loop, in none of the MX threads
                partial(service.record_member, intent, member_guid, source="redirect", occasion=occasion, status=status)
            )
        if intent.return_to and _still_safe(intent.return_to, redirect_origins):
            params = urlencode({k: v for k, v in {"member_guid": member_guid, "status": status}.items() if v})
            separator = "&" if "?" in intent.return_to else "?"
            return RedirectResponse(f"{intent.return_to}{separator}{params}", status_code=303)
        return _page("All done. You can close this window.")

    async def healthz(request: Request) -> Response:
        # Which link secret and link store this service uses (ids only): the pipeline compares them with its own.
        return JSONResponse({"ok": True, **service.links.identity})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/users", api(register_user), methods=["POST"]),
            Route("/v1/users/{user_id}/widget_urls", api(widget_urls), methods=["POST"]),
            Route("/v1/users/{user_id}/members", api(relay_member), methods=["POST"]),
            Route("/reconnect/{token}", reconnect, methods=["GET", "POST"]),
            Route("/connect/callback", callback),
            Route("/webhooks/mx", webhooks.receive, methods=["POST"]),
        ],
        middleware=[Middleware(CapRequestHead, max_bytes=MAX_REQUEST_HEAD_BYTES)],
    )


def _bearer_matches(request: Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return given.startswith("Bearer ") and secrets.compare_digest(given[7:].encode(), token.encode())


async def _json_object(request: Request) -> dict:
    try:
        body = json.loads(await read_capped(request, MAX_API_BODY_BYTES) or b"{}")
    except ValueError:
        raise BadInput("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    return body


def _still_safe(return_to: str, allowed_origins: tuple[str, ...]) -> bool:
    """Checked again at the redirect: the allowlist may have shrunk since the session began."""
    try:
        check_return_to(return_to, allowed_origins)
    except UnsafeRedirect:
        log.warning("a Connect session's return address is no longer allowed: the user stays on our page")
        return False
    return True


def _required_str(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise BadInput(f"{name} is required (a non-empty string)")
    return value


def _optional_str(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise BadInput(f"{name}, when given, must be a non-empty string")
    return value


def _mode(body: dict) -> str:
    """The Connect mode asked for (aggregation when absent): one of ours, else :class:`BadInput`."""
    mode, modes = body.get("mode", ConnectMode.AGGREGATION.value), [m.value for m in ConnectMode]
    if mode not in modes:  # a list, not a set: a JSON object or array is a bad mode, not a TypeError
        raise BadInput(f"mode must be one of {modes}")
    return mode


def _page(message: str, status: int = 200, *, button: str | None = None) -> HTMLResponse:
    """A plain page; ``button`` posts back to the same URL (the only way a reconnect link is opened)."""
    form = f'<form method="post"><button type="submit" id="continue">{escape(button)}</button></form>' if button else ""
    html = f"<!doctype html><title>Bank connection</title><main><p>{escape(message)}</p>{form}</main>"
    return _private(HTMLResponse(html, status_code=status))


def _private(response: Response) -> Response:
    """Our pages' URLs may hold a link token: never cached, never sent on as a Referer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
