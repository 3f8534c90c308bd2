"""The Connect widget page served at widget URLs: search -> credentials (or a bank's OAuth page) -> MFA ->
connecting -> connected, as plain forms.

Honours the WidgetRequest options the project uses (S11; behaviour from MX's open-source Connect widget,
research/mx_api.md 2.2): ``mode`` (verification skips transactions), ``current_member_guid`` (CHALLENGED -> MFA;
DENIED or ``update_credentials`` -> credentials; REJECTED/EXPIRED -> re-run; CONNECTED -> connected),
``current_institution_code``, ``disable_institution_search``, ``is_mobile_webview`` + ``ui_message_webview_url_scheme``,
``ui_message_version`` and, for OAuth institutions, ``oauth_referral_source`` + ``client_redirect_url``
(widget_oauth). Like MX, the page never redirects at the end of a connection: its host learns the outcome from
the events it delivers (widget_messages), and ``client_redirect_url`` is used only at the end of an OAuth flow.
"""

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from mx_pipeline.mx.statuses import ConnectionStatus
from mx_pipeline.sandbox import aggregation, widget_oauth, widget_pages
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.institutions import INSTITUTIONS, Institution, status_message
from mx_pipeline.sandbox.records import ConnectSession
from mx_pipeline.sandbox.widget_messages import delivery, emit, is_webview, oauth_referral_source, origin_of, show_step
from mx_pipeline.sandbox.world import World

S = ConnectionStatus
IN_PROGRESS = frozenset({S.CREATED, S.UPDATED, S.RESUMED, S.RECONNECTED})
CREDENTIAL_STATUSES = frozenset({S.DENIED, S.PENDING})
RETRYABLE = frozenset({S.REJECTED, S.EXPIRED, S.LOCKED, S.IMPEDED, S.FAILED, S.DELAYED})
UPDATE_OFFERED = frozenset({S.PREVENTED, S.IMPAIRED, S.IMPORTED})


def _world(request: Request) -> World:
    return request.app.state.runtime.world


def _html(content: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status)


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _session(world: World, request: Request) -> ConnectSession:
    session = world.connect_sessions.get(request.path_params["session_guid"])
    if session is None:
        raise MxError(404, "This Connect session does not exist.")
    return session


def _page(session: ConnectSession, title: str, body: str, refresh_seconds: int | None = None) -> HTMLResponse:
    return _html(widget_pages.page(title, body, delivery(session), refresh_seconds))


def _parent_origin(request: Request) -> str | None:
    """The embedding page's origin: the Referer's, unless the request came from the sandbox itself."""
    origin = origin_of(request.headers.get("referer"))
    return None if origin == origin_of(str(request.base_url)) else origin


async def open_widget(request: Request) -> Response:
    """GET /connect/{token}: consume the single-use URL and start a session (404 unknown, 410 used/expired)."""
    world = _world(request)
    with world.lock:
        aggregation.tick(world)
        widget_url = world.widget_urls.get(request.path_params["token"])
        if widget_url is None:
            return _html(widget_pages.message_page("Not found", "This Connect URL is not valid."), 404)
        ttl = timedelta(seconds=world.config.widget_url_ttl_seconds)
        if widget_url.used or world.now() - widget_url.created_at >= ttl:
            reason = "has already been used" if widget_url.used else "has expired"
            return _html(
                widget_pages.message_page("Link expired", f"This Connect URL {reason}; request a new one."), 410
            )
        widget_url.used = True
        options = widget_url.options
        session = ConnectSession(world.new_guid("SES"), widget_url.user_guid, options, _parent_origin(request))
        world.connect_sessions[session.guid] = session
        emit(session, "load")
        member_guid = options.get("current_member_guid")
        if member_guid and member_guid in world.members:
            member = world.members[member_guid]
            session.member_guid, session.institution_code = member.guid, member.institution_code
            session.force_credentials = member.connection_status != S.CHALLENGED and (
                bool(options.get("update_credentials")) or member.connection_status in CREDENTIAL_STATUSES
            )
            if member.connection_status in (S.REJECTED, S.EXPIRED) and not session.force_credentials:
                aggregation.request_job(world, member, "aggregate")
        elif options.get("current_institution_code") in INSTITUTIONS:
            session.institution_code = options["current_institution_code"]
    return _see(f"/connect/session/{session.guid}")


async def show(request: Request) -> Response:
    """GET the session's current step, worked out from its state and its member's status."""
    world = _world(request)
    with world.lock:
        aggregation.tick(world)
        try:
            session = _session(world, request)
        except MxError as error:
            return _html(widget_pages.message_page("Not found", error.message), 404)
        return _render(request, world, session)


