"""The refresh scheduler's claims and attempts in Postgres, where every worker on every machine reaches them.

The single-machine default keeps them in the warehouse (``warehouse/refresh_state.py``, ``WarehouseLedger``).
With a shared Postgres (``MX_PIPELINE_RATE_BUDGET_URL``, beside MX's shared limits) they live here instead: a run
claims, renews, records and releases without the DuckDB file, two claims of one member settle on its primary key
whichever process makes them, and the hour's aggregation budget counts every worker's attempts.

What the scheduler judges in DuckDB (routes, freshness, SLAs) meets these rows through :meth:`visible`: the claims
and the attempts the rules look back on, read in one statement each and held on the DuckDB connection as the
temporary tables ``refresh_claims`` and ``refresh_attempts``. ``ops.refresh_attempts`` in the warehouse stays what
analysts and ``member_health`` read: :meth:`mirror` copies what is new to it.
"""

import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict

import duckdb
import psycopg

from mx_pipeline.refresh.aggregate import Attempt
from mx_pipeline.warehouse.connection import registered

CLAIMS, ATTEMPTS = "refresh_claims", "refresh_attempts"
CLAIM_TYPES = {"member_guid": "VARCHAR", "user_guid": "VARCHAR", "trigger": "VARCHAR", "run_key": "VARCHAR",
               "claimed_at": "TIMESTAMPTZ"}  # fmt: skip
ATTEMPT_TYPES = {
    "member_guid": "VARCHAR", "user_guid": "VARCHAR", "trigger": "VARCHAR", "requested_at": "TIMESTAMPTZ",
    "finished_at": "TIMESTAMPTZ", "outcome": "VARCHAR", "connection_status": "VARCHAR", "api_calls": "INTEGER",
    "run_id": "VARCHAR", "detail": "VARCHAR",
}  # fmt: skip
# An attempt is recorded when its run's refresh step ends, at most a claim TTL after it was requested: the mirror
# looks back this far before the newest attempt it holds, so one recorded late is never missed.
MIRROR_OVERLAP = dt.timedelta(days=1)

_SCHEMA = f"""
create table if not exists {CLAIMS} (
    member_guid text primary key,
    user_guid   text not null,
    trigger     text not null,
    run_key     text not null,
    claimed_at  timestamptz not null
);
create index if not exists {CLAIMS}_run_key on {CLAIMS} (run_key);
create table if not exists {ATTEMPTS} (
    member_guid       text not null,
    user_guid         text not null,
    trigger           text not null,
    requested_at      timestamptz not null,
    finished_at       timestamptz not null,
    outcome           text not null,
    connection_status text,
    api_calls         integer not null,
    run_id            text not null,
    detail            text
);
create index if not exists {ATTEMPTS}_requested_at on {ATTEMPTS} (requested_at);
"""


_created: set[str] = set()  # the databases this process made the tables in: once each, not per tick or step


