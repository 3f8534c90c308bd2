"""Requests read with size caps (the head: request line and headers; then the body): no caller makes the service
hold more than it will ever need."""

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send


class BodyTooLarge(Exception):
    """The body is over the route's cap: answered 413 before more of it is read."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the request body is over {max_bytes} bytes")
        self.max_bytes = max_bytes


async def read_capped(request: Request, max_bytes: int) -> bytes:
    """The whole body, or :class:`BodyTooLarge` as soon as it (or its declared length) passes ``max_bytes``."""
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLarge(max_bytes)
    return bytes(body)


class CapRequestHead:
    """ASGI middleware: 431 for a request whose path, query string and headers pass ``max_bytes``, before any route.

    The HTTP server must bound what it buffers too (``mx-pipeline serve`` runs h11, which refuses a head it cannot
    complete within its own cap); this makes the limit exact whatever the server read in one go.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _head_bytes(scope) > self.max_bytes:
            message = f"the request line and headers are over {self.max_bytes} bytes"
            await PlainTextResponse(message, status_code=431)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _head_bytes(scope: Scope) -> int:
    path = scope.get("raw_path") or scope["path"].encode()
    return len(path) + len(scope.get("query_string", b"")) + sum(len(k) + len(v) for k, v in scope["headers"])
