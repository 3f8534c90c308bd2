"""Where the connect service may send a user back to after Connect (``client_redirect_url``).

An open redirect on a bank-connection page is a phishing tool, and a ``javascript:`` target strands the user on
"Connecting..." (or worse, runs script). So a return address is accepted only when it is:
- an origin in the configured allowlist (``MX_PIPELINE_REDIRECT_ORIGINS``), which is then the only way in and
  the place for an app's own scheme (``myapp://callback``); or, with no allowlist,
- https to any host, or http to a loopback host (development).
Never with credentials in it (``https://bank.example@evil.example``), whitespace or control characters.
"""

import ipaddress
import re
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]{0,31}$")
_NEVER_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob", "about"})


class UnsafeRedirect(ValueError):
    """A return address the connect service will not send a user to; the message says why."""


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def check_return_to(url: str, allowed_origins: tuple[str, ...] = ()) -> str:
    """``url`` itself when the user may be sent there; else :class:`UnsafeRedirect` with the reason."""
    if not isinstance(url, str) or not url:
        raise UnsafeRedirect("client_redirect_url must be a non-empty string")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeRedirect("client_redirect_url must not contain whitespace or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme or scheme in _NEVER_SCHEMES:
        raise UnsafeRedirect(f"client_redirect_url must be an absolute https URL, not {scheme or 'relative'}:")
    if not parts.netloc or "@" in parts.netloc:
        raise UnsafeRedirect("client_redirect_url must name a host (and no user name or password)")
    if allowed_origins:
        if origin_of(url) not in {origin.rstrip("/").lower() for origin in allowed_origins}:
            raise UnsafeRedirect("client_redirect_url is not one of the origins in MX_PIPELINE_REDIRECT_ORIGINS")
        return url
    if scheme == "https" or (scheme == "http" and is_loopback_host(parts.hostname or "")):
        return url
    raise UnsafeRedirect(
        "client_redirect_url must be https (http only to a loopback host); "
        "list other origins, such as an app's own scheme, in MX_PIPELINE_REDIRECT_ORIGINS"
    )


def check_webview_scheme(scheme: str) -> str:
    """An app's URL scheme for MX's WebView navigations (``ui_message_webview_url_scheme``)."""
    if not isinstance(scheme, str) or not _SCHEME.match(scheme) or scheme in _NEVER_SCHEMES | {"http", "https"}:
        raise UnsafeRedirect("ui_message_webview_url_scheme must be an app's own URL scheme, such as 'myapp'")
    return scheme
