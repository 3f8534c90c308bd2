"""The one exception the sandbox raises to answer an MX-shaped error: ``{"error": {"message": ...}}``."""


class MxError(Exception):
    """An HTTP error in MX's shape. ``headers`` carries e.g. Retry-After on 429."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message}}


def not_found(what: str) -> MxError:
    return MxError(404, f"{what} not found.")
