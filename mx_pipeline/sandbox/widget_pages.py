"""Server-rendered HTML for the sandbox Connect widget. Stable ids for browser tests:
``institution-search``, ``institution-<code>``, ``LOGIN``, ``PASSWORD``, ``mfa-answer``, ``mfa-option-<value>``,
``submit``, ``retry``, ``done``, ``oauth-sign-in``, ``authorize``, ``deny``; ``mx-messages`` holds what the page
delivers (widget_messages.delivery): its events, the origin they are posted to, or a WebView's navigations.
"""

import json
from html import escape
from urllib.parse import parse_qsl

from starlette.requests import Request

from mx_pipeline.sandbox.institutions import CREDENTIAL_FIELDS, Institution
from mx_pipeline.sandbox.records import Challenge

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}"
    "h1{font-size:1.3rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]"
    "{width:100%;padding:.5rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1rem}"
    ".error{color:#b00020}.muted{color:#667}.institution{display:block;width:100%;text-align:left}"
)
# Delivers the page's events as MX's widget does: postMessage to the embedding page's origin (never "*"; nothing
# without one), or, in a WebView, one navigation per event for the app to intercept.
_DELIVER_SCRIPT = """<script>
(function () {
  var d = JSON.parse(document.getElementById("mx-messages").textContent);
  window.mxSandboxEvents = d.events;
  if (d.target_origin) {
    d.events.forEach(function (e) {
      if (window.parent && window.parent !== window) { window.parent.postMessage(e, d.target_origin); }
      if (window.opener) { window.opener.postMessage(e, d.target_origin); }
    });
  }
  function navigate(i) {
    if (i < d.webview_urls.length) {
      window.location.href = d.webview_urls[i];
      setTimeout(function () { navigate(i + 1); }, 0);
    } else {
      window.mxSandboxDelivered = true;  // for tests driving a WebView: every navigation has been tried
    }
  }
  window.addEventListener("load", function () { navigate(0); });
})();
</script>"""
_NOTHING = {"events": [], "target_origin": None, "webview_urls": []}


def page(title: str, body: str, delivery: dict | None = None, refresh_seconds: int | None = None) -> str:
    """A whole page; ``delivery`` is what it tells its host, ``refresh_seconds`` polls while waiting."""
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds else ""
    payload = json.dumps(delivery or _NOTHING).replace("</", "<\\/")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - MX Connect (sandbox)'
        f'</title>{refresh}<style>{_STYLE}</style></head><body><p class="muted">MX Connect - local sandbox</p>'
        f"<h1>{escape(title)}</h1>{body}"
        f'<script type="application/json" id="mx-messages">{payload}</script>{_DELIVER_SCRIPT}</body></html>'
    )


def search_body(action: str, search_url: str, query: str, institutions: list[Institution]) -> str:
    rows = (
        "".join(
            f'<button class="institution" type="submit" name="institution_code" value="{escape(i.code)}" '
            f'id="institution-{escape(i.code)}">{escape(i.name)}</button>'
            for i in institutions
        )
        or '<p class="muted">No institutions match.</p>'
    )
    return (
        f'<form method="get" action="{escape(search_url)}"><label for="institution-search">Search institutions</label>'
        f'<input type="text" name="q" id="institution-search" value="{escape(query)}"></form>'
        f'<form method="post" action="{escape(action)}">{rows}</form>'
    )


def credentials_body(action: str, institution: Institution, error: str | None, back_action: str | None) -> str:
    error_html = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    inputs = "".join(
        f'<label for="{name}">{escape(label)}</label><input type="{"password" if kind == "PASSWORD" else "text"}" '
        f'name="{name}" id="{name}" autocomplete="off">'
        for name, label, kind, _ in CREDENTIAL_FIELDS
    )
    back = _back_to_search(back_action)
    return (
        f"<p>Enter your {escape(institution.name)} credentials.</p>{error_html}"
        f'<form method="post" action="{escape(action)}">{inputs}'
        f'<button type="submit" id="submit">Continue</button></form>{back}'
    )