def _render(request: Request, world: World, session: ConnectSession) -> Response:
    base = f"/connect/session/{session.guid}"
    if session.member_guid is None and session.institution_code is None:
        return _search(request, session, base)
    institution = INSTITUTIONS[session.institution_code]
    member = world.members.get(session.member_guid) if session.member_guid else None
    if institution.supports_oauth and session.oauth_state != "approved" and (member is None or session.oauth_token):
        return _oauth(request, world, session, institution, base)
    if session.oauth_state == "approved" and session.step == "enterCreds":  # the wait saw the bank's approval
        _start_connecting(session)
    if member is None or session.force_credentials:
        show_step(session, "enterCreds")
        back = None if session.options.get("disable_institution_search") or member else f"{base}/back"
        body = widget_pages.credentials_body(f"{base}/credentials", institution, session.error, back)
        return _page(session, f"Connect {institution.name}", body)
    status = member.connection_status
    if session.step == "connecting":  # connect-widget's Connecting view: a status update on each change it polls
        if session.seen_status is not None and session.seen_status != status.value:
            emit(session, "connect/memberStatusUpdate", member_guid=member.guid, connection_status=status.id)
        session.seen_status = status.value
    if status == S.CHALLENGED and member.challenges and not member.is_being_aggregated:
        show_step(session, "mfa")
        body = widget_pages.mfa_body(f"{base}/mfa", member.challenges)
        return _page(session, "Verify your identity", body)
    if member.is_being_aggregated or status in IN_PROGRESS:
        _start_connecting(session, status)
        body = widget_pages.connecting_body(f"Connecting to {institution.name} ...")
        return _page(session, "Connecting", body, refresh_seconds=1)
    if status == S.CONNECTED:
        if session.step == "connecting":  # sent when the connection's jobs are done (connect-widget Connecting.js)
            emit(session, "connect/memberConnected", member_guid=member.guid)
        show_step(session, "connected")
        return _page(session, "Connected", widget_pages.connected_body(institution, f"{base}/done"))
    if status in CREDENTIAL_STATUSES:
        session.force_credentials = True
        session.error = status_message(status, institution)
        return _render(request, world, session)
    show_step(session, "loginError")
    retry = f"{base}/retry" if status in RETRYABLE else None
    update = f"{base}/update_credentials" if status in UPDATE_OFFERED else None
    message = status_message(status, institution) or "Something went wrong. Please try again later."
    return _page(session, "Connection problem", widget_pages.error_body(message, retry, update))


def _start_connecting(session: ConnectSession, status: ConnectionStatus | None = None) -> None:
    """Enter the connecting step; its first look at the member's status is the baseline, never an update."""
    if session.step != "connecting":
        show_step(session, "connecting")
        session.seen_status = status.value if status is not None else None


def _search(request: Request, session: ConnectSession, base: str) -> Response:
    show_step(session, "search")
    query = request.query_params.get("q", "")
    if query and query != session.last_query:
        emit(session, "connect/institutionSearch", query=query)
    session.last_query = query
    matches = [i for i in INSTITUTIONS.values() if query.lower() in i.name.lower() or query.lower() in i.code]
    body = widget_pages.search_body(f"{base}/institution", base, query, matches)
    return _page(session, "Select your institution", body)


def _oauth(request: Request, world: World, session: ConnectSession, institution: Institution, base: str) -> Response:
    """The OAuth view of the credentials step: sign in at the bank, then wait for its answer (widget_oauth)."""
    if session.member_guid is None:
        widget_oauth.start(world, session, **_new_member_options(session))
    oauth_url = widget_oauth.authorize_url(str(request.base_url), session.oauth_token)
    back = None if session.options.get("disable_institution_search") else f"{base}/back"
    if session.oauth_state == "denied":
        if session.step != "oauthError":
            emit(session, "connect/oauthError", member_guid=session.member_guid)
        show_step(session, "oauthError")
        return _page(session, "Permission needed", widget_pages.oauth_error_body(institution, f"{base}/oauth", back))
    show_step(session, "enterCreds")
    if session.oauth_state == "requested":
        body = widget_pages.oauth_waiting_body(institution, oauth_url)
        return _page(session, f"Connect {institution.name}", body, refresh_seconds=1)
    opens_window = not is_webview(session.options) and oauth_referral_source(session.options) == "BROWSER"
    body = widget_pages.oauth_sign_in_body(institution, f"{base}/oauth", oauth_url, opens_window)
    return _page(session, f"Connect {institution.name}", body)


def _new_member_options(session: ConnectSession) -> dict:
    is_verification = session.options.get("mode") == "verification"
    return {
        "include_transactions": bool(session.options.get("include_transactions", not is_verification)),
        "background_aggregation_is_disabled": bool(session.options.get("disable_background_agg", is_verification)),
    }


