"""Short-lived DuckDB connections that wait politely for a busy file.

DuckDB allows one writing process per file, and a second process fails at once with an ``IOException``
("Could not set lock on file") rather than waiting, even when it only wants to read. So every caller opens
a connection for one unit of work and closes it, and ``connect`` retries a held lock with capped backoff.
The first time it finds the file held it logs so (the file, who holds it, how long it will wait); past its
bound it fails saying what to close. A run's steps wait generously (``DEFAULT_WAIT_SECONDS``): an analyst's
open session should delay a run, not fail it. Migrations are applied on every writable open (a cheap look-up
once they are in).
"""

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from mx_pipeline.warehouse.migrate import ensure_migrated
from mx_pipeline.warehouse.sql_literals import sql_literal

LOCK_MESSAGE = "Could not set lock on file"
WAL_REPLAY_FAILURE = "Failure while replaying WAL file"
DEFAULT_WAIT_SECONDS = 600.0
FREE_AFTER = "was free after"  # the line that ends a wait says how long it was: "<path> was free after 1.25 s"
_HOLDER = re.compile(r"Conflicting lock is held in (.+?)(?:\. See also|$)")
_WHAT_TO_CLOSE = (
    "close the read-write session on it (a DuckDB CLI, a notebook, another pipeline process), or open it"
    " read-only (duckdb -readonly) or read analytics.duckdb instead"
)

_log = logging.getLogger(__name__)


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse file for longer than we were willing to wait."""


@contextmanager
def connect(
    path: str | Path,
    *,
    read_only: bool = False,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    memory_limit: str | None = None,
    log: logging.Logger | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse at ``path``, closed on exit, with every migration applied.

    A file another process holds is waited for, up to ``wait_seconds``, said once to ``log``.
    ``memory_limit`` caps DuckDB's buffer pool (its default, 80 % of RAM, would grow with the tables).
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.nullcontext() if read_only else _writer_lock(path):
        con = _open(path, read_only, wait_seconds, log or _log, clock, sleep)
        try:
            # Every timestamp the pipeline writes or compares is UTC, whatever the host's zone.
            con.execute("set TimeZone = 'UTC'")
            if memory_limit:
                con.execute("set memory_limit = ?", [memory_limit])
            if not read_only:
                ensure_migrated(con)
            yield con
        finally:
            con.close()


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame: object) -> Iterator[None]:
    """``frame`` (a pandas or Arrow frame) readable as the table ``name`` by the statements inside, and only there."""
    con.register(name, frame)
    try:
        yield
    except BaseException:
        # In a transaction the failure aborted, DuckDB refuses the unregister too: raising that would hide the
        # failure itself. The caller's rollback drops the view; a later register of the name replaces it anyway.
        with contextlib.suppress(duckdb.TransactionException):
            con.unregister(name)
        raise
    con.unregister(name)


def table_columns(con: duckdb.DuckDBPyConnection, table: str, database: str | None = None) -> list[tuple[str, str]]:
    """(name, type) of each column of ``table`` (schema-qualified) in ``database`` (default: the connection's), in
    the table's order; none for a table that does not exist."""
    schema, name = table.split(".")
    return con.execute(
        """
        select column_name, data_type from duckdb_columns()
        where database_name = coalesce(?, current_database()) and schema_name = ? and table_name = ?
        order by column_index
        """,
        [database, schema, name],
    ).fetchall()


_writer_locks: dict[Path, threading.RLock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    """The lock a writable connection to ``path`` holds while open: threads of one process write in turn.

    In one process DuckDB shares one database per file, and two open write transactions on the same rows
    conflict (``TransactionException``) instead of waiting. Re-entrant: a thread holding a connection may open
    another (a helper's own short write). Hold a connection for a unit of work, never while waiting on MX.
    """
    with _writer_locks_guard:
        return _writer_locks.setdefault(path, threading.RLock())


def holds_writer(path: str | Path) -> bool:
    """Whether the calling thread holds a writable connection to ``path`` (it must not while it asks MX)."""
    return _writer_lock(Path(path).resolve())._is_owned()  # RLock's "held by the calling thread"


def _open(
    path: Path,
    read_only: bool,
    wait_seconds: float,
    log: logging.Logger,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> duckdb.DuckDBPyConnection:
    started, delay, said, replayed = clock(), 0.05, False, False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            if said:
                log.info(f"{path} {FREE_AFTER} {clock() - started:.2f} s")
            return con
        except duckdb.IOException as exc:
            if LOCK_MESSAGE not in str(exc):
                raise
            holder = _holder(exc)
            waited = clock() - started
            if not said:
                said = True
                log.warning(
                    f"{path} is held by another process ({holder}); waiting up to {wait_seconds:.0f} s for it"
                    " to be released"
                )
            if waited >= wait_seconds:
                raise WarehouseBusy(
                    f"{path} is held by another process ({holder}); waited {waited:.0f} s, the most this step"
                    f" waits. To let the pipeline in, {_WHAT_TO_CLOSE}."
                ) from None
            sleep(min(delay, wait_seconds - waited))
            delay = min(delay * 2, 2.0)
        except duckdb.Error as exc:
            if WAL_REPLAY_FAILURE not in str(exc) or replayed:
                raise
            log.warning(f"{path} was left with an unreplayed write-ahead log (a process was killed): replaying it")
            with contextlib.suppress(duckdb.IOException):  # held meanwhile: the next open waits for its holder
                _replay_wal_through_an_attach(path)
            replayed = True


def _replay_wal_through_an_attach(path: Path) -> None:
    """Fold the write-ahead log a killed process left into the file.

    Opened directly, DuckDB 2.0.1 binds the log's DDL (our migrations) before it loads even its statically
    linked extensions, so it fails and tries to download ``core_functions`` (duckdb/duckdb#18259, fixed after
    2.0.1): a warehouse killed between a migration and the next checkpoint would never open again offline.
    Attached to a running instance, the same log replays; a checkpoint then writes it into the file.
    """
    with duckdb.connect(":memory:") as con:
        con.execute(f"attach {sql_literal(str(path))} as killed")
        con.execute("checkpoint killed")


def _holder(exc: duckdb.IOException) -> str:
    found = _HOLDER.search(str(exc))
    return found.group(1) if found else "unknown"


class Warehouse:
    """The warehouse file at ``path``; every unit of work opens its own short-lived connection."""

    def __init__(
        self,
        path: str | Path,
        *,
        memory_limit: str | None = None,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        log: logging.Logger | None = None,
    ) -> None:
        self.path = Path(path)
        self.memory_limit = memory_limit
        self.wait_seconds = wait_seconds  # how long a connection waits for a file another process holds
        self.log = log  # where waiting is said (a run's log); the module's logger by default

    def connect(
        self, *, read_only: bool = False, wait_seconds: float | None = None
    ) -> "contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]":
        """See :func:`connect`; ``wait_seconds`` defaults to the warehouse's own."""
        return connect(
            self.path,
            read_only=read_only,
            wait_seconds=self.wait_seconds if wait_seconds is None else wait_seconds,
            memory_limit=self.memory_limit,
            log=self.log,
        )

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"
