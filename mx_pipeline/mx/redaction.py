"""Keeps secrets out of every log line and exception text.

Each client registers its credentials with the process-wide :data:`REDACTOR`. The client logs only through
:data:`LOGGER`, whose filter redacts each formatted record before any handler sees it, and every error
message passes through the redactor before it is raised: neither a log handler nor a traceback can show the
API key or the Basic ``Authorization`` value.
"""

import base64
import logging
import re
import threading

REDACTED = "[REDACTED]"
_AUTH_VALUE = re.compile(r"\b(Basic|Bearer)\s+[A-Za-z0-9+/=._~-]{8,}")


def basic_auth_token(client_id: str, api_key: str) -> str:
    """The value after ``Basic`` in the Authorization header."""
    return base64.b64encode(f"{client_id}:{api_key}".encode()).decode()


class Redactor:
    """Replaces every registered secret, and any Basic/Bearer credential, with ``[REDACTED]``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, *secrets: str) -> None:
        with self._lock:
            known = {s for s in (*self._secrets, *secrets) if s and len(s) >= 4}
            # Longest first, so that a secret containing another is replaced whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        text = _AUTH_VALUE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = REDACTOR(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


REDACTOR = Redactor()
LOGGER = logging.getLogger("mx_pipeline.mx")
LOGGER.addFilter(_RedactingFilter())