async def choose_institution(request: Request) -> Response:
    form = await widget_pages.submitted_form(request)
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        code = form.get("institution_code", "")
        if code not in INSTITUTIONS:
            return _html(widget_pages.message_page("Not found", "Unknown institution."), 404)
        session.institution_code, session.error = code, None
        institution = INSTITUTIONS[code]
        emit(
            session,
            "connect/selectedInstitution",
            code=code,
            guid=institution.guid,
            name=institution.name,
            url=institution.url,
        )
    return _see(f"/connect/session/{session.guid}")


async def submit_credentials(request: Request) -> Response:
    """Create the member (or replace the current member's credentials), which starts its aggregation."""
    form = await widget_pages.submitted_form(request)
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        credentials = {k: form[k] for k in ("LOGIN", "PASSWORD") if k in form}
        member = world.members.get(session.member_guid) if session.member_guid else None
        institution = INSTITUTIONS[session.institution_code]
        institution_ref = {"code": institution.code, "guid": institution.guid}
        try:
            if member is not None:
                emit(session, "connect/updateCredentials", member_guid=member.guid, institution=institution_ref)
                aggregation.update_credentials(world, member, credentials, skip_aggregation=False)
            else:
                emit(session, "connect/enterCredentials", institution=institution_ref)
                member = aggregation.create_member(
                    world, session.user_guid, institution.code, credentials, **_new_member_options(session)
                )
                session.member_guid = member.guid
        except MxError as error:
            session.error = error.message
            if member is None:
                emit(
                    session,
                    "connect/createMemberError",
                    institution_guid=institution.guid,
                    institution_code=institution.code,
                )
            return _see(f"/connect/session/{session.guid}")
        session.force_credentials, session.error = False, None
        _start_connecting(session)
    return _see(f"/connect/session/{session.guid}")


async def request_oauth(request: Request) -> Response:
    """The user asks to sign in at the bank (or to try again after a denial): ``oauthRequested`` {url, member_guid}."""
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        if session.oauth_token is not None and session.oauth_state != "approved":
            url = widget_oauth.authorize_url(str(request.base_url), session.oauth_token)
            emit(session, "connect/oauthRequested", url=url, member_guid=session.member_guid)
            session.oauth_state = "requested"
    return _see(f"/connect/session/{session.guid}")


async def submit_mfa(request: Request) -> Response:
    form = await widget_pages.submitted_form(request)
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        member = world.members.get(session.member_guid or "")
        if member is not None and member.connection_status == S.CHALLENGED:
            answers = {c.guid: form.get(f"answer-{i}", "") for i, c in enumerate(member.challenges)}
            emit(session, "connect/submitMFA", member_guid=member.guid)
            aggregation.resume(world, member, answers)
            _start_connecting(session)
    return _see(f"/connect/session/{session.guid}")


async def retry(request: Request) -> Response:
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        member = world.members.get(session.member_guid or "")
        if member is not None:
            aggregation.request_job(world, member, "aggregate")
            _start_connecting(session)
    return _see(f"/connect/session/{session.guid}")


async def update_credentials_step(request: Request) -> Response:
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        session.force_credentials = True
    return _see(f"/connect/session/{session.guid}")


async def back_to_search(request: Request) -> Response:
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        emit(session, "connect/backToSearch")
        if session.oauth_token is not None:  # the pending OAuth member stays behind, as at MX
            session.member_guid, session.oauth_token, session.oauth_state = None, None, None
        session.institution_code, session.error = None, None
    return _see(f"/connect/session/{session.guid}")


async def done(request: Request) -> Response:
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        emit(session, "connect/connected/primaryAction")
        return _page(session, "All set", '<p id="finished">You can close this window.</p>')


def widget_routes() -> list[Route]:
    """The Connect page routes and the OAuth bank's page (not MX API: no basic auth, no faults, no rate limits)."""
    base = "/connect/session/{session_guid}"
    return [
        Route("/connect/{token}", open_widget, methods=["GET"]),
        Route(base, show, methods=["GET"]),
        Route(f"{base}/institution", choose_institution, methods=["POST"]),
        Route(f"{base}/credentials", submit_credentials, methods=["POST"]),
        Route(f"{base}/oauth", request_oauth, methods=["POST"]),
        Route(f"{base}/mfa", submit_mfa, methods=["POST"]),
        Route(f"{base}/retry", retry, methods=["POST"]),
        Route(f"{base}/update_credentials", update_credentials_step, methods=["GET", "POST"]),
        Route(f"{base}/back", back_to_search, methods=["POST"]),
        Route(f"{base}/done", done, methods=["POST"]),
        *widget_oauth.oauth_routes(),
    ]
