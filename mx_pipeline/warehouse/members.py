"""What the fresh status reads say about members: who may be fetched, who not, and status changes."""

import datetime as dt
from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class MemberToFetch:
    guid: str
    user_guid: str
    successfully_aggregated_at: dt.datetime | None


@dataclass(frozen=True)
class MemberNotFetched:
    guid: str
    user_guid: str
    reason: str


# Until the status routing table lands (issue 5): only a member MX reports CONNECTED with no job running
# has data worth reading; any other status or a running aggregation means what we would read is stale.
_FETCHABLE = "connection_status = 'CONNECTED' and not coalesce(is_being_aggregated, false)"


def listed_members(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(member guid, user guid) of every member in ``raw.mx_members``: the members whose status is read."""
    return con.execute("select guid, user_guid from raw.mx_members order by guid").fetchall()


def members_to_fetch(con: duckdb.DuckDBPyConnection) -> list[MemberToFetch]:
    """Members whose latest status read is CONNECTED and not aggregating."""
    rows = con.execute(
        f"select guid, user_guid, successfully_aggregated_at from raw.mx_member_status where {_FETCHABLE} order by guid"
    ).fetchall()
    return [MemberToFetch(*row) for row in rows]


def members_not_fetched(con: duckdb.DuckDBPyConnection) -> list[MemberNotFetched]:
    """Every other member, with the status that keeps it out."""
    rows = con.execute(
        f"""
        select guid, user_guid,
               case when coalesce(is_being_aggregated, false) then 'aggregating'
                    else 'connection_status ' || coalesce(connection_status, 'null') end
        from raw.mx_member_status where not ({_FETCHABLE}) order by guid
        """
    ).fetchall()
    return [MemberNotFetched(*row) for row in rows]


def record_status_changes(con: duckdb.DuckDBPyConnection, *, run_id: str) -> int:
    """Append to ``ops.member_status_history`` each member whose status differs from its last recorded one."""
    (added,) = con.execute(
        """
        insert into ops.member_status_history
            (member_guid, user_guid, connection_status, is_being_aggregated, checked_at, run_id)
        select s.guid, s.user_guid, s.connection_status, s.is_being_aggregated, s.fetched_at, $run
        from raw.mx_member_status as s
        where s.connection_status is distinct from (
            select h.connection_status from ops.member_status_history as h
            where h.member_guid = s.guid order by h.checked_at desc limit 1
        )
        """,
        {"run": run_id},
    ).fetchone()
    return int(added)


def status_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Members by their latest connection status."""
    rows = con.execute(
        "select coalesce(connection_status, 'null'), count(*) from raw.mx_member_status group by 1 order by 1"
    ).fetchall()
    return dict(rows)
