"""What every read's landing shares: its directory, its parts and counts, and how it ends (the guids it listed,
then its manifest, written last: from then on the loader may take it)."""

import datetime as dt
from collections.abc import Sequence

import duckdb

from mx_pipeline.landing.area import LISTED, LandingArea, Manifest
from mx_pipeline.landing.parser import on_parser
from mx_pipeline.warehouse.sql_literals import sql_literal

PART_ORDINAL = 10**10  # a part's rows come after every row of the parts before it


class ReadLanding:
    """One read landing in ``directory``: subclasses write its parts and :meth:`flush` them."""

    def __init__(self, area: LandingArea, directory: str, *, run_id: str, member_guid: str | None, user_guid: str):
        self.area, self.directory = area, directory
        self.run_id, self.member_guid, self.user_guid = run_id, member_guid, user_guid
        self.rows = 0  # landed, refused ones included
        self.refused = 0
        self._parts: list[str] = []
        self._page_rejects: list[str] = []
        area.prepare(directory)

    def flush(self) -> None:
        """Land what is queued."""
        raise NotImplementedError

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts landed so far, in the order written."""
        return tuple(self._parts)

    @property
    def partition(self) -> tuple[str, str, str]:
        """(run directory, kind of owner, owner) its directory is named by: ``<run directory>/<kind>=<owner>``."""
        run_directory, name = self.directory.rsplit("/", 1)
        kind, owner = name.split("=", 1)
        return run_directory, kind, owner

    @property
    def owner(self) -> str:
        """Whose read it is: the member's guid, or the user's for a user's own list."""
        return self.partition[2]

    @property
    def ordinal_offset(self) -> int:
        """The ordinal the next part's rows start after."""
        return len(self._parts) * PART_ORDINAL

    def _finish(self, *, outcome: str, reason: str | None, listed_guids, **how) -> Manifest:
        """Land what is queued and the guids listed, then the manifest; ``how``: the read's own manifest fields."""
        self.flush()
        path = sql_literal(self.area.duckdb_path(f"{self.directory}/{LISTED}"))
        guids = sorted(listed_guids or ())
        on_parser(
            self.area,
            lambda con: con.execute(
                f"copy (select unnest($guids::varchar[]) as guid) to {path} (format parquet)", {"guids": guids}
            ),
        )
        return self.write_manifest(outcome=outcome, reason=reason, listed=LISTED, **how)

    def write_manifest(self, **fields) -> Manifest:
        """The manifest, written last: from here the loader may take the read."""
        manifest = Manifest(
            run_id=self.run_id,
            member_guid=self.member_guid,
            user_guid=self.user_guid,
            finished_at=dt.datetime.now(dt.UTC),
            parts=tuple(self._parts),
            rows=self.rows,
            page_rejects=tuple(self._page_rejects),
            **fields,
        )
        self.area.write_manifest(self.directory, manifest)
        return manifest


def write_partitioned(
    area: LandingArea, landings: Sequence[ReadLanding], select: str, params: dict, *, name: str, frame=None
) -> dict[str, str]:
    """Write the rows of ``select`` into their reads' directories, a file per read, in one partitioned ``copy``:
    a column ``_owner`` (:attr:`ReadLanding.owner`) says whose each row is, ``frame`` is registered as ``frame``.
    All the reads are one run's, of one kind of owner. Returns each read's directory -> the file written in it."""
    ((run_directory, key),) = {landing.partition[:2] for landing in landings}  # one run's, one kind of owner
    sql = f"""
        copy (select * exclude (_owner), _owner as {key} from ({select}))
        to {sql_literal(area.duckdb_path(run_directory))} (
            format parquet, compression zstd, partition_by ({key}), filename_pattern '{name}-{{uuid}}',
            overwrite_or_ignore, return_files
        )
    """

    def write(con: duckdb.DuckDBPyConnection) -> list[str]:
        if frame is not None:
            con.register("frame", frame)
        try:
            ((_, files),) = con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}).fetchall()
        finally:
            if frame is not None:
                con.unregister("frame")
        return files

    directories = {area.duckdb_path(landing.directory): landing.directory for landing in landings}
    written: dict[str, str] = {}
    for file in on_parser(area, write):
        directory, file_name = file.rsplit("/", 1)
        # a file anywhere else, or a read's rows split over two files, is a bug: it fails before a manifest is written
        if directories.get(directory) is None or directories[directory] in written:
            raise RuntimeError(f"a partitioned write of {name} files wrote {file}, not one file per read")
        written[directories[directory]] = file_name
    return written
