"""A durable, append-only event spool on the file system: the connect service's only output.

The connect service must never open the DuckDB warehouse (one writer process only), yet it must not lose an
event it has acknowledged. So each accepted event is written to its own file (temporary name, fsync, atomic
rename, fsync of the directory) *before* the HTTP answer goes out. The Dagster webhook sensor reads the
``pending`` events in arrival order (files are named ``<received_ns>-<key digest>.json``) and, once it has
stored them, ``acknowledge``s them, which moves them to ``drained/``. A name-based cursor alone would skip an
event whose slower writer finished after a later one was already drained; moving files cannot.

Delivery is at least once: a redelivered event is skipped, and a crash between two steps can at worst hand an
event over twice, which the consumer dedupes by the same rule. MX payloads carry no event id, so a key seen
again is a redelivery only while it is still the latest event of its member (MX redelivers only what we failed
to acknowledge) and within ``DEDUPE_WINDOW``: a member CHALLENGED, then CONNECTED, then CHALLENGED again the
same day sends the very same bytes twice, and so does one CHALLENGED again weeks later; both are new events.
An event that names no member falls back to the window alone. ``prune`` removes markers and drained files
past the window.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

# MX retries a webhook for about 24 hours; after this window the same key is a new event whatever came between.
# The spool and ``store_spooled`` take it as ``dedupe_window``; both sides must use the same one.
DEDUPE_WINDOW = timedelta(hours=26)


@dataclass(frozen=True)
class SpooledEvent:
    name: str  # file name; the drain cursor
    key: str  # idempotency key
    kind: str  # e.g. "mx_webhook", "connect_callback"
    received_at_ns: int
    body: str  # as received: bytes that are not UTF-8 are kept as surrogate escapes; parsed only when drained
    meta: dict

    @property
    def raw(self) -> bytes:
        """The body's bytes exactly as received."""
        try:
            return self.body.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate no receiver decoding makes (e.g. one a caller passed us)
            return self.body.encode("utf-8", errors="surrogatepass")


class Spool:
    def __init__(
        self, root: Path, *, dedupe_window: timedelta = DEDUPE_WINDOW, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.root = Path(root)
        self.window_ns = int(dedupe_window.total_seconds() * 1e9)
        self._clock = clock
        self.events = self.root / "events"
        self.keys = self.root / "keys"
        self.drained = self.root / "drained"
        self.latest = self.root / "latest"  # per member: the digest of its latest event's key, and when
        for folder in (self.events, self.keys, self.drained, self.latest):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def append(self, kind: str, key: str, body: str, meta: dict | None = None, *, member: str | None = None) -> bool:
        """Durably store one event about ``member`` (if it names one); False when it is a redelivery.

        A redelivery: this key was spooled within the dedupe window and, when a member is given, no other event
        of that member was spooled since.
        """
        digest = _digest(f"{kind}\0{key}")
        marker = self.keys / digest
        latest = self.latest / _digest(member) if member else None
        with self._lock():  # check-then-write, against another writer or a concurrent ``prune``
            received = self._clock()
            seen = _marker_time_ns(marker)
            if seen is not None and received - seen < self.window_ns and _still_latest(latest, digest):
                return False
            record = {"key": key, "kind": kind, "received_at_ns": received, "body": body, "meta": meta or {}}
            _write_durably(self.events / f"{received:020d}-{digest}.json", json.dumps(record).encode())
            _write_durably(marker, str(received).encode())
            if latest is not None:
                _write_durably(latest, f"{received} {digest}".encode())
            return True

    def pending(self, limit: int = 1000) -> list[SpooledEvent]:
        """Up to ``limit`` events not yet acknowledged, oldest first."""
        names = sorted(n for n in os.listdir(self.events) if n.endswith(".json"))[:limit]
        return [SpooledEvent(name=name, **json.loads((self.events / name).read_bytes())) for name in names]

    def acknowledge(self, events: list[SpooledEvent]) -> None:
        """Mark events as stored by the consumer: they leave ``pending`` for ``drained/``."""
        for event in events:
            os.replace(self.events / event.name, self.drained / event.name)
        _fsync_directory(self.events)

    def prune(self) -> int:
        """Remove markers and drained files older than the dedupe window; pending events are never pruned."""
        removed = 0
        with self._lock():  # a marker rewritten between our read and our unlink must survive
            cutoff = self._clock() - self.window_ns
            for marker in [*self.keys.iterdir(), *self.latest.iterdir()]:
                if marker.name.startswith("."):
                    continue  # a marker being written
                seen = _marker_time_ns(marker)
                if seen is not None and seen < cutoff:
                    marker.unlink(missing_ok=True)
                    removed += 1
        for drained in self.drained.iterdir():
            received = drained.name.partition("-")[0]
            if received.isdigit() and int(received) < cutoff:
                drained.unlink(missing_ok=True)
                removed += 1
        return removed

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One marker reader-writer at a time, across processes (the connect service, the sensor) and threads."""
        fd = os.open(self.root / ".lock", os.O_RDONLY | os.O_CREAT, 0o600)  # flock needs no write access
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _digest(text: str) -> str:
    """A file name for ``text``: any text, even one holding a lone surrogate (a body names what it likes)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


def _still_latest(latest: Path | None, digest: str) -> bool:
    """Whether ``digest`` is still its member's latest event (True without a member, or a marker from before)."""
    if latest is None:
        return True
    try:
        return latest.read_text().split()[-1] == digest
    except (FileNotFoundError, IndexError):
        return True


def _marker_time_ns(marker: Path) -> int | None:
    """When the marker was last written (key markers written before the window existed are empty: mtime)."""
    try:
        content = marker.read_bytes().split()
        return int(content[0]) if content and content[0].isdigit() else marker.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _write_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    _fsync_directory(path.parent)  # the rename itself must survive a power cut, not just the bytes


def _fsync_directory(path: Path) -> None:
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
