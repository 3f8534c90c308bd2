"""The Connect widget page served at widget URLs: search -> credentials -> MFA -> connected, as plain forms.

Honours the WidgetRequest options the project uses (S11; behaviour from MX's open-source Connect widget,
research/mx_api.md 2.2): ``mode`` (verification skips transactions), ``current_member_guid`` (CHALLENGED -> MFA;
DENIED or ``update_credentials`` -> credentials; REJECTED/EXPIRED -> re-run; CONNECTED -> connected),
``current_institution_code``, ``client_redirect_url`` and ``is_mobile_webview`` +
``ui_message_webview_url_scheme`` (redirect to ``<scheme>://connect/memberConnected?metadata=<json>``), and
postMessages ``{"mx": true, "type": "mx/connect/...", "metadata": {...}}`` for web embeds.
"""

import json
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from mx_pipeline.mx.statuses import ConnectionStatus
from mx_pipeline.sandbox import aggregation, widget_pages
from mx_pipeline.sandbox.errors import MxError
from mx_pipeline.sandbox.institutions import INSTITUTIONS, status_message
from mx_pipeline.sandbox.records import ConnectSession, Member
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


def _event(session: ConnectSession, event_type: str, **metadata) -> dict:
    event = {
        "mx": True,
        "type": f"mx/connect/{event_type}",
        "metadata": {"user_guid": session.user_guid, "session_guid": session.guid, **metadata},
    }
    session.events.append(event)
    session.unposted.append(event)
    return event


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
        session = ConnectSession(world.new_guid("SES"), widget_url.user_guid, options)
        world.connect_sessions[session.guid] = session
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


async def show_step(request: Request) -> Response:
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
    if not session.loaded_sent:
        session.loaded_sent = True
        _event(session, "loaded", initial_step=_step_name(world, session))
    if session.member_guid is None and session.institution_code is None:
        query = request.query_params.get("q", "")
        matches = [i for i in INSTITUTIONS.values() if query.lower() in i.name.lower() or query.lower() in i.code]
        body = widget_pages.search_body(f"{base}/institution", base, query, matches)
        return _html(widget_pages.page("Select your institution", body, _drain(session)))
    institution = INSTITUTIONS[session.institution_code]
    member = world.members.get(session.member_guid) if session.member_guid else None
    if member is None or session.force_credentials:
        _event(session, "enterCredentials", institution={"code": institution.code, "guid": institution.guid})
        back = None if session.options.get("disable_institution_search") or member else f"{base}/back"
        body = widget_pages.credentials_body(f"{base}/credentials", institution, session.error, back)
        return _html(widget_pages.page(f"Connect {institution.name}", body, _drain(session)))
    status = member.connection_status
    if session.last_posted_status != status.value:
        session.last_posted_status = status.value
        _event(session, "memberStatusUpdate", member_guid=member.guid, connection_status=status.id)
    if status == S.CHALLENGED and member.challenges and not member.is_being_aggregated:
        body = widget_pages.mfa_body(f"{base}/mfa", member.challenges)
        return _html(widget_pages.page("Verify your identity", body, _drain(session)))
    if member.is_being_aggregated or status in IN_PROGRESS:
        body = widget_pages.connecting_body(f"Connecting to {institution.name} ...")
        return _html(widget_pages.page("Connecting", body, _drain(session), refresh_seconds=1))
    if status == S.CONNECTED:
        return _connected(session, member, institution, base)
    if status in CREDENTIAL_STATUSES:
        session.force_credentials = True
        session.error = status_message(status, institution)
        return _render(request, world, session)
    retry = f"{base}/retry" if status in RETRYABLE else None
    update = f"{base}/update_credentials" if status in UPDATE_OFFERED else None
    message = status_message(status, institution) or "Something went wrong. Please try again later."
    return _html(
        widget_pages.page("Connection problem", widget_pages.error_body(message, retry, update), _drain(session))
    )


def _drain(session: ConnectSession) -> list[dict]:
    events, session.unposted = session.unposted, []
    return events


def _connected(session, member: Member, institution, base: str) -> Response:
    """memberConnected once per session; redirects for client_redirect_url / WebViews, else a postMessage page."""
    connected_type = "mx/connect/memberConnected"
    connected = next((e for e in session.events if e["type"] == connected_type), None)
    connected = connected or _event(session, "memberConnected", member_guid=member.guid)
    options = session.options
    if options.get("client_redirect_url") or options.get("is_mobile_webview"):
        _drain(session)  # a redirect replaces postMessages (S11 is_mobile_webview)
    if options.get("client_redirect_url"):
        query = urlencode({"status": "success", "member_guid": member.guid})
        separator = "&" if "?" in options["client_redirect_url"] else "?"
        return _see(f"{options['client_redirect_url']}{separator}{query}")
    if options.get("is_mobile_webview"):
        scheme = options.get("ui_message_webview_url_scheme") or "mx"
        return _see(f"{scheme}://connect/memberConnected?{urlencode({'metadata': json.dumps(connected['metadata'])})}")
    body = widget_pages.connected_body(institution, f"{base}/done")
    return _html(widget_pages.page("Connected", body, _drain(session)))


