"""Members as the fetching assets see them: who is listed, who the status gate made ready, status changes.

A member or user MX no longer has (``removed_at``, see ``retire.py``) is none of these: never read again.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class Scope:
    """What one run touches: these users' members and these members (an event, a refresh batch).

    Both empty: every member.
    """

    user_guids: Sequence[str] = ()
    member_guids: Sequence[str] = ()

    @property
    def params(self) -> dict:
        return {"users": list(self.user_guids), "members": list(self.member_guids)}


EVERYTHING = Scope()


def _in_scope(user_column: str, member_column: str) -> str:
    return (
        f"((len($users) = 0 and len($members) = 0) or {user_column} in (select unnest($users::varchar[]))"
        f" or {member_column} in (select unnest($members::varchar[])))"
    )


def users_in_scope(con: duckdb.DuckDBPyConnection, scope: Scope) -> list[str]:
    """The users whose members a run lists: the scope's users and the users of its members (retired ones left out)."""
    rows = con.execute(
        """
        select distinct unnest($users::varchar[]) as user_guid
        union
        select user_guid from raw.mx_members where guid in (select unnest($members::varchar[]))
        except
        select guid from raw.mx_users where removed_at is not null
        order by 1
        """,
        scope.params,
    ).fetchall()
    return [user_guid for (user_guid,) in rows]


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


def listed_members(con: duckdb.DuckDBPyConnection, scope: Scope = EVERYTHING) -> list[tuple[str, str]]:
    """(member guid, user guid) of every live member in ``raw.mx_members`` within ``scope``."""
    return con.execute(
        f"select guid, user_guid from raw.mx_members where removed_at is null and {_in_scope('user_guid', 'guid')}"
        " order by guid",
        scope.params,
    ).fetchall()


def members_to_fetch(con: duckdb.DuckDBPyConnection, scope: Scope = EVERYTHING) -> list[MemberToFetch]:
    """Members the status gate last routed ready (connected, no job running), with their last aggregation."""
    rows = con.execute(
        f"""
        select r.member_guid, r.user_guid, s.successfully_aggregated_at
        from ops.member_routes as r join raw.mx_member_status as s on s.guid = r.member_guid
        where r.route = 'ready' and s.removed_at is null and {_in_scope("r.user_guid", "r.member_guid")}
        order by r.member_guid
        """,
        scope.params,
    ).fetchall()
    return [MemberToFetch(*row) for row in rows]


def members_not_fetched(con: duckdb.DuckDBPyConnection, scope: Scope = EVERYTHING) -> list[MemberNotFetched]:
    """Every other routed member still live, with its route and status as the reason."""
    rows = con.execute(
        f"""
        select member_guid, user_guid, route || ' (' || coalesce(connection_status, 'no status') || ')'
        from ops.member_routes
        where route <> 'ready' and {_in_scope("user_guid", "member_guid")}
          and member_guid not in (select guid from raw.mx_members where removed_at is not null)
        order by member_guid
        """,
        scope.params,
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
    """Live members by their latest connection status."""
    rows = con.execute(
        "select coalesce(connection_status, 'null'), count(*) from raw.mx_member_status where removed_at is null"
        " group by 1 order by 1"
    ).fetchall()
    return dict(rows)
