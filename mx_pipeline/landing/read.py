"""What every read's landing shares: its directory, its parts and counts, and how it ends (the guids it listed,
then its manifest, written last: from then on the loader may take it)."""

import datetime as dt

from mx_pipeline.landing.area import LISTED, LandingArea, Manifest
from mx_pipeline.landing.parser import on_parser
from mx_pipeline.warehouse.sql_literals import sql_literal

PART_ORDINAL = 10**10  # a part's rows come after every row of the parts before it


class ReadLanding:
    """One read landing in ``directory``: subclasses write its parts (:meth:`_next_part` names each)."""

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

    def _next_part(self) -> tuple[str, str, int]:
        """(name, path as DuckDB writes it, the ordinal its rows start after) of the part to write next."""
        name = f"part-{len(self._parts) + 1:05d}.parquet"
        return name, self.area.duckdb_path(f"{self.directory}/{name}"), len(self._parts) * PART_ORDINAL

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
        manifest = Manifest(
            run_id=self.run_id,
            member_guid=self.member_guid,
            user_guid=self.user_guid,
            outcome=outcome,
            finished_at=dt.datetime.now(dt.UTC),
            parts=tuple(self._parts),
            rows=self.rows,
            reason=reason,
            page_rejects=tuple(self._page_rejects),
            **how,
        )
        self.area.write_manifest(self.directory, manifest)
        return manifest
