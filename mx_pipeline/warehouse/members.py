"""Members as the fetching assets see them: who is listed, who the status gate made ready, status changes."""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb


# A run can be scoped to some users (an event, a refresh batch); an empty scope means every user.
def _in_scope(column: str) -> str:
    return f"(len($users) = 0 or {column} in (select unnest($users::varchar[])))"


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


def listed_members(con: duckdb.DuckDBPyConnection, user_guids: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(member guid, user guid) of every member in ``raw.mx_members`` (of ``user_guids`` only, when given)."""
    return con.execute(
        f"select guid, user_guid from raw.mx_members where {_in_scope('user_guid')} order by guid",
        {"users": list(user_guids)},
    ).fetchall()


def members_to_fetch(con: duckdb.DuckDBPyConnection, user_guids: Sequence[str] = ()) -> list[MemberToFetch]:
    """Members the status gate last routed ready (connected, no job running), with their last aggregation."""
    rows = con.execute(
        f"""
        select r.member_guid, r.user_guid, s.successfully_aggregated_at
        from ops.member_routes as r join raw.mx_member_status as s on s.guid = r.member_guid
        where r.route = 'ready' and {_in_scope("r.user_guid")}
        order by r.member_guid
        """,
        {"users": list(user_guids)},
    ).fetchall()
    return [MemberToFetch(*row) for row in rows]


def members_not_fetched(con: duckdb.DuckDBPyConnection, user_guids: Sequence[str] = ()) -> list[MemberNotFetched]:
    """Every other routed member, with its route and status as the reason."""
    rows = con.execute(
        f"""
        select member_guid, user_guid, route || ' (' || coalesce(connection_status, 'no status') || ')'
        from ops.member_routes where route <> 'ready' and {_in_scope("user_guid")}
        order by member_guid
        """,
        {"users": list(user_guids)},
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
