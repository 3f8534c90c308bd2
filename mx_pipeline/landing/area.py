"""Where landed files live: a local directory or any fsspec URL (``s3://bucket/landing``, ``memory://``).

Layout, one directory per table, run and member (Hive-style names, readable by any Parquet tool)::

    <root>/<table>/run=<run id>/member=<member guid>/part-*.parquet   the rows, judged (``reason``)
                                                    listed*.parquet  guids the read listed (none: no file)
                                                    manifest.json    how the read ended: written last

A user's own list (its members) lands the same way in ``user=<user guid>``. The manifest names the files; small
reads landed together (``batch.py``) are written by one partitioned write, each into its own directory.

A member's directory is complete once its manifest exists: the manifest is written last and atomically, so the
loader never sees half a member. Parts are named in the manifest, so a part a killed writer left is never read.
"""

import contextlib
import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import fsspec

MANIFEST = "manifest.json"
SET_ASIDE = "unloadable.json"  # a manifest whose files could not be loaded, renamed: never loaded again
LISTED = "listed.parquet"
_log = logging.getLogger(__name__)

DateRange = tuple[dt.date, dt.date]


@dataclass(frozen=True)
class Manifest:
    """How one member's read ended, and everything the loader needs besides the rows."""

    run_id: str
    member_guid: str | None  # None for a user's own list (its members)
    user_guid: str
    outcome: str  # synced | failed | gone (MX confirmed the owner deleted)
    finished_at: dt.datetime
    parts: tuple[str, ...]  # file names, in the order written
    rows: int  # rows in the parts, refused ones included
    reason: str | None = None  # why the read failed
    watermark: dt.datetime | None = None  # a complete read's new transactions watermark
    aggregated_at: dt.datetime | None = None  # MX's successfully_aggregated_at the read was made under
    listed_in_full: tuple[DateRange, ...] = ()  # dates every read listing them whole covered (listed.parquet)
    # A list read whole (every page, every guid known), when it began: what we held before it and it lacks is gone.
    listed_from: dt.datetime | None = None
    page_rejects: tuple[str, ...] = field(default=())  # responses that could not be read at all, with the reason
    listed: str | None = LISTED  # the file of the guids the read listed; None: it listed none

    @property
    def owner(self) -> str:
        """Whose read it is: the member, or the user for a user's own list."""
        return self.member_guid or self.user_guid

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_iso, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        raw = json.loads(text)
        times = {k: dt.datetime.fromisoformat(raw[k]) if raw.get(k) else None for k in _TIMES if k in raw}
        ranges = tuple((dt.date.fromisoformat(a), dt.date.fromisoformat(b)) for a, b in raw["listed_in_full"])
        tuples = {k: tuple(raw[k]) for k in ("parts", "page_rejects")}
        return cls(**{**raw, **times, **tuples, "listed_in_full": ranges})


_TIMES = ("finished_at", "watermark", "aggregated_at", "listed_from")


def _iso(value: object) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class LandedMember:
    """A member's complete directory: its manifest and where its files are."""

    directory: str
    manifest: Manifest

    def part(self, name: str) -> str:
        return f"{self.directory}/{name}"

    @property
    def listed(self) -> str | None:
        """The file of the guids the read listed (None: it listed none)."""
        return self.manifest.listed and f"{self.directory}/{self.manifest.listed}"


class LandingArea:
    """The landing area at ``url``; every path it hands out is one DuckDB can read on a connection it attached."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/")

    @classmethod
    def beside(cls, warehouse_path: str | Path) -> "LandingArea":
        """The single-machine default: ``landing/`` beside the warehouse file."""
        return cls(Path(warehouse_path).resolve().parent / "landing")

    @property
    def root_path(self) -> Path:
        """The root as a local path (a local area only)."""
        assert self.is_local, f"{self.url} is not a local directory"
        return Path(self.root)

    @property
    def protocols(self) -> tuple[str, ...]:
        protocol = self.fs.protocol
        return (protocol,) if isinstance(protocol, str) else tuple(protocol)

    @property
    def is_local(self) -> bool:
        return "file" in self.protocols or "local" in self.protocols

    def member_directory(self, table: str, run_id: str, member_guid: str) -> str:
        return f"{self.root}/{table}/run={run_id}/member={member_guid}"

    def user_directory(self, table: str, run_id: str, user_guid: str) -> str:
        return f"{self.root}/{table}/run={run_id}/user={user_guid}"

    def attach(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let ``con`` read and write this area's paths (a local directory needs nothing)."""
        if not self.is_local and not con.filesystem_is_registered(self.protocols[0]):
            con.register_filesystem(self.fs)

    def duckdb_path(self, path: str) -> str:
        """``path`` as DuckDB names it: plain for a local file, with the protocol otherwise."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def prepare(self, directory: str) -> None:
        self.fs.makedirs(directory, exist_ok=True)

    def write_manifest(self, directory: str, manifest: Manifest) -> None:
        """Written whole or not at all: a local file by rename, an object store's put is atomic by itself."""
        path = f"{directory}/{MANIFEST}"
        if self.is_local:
            partial = f"{path}.partial"
            Path(partial).write_text(manifest.to_json())
            os.replace(partial, path)
        else:
            self.fs.pipe_file(path, manifest.to_json().encode())

    def landed(self, table: str) -> list[LandedMember]:
        """Every complete member of ``table``, oldest read first. A manifest that cannot be read is logged and
        left where it is, with its files, for a person to look at; it never stops the others."""
        members = []
        for path in self.fs.glob(f"{self.root}/{table}/run=*/*=*/{MANIFEST}"):
            try:
                manifest = Manifest.from_json(self.fs.cat_file(path).decode())
            except FileNotFoundError:  # loaded and removed by another loader since the glob
                continue
            except (ValueError, KeyError, TypeError) as exc:
                _log.error(f"{path} is not a readable manifest, so its member is not loaded: {exc}")
                continue
            members.append(LandedMember(path.rsplit("/", 1)[0], manifest))
        return sorted(members, key=lambda m: (m.manifest.finished_at, m.directory))

    def set_aside(self, member: LandedMember, reason: str) -> None:
        """Keep a member whose files could not be loaded for a person to look at, out of every later load."""
        self.fs.pipe_file(f"{member.directory}/{SET_ASIDE}", json.dumps({"reason": reason}).encode())
        self.fs.rm_file(f"{member.directory}/{MANIFEST}")

    def remove(self, members: list[LandedMember]) -> None:
        """Delete loaded members' files (each manifest first, so no one loads what is left of it), then the run
        directories they leave empty. A member another loader removed first (both found it; the first to commit
        loaded it, the other found it loaded) is gone already, as wanted."""
        for member in members:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(f"{member.directory}/{MANIFEST}")
                self.fs.rm(member.directory, recursive=True)
        for run_directory in sorted({member.directory.rsplit("/", 1)[0] for member in members}):
            try:
                if not self.fs.ls(run_directory, detail=False):
                    self.fs.rmdir(run_directory)
            except OSError:  # another member of the run landed meanwhile, or another loader removed it
                pass
