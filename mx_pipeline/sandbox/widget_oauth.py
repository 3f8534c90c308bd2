"""OAuth institutions in Connect ("MX Bank (OAuth)"): the bank's own sign-in page and how MX ends the flow.

As MX runs it (research/mx_api.md 2.2 and 5.3; connect-widget ``OAuthStep``/``WaitingForOAuth``): Connect creates
a PENDING member and asks its host to open the member's OAuth URL (``mx/connect/oauthRequested`` {url,
member_guid}) in the system browser, never in the iframe or WebView; the user allows access at the bank; the
member's first aggregation starts. Then, in a WebView or with ``oauth_referral_source: APP``, MX sends that browser
to ``client_redirect_url`` (without one, to ``<ui_message_webview_url_scheme>://oauth_complete``) with ``status``
and ``member_guid`` appended; with ``BROWSER`` it redirects nowhere: Connect, polling, sees the member connect and
posts ``mx/connect/memberConnected``.
"""

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from mx_pipeline.mx.statuses import ConnectionStatus
from mx_pipeline.sandbox import aggregation, widget_pages
from mx_pipeline.sandbox.institutions import INSTITUTIONS, TEST_USERNAME
from mx_pipeline.sandbox.records import ConnectSession, Member
from mx_pipeline.sandbox.widget_messages import oauth_referral_source, url_scheme
from mx_pipeline.sandbox.world import World

S = ConnectionStatus
AUTHORIZE_PATH = "/oauth/authorize/{token}"


def start(world: World, session: ConnectSession, **member_options) -> Member:
    """The PENDING member the sign-in will connect (MX creates it when Connect shows the OAuth step)."""
    token = world.new_token()
    # The bank knows the user as mxuser; the token keeps each OAuth member's credentials distinct.
    credentials = {"LOGIN": TEST_USERNAME, "PASSWORD": f"oauth-{token}"}
    member = aggregation.create_member(
        world, session.user_guid, session.institution_code, credentials, skip_aggregation=True, **member_options
    )
    aggregation.set_status(world, member, S.PENDING, cause="oauth")
    session.member_guid, session.oauth_token, session.oauth_state = member.guid, token, None
    return member


def authorize_url(base_url: str, token: str) -> str:
    return base_url.rstrip("/") + AUTHORIZE_PATH.format(token=token)


def _waiting_session(world: World, token: str) -> ConnectSession | None:
    return next(
        (s for s in world.connect_sessions.values() if s.oauth_token == token and s.oauth_state == "requested"),
        None,
    )


def _closed_page() -> HTMLResponse:
    message = "This sign-in request is not open (already answered, or unknown). Start again from the app."
    return HTMLResponse(widget_pages.message_page("Sign-in closed", message), status_code=410)


async def show_authorization(request: Request) -> Response:
    world: World = request.app.state.runtime.world
    with world.lock:
        session = _waiting_session(world, request.path_params["token"])
        if session is None:
            return _closed_page()
        institution = INSTITUTIONS[session.institution_code]
    return HTMLResponse(widget_pages.bank_authorization_page(institution, request.url.path))


async def decide(request: Request) -> Response:
    """The user allows (the member starts aggregating) or denies; then MX ends the flow per the referral source."""
    form = await widget_pages.submitted_form(request)
    approved = form.get("decision") == "approve"
    world: World = request.app.state.runtime.world
    with world.lock:
        session = _waiting_session(world, request.path_params["token"])
        if session is None:
            return _closed_page()
        member = world.members[session.member_guid]
        session.oauth_state = "approved" if approved else "denied"
        if approved:
            aggregation.set_status(world, member, S.CREATED, cause="oauth")
            aggregation.start_job(world, member, "aggregate", aggregation.plan_outcome(world, member))
        options = session.options
    status = "success" if approved else "error"
    if oauth_referral_source(options) == "APP":
        target = options.get("client_redirect_url") or f"{url_scheme(options)}://oauth_complete"
        separator = "&" if "?" in target else "?"
        query = urlencode({"status": status, "member_guid": member.guid})
        return RedirectResponse(f"{target}{separator}{query}", status_code=303)
    message = "You can close this window and return to the app." if approved else "You denied access."
    body = f'<p id="oauth-{status}">{message}</p>'
    return HTMLResponse(widget_pages.page("Authorization finished", body))


def oauth_routes() -> list[Route]:
    return [
        Route(AUTHORIZE_PATH, show_authorization, methods=["GET"]),
        Route(AUTHORIZE_PATH, decide, methods=["POST"]),
    ]
