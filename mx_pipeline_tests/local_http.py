"""A stub HTTP peer on loopback (a product backend, a slow MX), served from a thread, for tests that need one."""

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    """A loopback port nothing listens on now (a `make dev` running on this machine holds 3000, 8780 and 8765)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that keeps the test output clean (no access log on stderr)."""

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serving(
    handler: type[BaseHTTPRequestHandler], *, path: str = "", on_close: Callable[[], None] = lambda: None
) -> Iterator[str]:
    """``http://127.0.0.1:<port><path>`` while ``handler`` answers, each request on a thread of its own.

    ``on_close`` runs first on the way out: release whatever a handler may still be waiting on.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{path}"
    finally:
        on_close()
        server.shutdown()
        server.server_close()
