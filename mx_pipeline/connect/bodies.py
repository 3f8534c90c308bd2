"""Request bodies read with a size cap: no caller makes the service hold more than it will ever need."""

from starlette.requests import Request


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