def _step_name(world: World, session: ConnectSession) -> str:
    if session.member_guid is None:
        return "enterCreds" if session.institution_code else "search"
    member = world.members.get(session.member_guid)
    if session.force_credentials or member is None:
        return "enterCreds"
    return {S.CHALLENGED: "mfa", S.CONNECTED: "connected"}.get(member.connection_status, "loginError")


async def _form(request: Request) -> dict[str, str]:
    # Plain HTML forms post application/x-www-form-urlencoded; parsing it here avoids python-multipart.
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))


async def choose_institution(request: Request) -> Response:
    form = await _form(request)
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        code = form.get("institution_code", "")
        if code not in INSTITUTIONS:
            return _html(widget_pages.message_page("Not found", "Unknown institution."), 404)
        session.institution_code, session.error = code, None
        institution = INSTITUTIONS[code]
        _event(
            session, "selectedInstitution", code=code, guid=institution.guid, name=institution.name, url=institution.url
        )
    return _see(f"/connect/session/{session.guid}")


async def submit_credentials(request: Request) -> Response:
    """Create the member (or update the current member's credentials), which starts its aggregation."""
    form = await _form(request)
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        credentials = {k: form[k] for k in ("LOGIN", "PASSWORD") if k in form}
        member = world.members.get(session.member_guid) if session.member_guid else None
        try:
            if member is not None:
                aggregation.update_credentials(world, member, credentials, skip_aggregation=False)
            else:
                is_verification = session.options.get("mode") == "verification"
                member = aggregation.create_member(
                    world,
                    session.user_guid,
                    session.institution_code,
                    credentials,
                    include_transactions=bool(session.options.get("include_transactions", not is_verification)),
                    background_aggregation_is_disabled=bool(
                        session.options.get("disable_background_agg", is_verification)
                    ),
                )
                session.member_guid = member.guid
        except MxError as error:
            session.error = error.message
            if session.options.get("current_member_guid") is None and session.member_guid is None:
                _event(
                    session,
                    "createMemberError",
                    institution_code=session.institution_code,
                    institution_guid=INSTITUTIONS[session.institution_code].guid,
                )
            return _see(f"/connect/session/{session.guid}")
        session.force_credentials, session.error = False, None
    return _see(f"/connect/session/{session.guid}")


async def submit_mfa(request: Request) -> Response:
    form = await _form(request)
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        member = world.members.get(session.member_guid or "")
        if member is not None and member.connection_status == S.CHALLENGED:
            answers = {c.guid: form.get(f"answer-{i}", "") for i, c in enumerate(member.challenges)}
            aggregation.resume(world, member, answers)
            _event(session, "submitMFA", member_guid=member.guid)
    return _see(f"/connect/session/{session.guid}")


async def retry(request: Request) -> Response:
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        member = world.members.get(session.member_guid or "")
        if member is not None:
            aggregation.request_job(world, member, "aggregate")
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
        session.institution_code, session.error = None, None
        _event(session, "backToSearch")
    return _see(f"/connect/session/{session.guid}")


async def done(request: Request) -> Response:
    world = _world(request)
    with world.lock:
        session = _session(world, request)
        _event(session, "connected/primaryAction")
    return _html(widget_pages.page("All set", '<p id="finished">You can close this window.</p>', _drain(session)))


def widget_routes() -> list[Route]:
    """The Connect page routes (not MX API: no basic auth, no faults, no rate limits)."""
    base = "/connect/session/{session_guid}"
    return [
        Route("/connect/{token}", open_widget, methods=["GET"]),
        Route(base, show_step, methods=["GET"]),
        Route(f"{base}/institution", choose_institution, methods=["POST"]),
        Route(f"{base}/credentials", submit_credentials, methods=["POST"]),
        Route(f"{base}/mfa", submit_mfa, methods=["POST"]),
        Route(f"{base}/retry", retry, methods=["POST"]),
        Route(f"{base}/update_credentials", update_credentials_step, methods=["GET", "POST"]),
        Route(f"{base}/back", back_to_search, methods=["POST"]),
        Route(f"{base}/done", done, methods=["POST"]),
    ]
