"""What the sandbox's Connect page tells its host: MX's postMessages, or URL navigations in a mobile WebView.

Events are shaped as MX's published definitions (``@mxenabled/widget-post-message-definitions``, research/mx_api.md
section 5): ``{"mx": true, "type": "mx/<namespace>/<action>", "metadata": {...}}``, every event but ``mx/load``
carrying the session's ``user_guid`` and ``session_guid``. Only ``ui_message_version`` 4 is spoken (the spec's
default; earlier versions are deprecated): with another version the page delivers nothing.

Like MX's widget (connect-widget ``sendPostMessage``: the origin of ``document.referrer``), the page posts only to
the embedding page's origin, taken from the Referer of the widget URL's request; with no parent known it posts
nothing, never to ``*``. A WebView (``is_mobile_webview``) gets navigations instead:
``<ui_message_webview_url_scheme>://<namespace>/<action>?metadata=<url-encoded JSON>`` (connect-widget
``setWebviewURL``).
"""

import json
from typing import Any
from urllib.parse import quote, urlsplit

from mx_pipeline.sandbox.records import ConnectSession

MESSAGE_VERSION = 4


def speaks_v4(options: dict[str, Any]) -> bool:
    return options.get("ui_message_version", MESSAGE_VERSION) == MESSAGE_VERSION


def is_webview(options: dict[str, Any]) -> bool:
    return bool(options.get("is_mobile_webview"))


def url_scheme(options: dict[str, Any]) -> str:
    return options.get("ui_message_webview_url_scheme") or "mx"


def oauth_referral_source(options: dict[str, Any]) -> str:
    """``APP`` or ``BROWSER``: how MX ends an OAuth flow (S11: APP by default in a WebView, else BROWSER)."""
    source = options.get("oauth_referral_source")
    if source in ("APP", "BROWSER"):
        return source
    return "APP" if is_webview(options) else "BROWSER"


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, else None."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def emit(session: ConnectSession, event_type: str, **metadata: Any) -> dict:
    """Raise ``mx/<event_type>`` (e.g. ``connect/stepChange``); the session's next page delivers it."""
    session_fields = {} if event_type == "load" else {"user_guid": session.user_guid, "session_guid": session.guid}
    event = {"mx": True, "type": f"mx/{event_type}", "metadata": {**session_fields, **metadata}}
    session.events.append(event)
    if speaks_v4(session.options):
        session.unposted.append(event)
    return event


def show_step(session: ConnectSession, step: str) -> None:
    """The page now shows ``step``: ``connect/loaded`` for the first one, ``connect/stepChange`` on each change."""
    if session.step is None:
        emit(session, "connect/loaded", initial_step=step)
    elif session.step != step:
        emit(session, "connect/stepChange", previous=session.step, current=step)
    session.step = step


def webview_url(scheme: str, event: dict) -> str:
    path = event["type"].removeprefix("mx/")
    return f"{scheme}://{path}?metadata={quote(json.dumps(event['metadata'], separators=(',', ':')), safe='')}"


def delivery(session: ConnectSession) -> dict[str, Any]:
    """The events the next page delivers, and how (drains them): posted to ``target_origin`` or navigated to."""
    events, session.unposted = session.unposted, []
    if is_webview(session.options):
        urls = [webview_url(url_scheme(session.options), e) for e in events]
        return {"events": events, "target_origin": None, "webview_urls": urls}
    return {"events": events, "target_origin": session.parent_origin, "webview_urls": []}
