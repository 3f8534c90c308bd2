"""A session on the built-in sandbox (``mx-pipeline demo`` or ``dev`` with no MX credentials) starts afresh.

The sandbox keeps its users and members in memory, so when it stops every guid the warehouse holds means
nothing to the next one. A sandbox session therefore clears the data directory's run-time state first: the
warehouse (its WAL, and the landing area its loads wait in: ``landing/``), the analysts' ``analytics.duckdb``, the
connect service's spool and link store (events
and reconnect links name sandbox members) and the Dagster instance's history (its sensor cursors and run keys
count ``ops.member_events`` of the old warehouse: kept, they would hide the new session's events). The
instance config, the link secret and the reference data stay.

A warehouse (or spooled events, an analysts' file, Dagster history) is only ever cleared when a marker says a
sandbox session made it. One without the marker came from real MX, another project or before markers existed:
the session refuses rather than wipe it, and on MX the code location and the connect service refuse a directory
with the marker (``refuse_on_mx``). Nor is a data directory cleared while another session (``dev`` or ``demo``,
sandbox or MX) uses it: each holds a lock on it until it ends.
"""

import fcntl
import os
import shutil
from pathlib import Path

from mx_pipeline import settings
from mx_pipeline.landing import LandingArea

MARKER = ".built_on_sandbox"
INSTANCE_CONFIG = "dagster.yaml"
LOCK = ".session.lock"
_held: dict[Path, int] = {}  # data dirs this process's session holds: the lock lasts as long as the process


class Refused(Exception):
    """A session must not start on this data directory; the message says what to do."""


class NotSandboxData(Refused):
    """The data directory holds a warehouse no sandbox session built."""


class DataDirInUse(Refused):
    """Another session (``mx-pipeline dev`` or ``demo``) is using the data directory."""


def _hold(data: Path) -> None:
    """Claim ``data`` for this process's session, or raise :class:`DataDirInUse` (the kernel frees it at exit)."""
    if data.resolve() in _held:
        return
    fd = os.open(data / LOCK, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by the processes dev starts
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(
            f"{data} is in use by another session (mx-pipeline dev or demo): stop it first, or set"
            " MX_PIPELINE_DATA_DIR to another directory"
        ) from None
    _held[data.resolve()] = fd


def start_afresh() -> Path:
    """Clear the sandbox's leftovers from the data directory and mark what follows as sandbox-built."""
    data = settings.data_dir()
    _hold(data)
    warehouse, marker = settings.warehouse_path(), data / MARKER
    unknown = [p for p in _cleared(data) if _holds_data(p)]
    if unknown and not marker.exists():  # the connect service on MX spools events before any warehouse exists
        raise NotSandboxData(
            f"{unknown[0]} was not made on the built-in sandbox (it may hold real MX data) and a sandbox session"
            " starts its data afresh: set MX_PIPELINE_DATA_DIR to another directory for the sandbox (or delete it,"
            " if an earlier sandbox session made it)"
        )
    _clear(data)
    marker.write_text("Built by a session on the built-in MX sandbox: the next sandbox session starts afresh.\n")
    return warehouse


def leave_the_sandbox() -> bool:
    """On real MX: a warehouse the sandbox built holds nothing real, so it is cleared (never mixed with MX's guids).

    Returns whether anything was cleared.
    """
    _hold(settings.data_dir())
    marker = settings.data_dir() / MARKER
    if not marker.exists():
        return False
    _clear(marker.parent)
    marker.unlink()
    return True


def refuse_on_mx() -> None:
    """On real MX, a data directory the sandbox built is refused (:class:`settings.ConfigError`): MX's data written
    beside the marker would be wiped by the next sandbox session. ``dev`` and ``demo`` on MX clear it first."""
    marker = settings.data_dir() / MARKER
    if marker.exists() and not settings.MxSettings.from_env().is_sandbox:
        raise settings.ConfigError(
            f"{marker.parent} holds the built-in sandbox's data, and MX's would be wiped with it by the next sandbox"
            " session: start with `make dev` (or `mx-pipeline demo`), which clears it for MX, or set"
            " MX_PIPELINE_DATA_DIR to another directory"
        )


def _cleared(data: Path) -> list[Path]:
    """What a session clears: the warehouse and its landing area, the analysts' file, links, spool and the Dagster
    instance's history."""
    warehouse, links, home = settings.warehouse_path(), settings.link_store_path(), settings.dagster_home()
    files = [
        data / name for name in (warehouse.name, f"{warehouse.name}.wal", "analytics.duckdb", "analytics.duckdb.wal")
    ]
    files += [links.with_name(links.name + suffix) for suffix in ("", "-wal", "-shm")]
    history = [entry for entry in home.iterdir() if entry.name != INSTANCE_CONFIG] if home.is_dir() else []
    return [*files, LandingArea.beside(warehouse).root_path, settings.spool_dir(), *history]


def _holds_data(path: Path) -> bool:
    """Whether ``path`` may hold what only its owner can tell is not the sandbox's. Not the link store: every
    ``make demo`` before markers existed left one (with nothing in it), and links are issued by the pipeline."""
    if path.name.startswith(settings.link_store_path().name):
        return False
    return any(f.is_file() for f in path.rglob("*")) if path.is_dir() else path.exists()


def _clear(data: Path) -> None:
    for path in _cleared(data):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
