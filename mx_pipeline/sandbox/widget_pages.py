"""Server-rendered HTML for the sandbox Connect widget. Stable ids for browser tests:
``institution-search``, ``institution-<code>``, ``LOGIN``, ``PASSWORD``, ``mfa-answer``, ``mfa-option-<value>``,
``submit``, ``retry``, ``done``; ``mx-post-messages`` holds the events the page posts to ``window.parent``.
"""

import json
from html import escape

from mx_pipeline.sandbox.institutions import CREDENTIAL_FIELDS, Institution
from mx_pipeline.sandbox.records import Challenge

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;color:#1b1f24}"
    "h1{font-size:1.3rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]"
    "{width:100%;padding:.5rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1rem}"
    ".error{color:#b00020}.muted{color:#667}.institution{display:block;width:100%;text-align:left}"
)
# Posts each event to the embedding page in MX's shape {mx: true, type, metadata} (research/mx_api.md 5.1).
_POST_SCRIPT = """<script>
(function () {
  var events = JSON.parse(document.getElementById("mx-post-messages").textContent);
  if (window.parent && window.parent !== window) {
    events.forEach(function (e) { window.parent.postMessage(e, "*"); });
  }
  window.mxSandboxEvents = events;
})();
</script>"""


def page(title: str, body: str, events: list[dict] | None = None, refresh_seconds: int | None = None) -> str:
    """A whole page; ``events`` become postMessages, ``refresh_seconds`` polls while connecting."""
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds else ""
    payload = json.dumps(events or []).replace("</", "<\\/")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} - MX Connect (sandbox)'
        f'</title>{refresh}<style>{_STYLE}</style></head><body><p class="muted">MX Connect - local sandbox</p>'
        f"<h1>{escape(title)}</h1>{body}"
        f'<script type="application/json" id="mx-post-messages">{payload}</script>{_POST_SCRIPT}</body></html>'
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
    back = (
        f'<form method="post" action="{escape(back_action)}"><button type="submit" id="back">Back to search</button>'
        "</form>"
        if back_action
        else ""
    )
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
