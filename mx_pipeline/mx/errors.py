"""Typed errors for the MX Platform API.

Every error carries the HTTP method, the request path (never the host's credentials), the status and MX's
error message (``{"error": {"message": ...}}``; the spec declares no error schema, so the message is for logs,
never for branching). No error ever holds the API key or the Authorization header.
"""


class MxError(Exception):
    """Base class: something went wrong talking to MX."""

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        mx_message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.mx_message = mx_message
        self.request_id = request_id
        where = f" [{method} {path}]" if path else ""
        said = f": {mx_message}" if mx_message else ""
        advice = self.advice()
        super().__init__(f"{message}{where}{said}".rstrip(".") + (f". {advice}" if advice else ""))

    def advice(self) -> str | None:
        """What to do about it, when that is ours to say (it becomes the end of the message)."""
        return None


class BadRequest(MxError):
    """400/405/406/422: the request was wrong; retrying the same request cannot help."""


class AuthError(MxError):
    """401/403: bad client id / API key, or a feature or address MX does not allow.

    It is about our configuration, never one member's data: it stops the step (never quarantined, never recorded
    against a member), and its message names the variables to check (never their values).
    """

    def advice(self) -> str | None:
        if self.status == 401:
            return (
                "MX refused our credentials: check MX_CLIENT_ID and MX_API_KEY, and that MX_BASE_URL is the "
                "environment they were issued for (https://int-api.mx.com for development keys, "
                "https://api.mx.com for production)"
            )
        if self.status == 403:
            return (
                "MX refused this request for our client: check that MX_CLIENT_ID and MX_API_KEY belong to "
                "MX_BASE_URL's environment and that MX enabled this feature for the client"
            )
        return None


class NotFound(MxError):
    """404: no such user, member, account, institution or path."""


class Conflict(MxError):
    """409: the object already exists, or a job of a different type is running on the member."""


class RateLimited(MxError):
    """429 after the retry budget was spent."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class Throttled(MxError):
    """Not sent: MX was asked to aggregate the member less than the throttle's interval ago, by this process or
    another sharing the rate budget; ``retry_after``: the seconds until it may be asked again."""

    def __init__(self, member_guid: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"aggregation of {member_guid} held back unasked, next in {retry_after:.0f} s")


class ServerError(MxError):
    """5xx after the retry budget was spent."""


class ConnectionFailed(MxError):
    """Network failure or timeout after the retry budget was spent."""


class MalformedResponse(MxError):
    """A body that is not JSON, or lacks the envelope the spec promises."""


class MalformedRecord(MalformedResponse):
    """One record inside an otherwise good response does not have the fields or types the spec promises."""

    def __init__(self, message: str, *, payload: object = None, **kwargs) -> None:
        self.payload = payload
        super().__init__(message, **kwargs)


class ListShifted(MxError):
    """A list's count changed between two of its pages: MX added or deleted records while they were read, so the
    pages moved under the read, and a record may have been skipped (or listed twice). Read it again from page 1."""


# After these a write may or may not have happened at MX (it failed, or its answer was lost on the way):
# never repeat the write blindly, look up what MX holds first.
OUTCOME_UNKNOWN: tuple[type[MxError], ...] = (ServerError, ConnectionFailed, MalformedResponse)

# What fails one read and says nothing of the next: the ingest steps record it against its member (or user) and
# go on. An AuthError is about our credentials, not a member: it would fail every read, so it stops the step.
READ_FAILURES: tuple[type[MxError], ...] = (
    BadRequest, NotFound, Conflict, RateLimited, ServerError, ConnectionFailed, MalformedResponse, ListShifted,
)  # fmt: skip

_BY_STATUS: dict[int, type[MxError]] = {
    400: BadRequest,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    405: BadRequest,
    406: BadRequest,
    409: Conflict,
    422: BadRequest,
    429: RateLimited,
}


def error_class_for(status: int) -> type[MxError]:
    """The typed error for an HTTP status MX answered with."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, MxError)
