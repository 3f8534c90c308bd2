"""Short-lived DuckDB connections that wait politely for a busy file.

DuckDB allows one writing process per file, and a second process fails at once with an ``IOException``
("Could not set lock on file") rather than waiting, even when it only wants to read. So every caller opens
a connection for one unit of work and closes it, and ``connect`` retries a held lock with capped backoff
before giving up. Migrations are applied on every writable open (a cheap look-up once they are in).
"""

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from mx_pipeline.warehouse.migrate import apply_migrations

LOCK_MESSAGE = "Could not set lock on file"


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse file for longer than we were willing to wait."""


@contextmanager
def connect(
    path: str | Path, *, read_only: bool = False, wait_seconds: float = 30.0, memory_limit: str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse at ``path``, closed on exit, with every migration applied.

    ``memory_limit`` caps DuckDB's buffer pool (its default, 80 % of RAM, would grow with the tables).
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _open(path, read_only, wait_seconds)
    try:
        # Every timestamp the pipeline writes or compares is UTC, whatever the host's zone.
        con.execute("set TimeZone = 'UTC'")
        if memory_limit:
            con.execute("set memory_limit = ?", [memory_limit])
        if not read_only:
            apply_migrations(con)
        yield con
    finally:
        con.close()


def _open(path: Path, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if LOCK_MESSAGE not in str(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise WarehouseBusy(f"{path.name} is held by another process: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class Warehouse:
    """The warehouse file at ``path``; every unit of work opens its own short-lived connection."""

    def __init__(self, path: str | Path, *, memory_limit: str | None = None) -> None:
        self.path = Path(path)
        self.memory_limit = memory_limit

    def connect(
        self, *, read_only: bool = False, wait_seconds: float = 30.0
    ) -> "contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]":
        """See :func:`connect`."""
        return connect(self.path, read_only=read_only, wait_seconds=wait_seconds, memory_limit=self.memory_limit)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep the file open for one unit of work made of many small writes (a sync step).

        DuckDB shares one database instance among the connections a process holds to a file. Without a
        session, every batch opens the file and checkpoints on close (rewriting the primary-key index), a
        cost that grows with the table; inside one, each batch's ``connect`` is nearly free. Sessions nest.
        """
        with self.connect():
            yield

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"