class SharedLedger:
    """Claims and attempts in the Postgres database at ``url``; every call is one short connection."""

    def __init__(self, url: str) -> None:
        self._url = url
        if url in _created:
            return
        with self._connect() as conn, conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (CLAIMS,))  # one creator at a time
            conn.execute(_SCHEMA)
        _created.add(url)

    def claim(self, members: Iterable[tuple[str, str]], *, trigger: str, run_key: str, now: dt.datetime) -> None:
        pairs = dict(sorted(dict(members).items()))  # every claim takes its rows in one order: never a deadlock
        if not pairs:
            return
        with self._connect() as conn:
            conn.execute(
                f"insert into {CLAIMS} select m, u, %s, %s, %s from unnest(%s::text[], %s::text[]) as v(m, u)"
                " order by m on conflict do nothing",
                (trigger, run_key, now, list(pairs), list(pairs.values())),
            )

    def release(self, *, run_key: str, triggers: Sequence[str] = ()) -> None:
        with self._connect() as conn:
            conn.execute(
                f"delete from {CLAIMS} where run_key = %s and (cardinality(%s::text[]) = 0 or trigger = any(%s))",
                (run_key, list(triggers), list(triggers)),
            )

    def renew(self, *, run_key: str, now: dt.datetime) -> None:
        with self._connect() as conn:
            conn.execute(f"update {CLAIMS} set claimed_at = %s where run_key = %s", (now, run_key))

    def expire(self, ttl: dt.timedelta, *, now: dt.datetime) -> int:
        with self._connect() as conn:
            return conn.execute(f"delete from {CLAIMS} where claimed_at < %s", (now - ttl,)).rowcount

    def record(self, attempts: Sequence[Attempt], *, trigger: str, run_id: str) -> None:
        if not attempts:
            return
        rows = [asdict(a) | {"trigger": trigger, "run_id": run_id} for a in attempts]
        with self._connect() as conn, conn.cursor() as cursor:
            cursor.executemany(
                f"insert into {ATTEMPTS} ({', '.join(ATTEMPT_TYPES)})"
                f" values ({', '.join(f'%({c})s' for c in ATTEMPT_TYPES)})",
                rows,
            )

    @contextmanager
    def visible(self, con: duckdb.DuckDBPyConnection, *, attempts_since: dt.datetime | None) -> Iterator[None]:
        """The claims, and the attempts requested after ``attempts_since`` (none when it is None), readable on
        ``con`` as ``refresh_claims`` and ``refresh_attempts`` inside the block. The attempts carry only what the
        rules read of them (member, time, outcome): a day of them at 100,000 members is a few MB."""
        since = attempts_since or dt.datetime.max.replace(tzinfo=dt.UTC)
        with self._connect() as conn:
            claims = _copied(conn, con, f"select * from {CLAIMS}", CLAIM_TYPES)
            attempts = _copied(
                conn, con, f"select member_guid, requested_at, outcome from {ATTEMPTS} where requested_at > %s",
                {c: ATTEMPT_TYPES[c] for c in ("member_guid", "requested_at", "outcome")}, (since,),
            )  # fmt: skip
        with _held(con, CLAIMS, claims), _held(con, ATTEMPTS, attempts):
            yield

    def mirror(self, con: duckdb.DuckDBPyConnection) -> int:
        """Copy the attempts ``ops.refresh_attempts`` lacks into it (on ``con``, the warehouse); returns how many."""
        ((newest,),) = con.execute("select max(requested_at) from ops.refresh_attempts").fetchall()
        since = newest - MIRROR_OVERLAP if newest else dt.datetime.min.replace(tzinfo=dt.UTC)
        with self._connect() as conn:
            shared = _copied(conn, con, f"select * from {ATTEMPTS} where requested_at > %s", ATTEMPT_TYPES, (since,))
        with registered(con, "shared_attempts", shared):
            ((copied,),) = con.execute(
                """
                insert into ops.refresh_attempts by name
                select * from shared_attempts as s
                where not exists (select 1 from ops.refresh_attempts as a
                                  where a.member_guid = s.member_guid and a.requested_at = s.requested_at
                                    and a.run_id = s.run_id)
                """
            ).fetchall()
        return copied

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._url, autocommit=True, options="-c timezone=UTC")


@contextmanager
def _held(con: duckdb.DuckDBPyConnection, name: str, rows: duckdb.DuckDBPyRelation) -> Iterator[None]:
    """``rows`` as the temporary table ``name`` inside the block: read once, however often the queries scan it."""
    with registered(con, f"_{name}_copied", rows):
        con.execute(f"create or replace temp table {name} as select * from _{name}_copied")
    try:
        yield
    finally:
        con.execute(f"drop table if exists temp.{name}")


def _copied(
    conn: psycopg.Connection, con: duckdb.DuckDBPyConnection, query: str, types: dict[str, str], params=()
) -> duckdb.DuckDBPyRelation:
    """``query``'s rows moved from Postgres to DuckDB as CSV (``COPY``): no Python object per row on the way."""
    with conn.cursor().copy(f"copy ({query}) to stdout (format csv, header)", params) as copy:
        data = b"".join(bytes(block) for block in copy)
    # Postgres writes NULL unquoted and an empty text as "": DuckDB must keep the difference.
    return con.read_csv(io.BytesIO(data), header=True, columns=types, allow_quoted_nulls=False)