def mfa_body(action: str, challenges: list[Challenge]) -> str:
    parts = []
    for index, challenge in enumerate(challenges):
        name = f"answer-{index}"
        parts.append(f"<p>{escape(challenge.label)}</p>")
        if challenge.image_data:
            parts.append(f'<img alt="challenge image" src="{escape(challenge.image_data)}" width="40" height="40">')
        if challenge.options:
            for option in challenge.options:
                value = escape(option["value"])
                parts.append(
                    f'<label><input type="radio" name="{name}" value="{value}" id="mfa-option-{value}"> '
                    f"{escape(option['label'])}</label>"
                )
        else:
            suffix = "" if index == 0 else f"-{index}"
            parts.append(f'<input type="text" name="{name}" id="mfa-answer{suffix}" autocomplete="off">')
    submit = '<button type="submit" id="submit">Continue</button>'
    return f'<form method="post" action="{escape(action)}">{"".join(parts)}{submit}</form>'


def connecting_body(message: str) -> str:
    return f'<p id="connecting">{escape(message)}</p><p class="muted">This page refreshes itself.</p>'


def connected_body(institution: Institution, done_url: str) -> str:
    return (
        f'<p id="connected">You are connected to {escape(institution.name)}.</p>'
        f'<form method="post" action="{escape(done_url)}"><button type="submit" id="done">Done</button></form>'
    )


def error_body(message: str, retry_action: str | None, credentials_action: str | None) -> str:
    retry = (
        f'<form method="post" action="{escape(retry_action)}">'
        '<button type="submit" id="retry">Try again</button></form>'
        if retry_action
        else ""
    )
    update = (
        f'<form method="get" action="{escape(credentials_action)}"><button type="submit" id="update-credentials">'
        "Update credentials</button></form>"
        if credentials_action
        else ""
    )
    return f'<p class="error" id="error">{escape(message)}</p>{retry}{update}'


def message_page(title: str, message: str) -> str:
    return page(title, f'<p class="error" id="error">{escape(message)}</p>')


def oauth_sign_in_body(institution: Institution, action: str, oauth_url: str, opens_window: bool) -> str:
    """OAuth: a button that asks the host to open the bank's page (and opens it itself in a browser, as MX does)."""
    opener = f' onclick="window.open({escape(json.dumps(oauth_url))})"' if opens_window else ""
    return (
        f"<p>You will sign in at {escape(institution.name)} and come back here.</p>"
        f'<form method="post" action="{escape(action)}"><button type="submit" id="oauth-sign-in"{opener}>'
        f"Go to {escape(institution.name)}</button></form>"
    )


def oauth_waiting_body(institution: Institution, oauth_url: str) -> str:
    return (
        f'<p id="oauth-waiting">Waiting for permission from {escape(institution.name)}.</p>'
        f'<p class="muted"><a href="{escape(oauth_url)}" target="_blank" rel="noopener">Open the sign-in page again</a>'
        "</p>"
    )


def oauth_error_body(institution: Institution, retry_action: str, back_action: str | None) -> str:
    back = _back_to_search(back_action)
    return (
        f'<p class="error" id="error">{escape(institution.name)} did not give permission.</p>'
        f'<form method="post" action="{escape(retry_action)}"><button type="submit" id="retry">Try again</button>'
        f"</form>{back}"
    )


def bank_authorization_page(institution: Institution, action: str) -> str:
    """The bank's own sign-in page (OAuth), outside Connect."""
    body = (
        f"<p>MX would like to access your {escape(institution.name)} accounts and transactions.</p>"
        f'<form method="post" action="{escape(action)}">'
        '<button type="submit" name="decision" value="approve" id="authorize">Allow</button> '
        '<button type="submit" name="decision" value="deny" id="deny">Deny</button></form>'
    )
    return page(f"{institution.name}: authorize MX", body)


def _back_to_search(back_action: str | None) -> str:
    """The "Back to search" button, or nothing when the session may not go back (``disable_institution_search``)."""
    if not back_action:
        return ""
    button = '<button type="submit" id="back">Back to search</button>'
    return f'<form method="post" action="{escape(back_action)}">{button}</form>'


async def submitted_form(request: Request) -> dict[str, str]:
    """The fields a page's form posted (application/x-www-form-urlencoded; parsed here, no python-multipart)."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
