"""The lifecycle's tables: members' latest reads in, routes and notification episodes out.

``ops.member_routes`` holds each member's current route, rewritten by every status gate for the members of its
run's scope; the fetching assets read their members from it, so nothing is fetched that the gate did not call
ready. Reads and writes are set-based over the scope: one query in, one insert per table out.
"""

import datetime as dt
from collections.abc import Iterable

import duckdb

from mx_pipeline.lifecycle.episodes import Episode
from mx_pipeline.lifecycle.gate import MemberState, RoutedMember
from mx_pipeline.lifecycle.routes import RETIRED, Route
from mx_pipeline.warehouse.connection import registered
from mx_pipeline.warehouse.members import EVERYTHING, Scope

# The members of a scope, from their status reads: these users' and these members; both empty, every member.
_SCOPED_MEMBERS = """
    select guid from raw.mx_member_status
    where (len($users) = 0 and len($members) = 0)
       or user_guid in (select unnest($users::varchar[])) or guid in (select unnest($members::varchar[]))
"""


def member_states(con: duckdb.DuckDBPyConnection, scope: Scope = EVERYTHING) -> list[MemberState]:
    """The scope's members' latest status reads, with our user id and the institution when we know them, and why
    each was retired when MX no longer has it."""
    rows = con.execute(
        f"""
        select s.guid, s.user_guid, s.connection_status, s.is_being_aggregated,
               coalesce(u.id, e.id) as user_id, m.institution_code,
               case when coalesce(s.removed_at, m.removed_at) is not null
                    then coalesce(rt.reason, $retired) end as retired_reason
        from raw.mx_member_status as s
        left join raw.mx_members as m on m.guid = s.guid
        left join raw.mx_users as u on u.guid = s.user_guid
        left join ops.end_users as e on e.mx_user_guid = s.user_guid
        left join ops.retirements as rt on rt.kind = 'member' and rt.guid = s.guid
        where s.guid in ({_SCOPED_MEMBERS})
        order by s.guid
        """,
        {"retired": RETIRED.reason, **scope.params},
    ).fetchall()
    return [MemberState(*row) for row in rows]


def save_routes(con: duckdb.DuckDBPyConnection, routed: Iterable[RoutedMember], *, run_id: str, now: dt.datetime):
    """Replace each routed member's row in ``ops.member_routes``."""
    import pandas as pd  # inside runs only: the code server never loads pandas (test_definitions.py)

    frame = pd.DataFrame.from_records(
        [
            (
                r.member.member_guid,
                r.member.user_guid,
                r.member.connection_status,
                r.member.is_being_aggregated,
                r.route.value,
                r.rule.reason,
                r.rule.connect_mode.value if r.rule.connect_mode else None,
            )
            for r in routed
        ],
        columns=["member_guid", "user_guid", "connection_status", "is_being_aggregated", "route", "reason", "mode"],
    ).astype(object)
    if frame.empty:
        return
    with registered(con, "routed_members", frame):
        con.execute(
            """
            insert or replace into ops.member_routes
            select member_guid, user_guid, connection_status, cast(is_being_aggregated as boolean), route, reason,
                   mode, $now, $run
            from routed_members
            """,
            {"now": now, "run": run_id},
        )


def latest_episodes(con: duckdb.DuckDBPyConnection, scope: Scope = EVERYTHING) -> dict[str, Episode]:
    """Each of the scope's members' most recent episode, open or closed."""
    rows = con.execute(
        f"""
        select member_guid, number, opened_at, route, notified_at, closed_at
        from ops.notification_episodes
        where member_guid in ({_SCOPED_MEMBERS})
        qualify row_number() over (partition by member_guid order by number desc) = 1
        """,
        scope.params,
    ).fetchall()
    return {
        guid: Episode(guid, number, opened, Route(route), notified, closed)
        for guid, number, opened, route, notified, closed in rows
    }


def save_episodes(con: duckdb.DuckDBPyConnection, episodes: Iterable[Episode]) -> None:
    """Insert or replace these episodes, in one statement (row by row, 2,000 changed episodes took 15 s)."""
    import pandas as pd  # inside runs only: the code server never loads pandas (test_definitions.py)

    frame = pd.DataFrame.from_records(
        [(e.member_guid, e.number, e.opened_at, str(e.route), e.notified_at, e.closed_at) for e in episodes],
        columns=["member_guid", "number", "opened_at", "route", "notified_at", "closed_at"],
    ).astype(object)
    if frame.empty:
        return
    with registered(con, "changed_episodes", frame):
        con.execute(
            """
            insert or replace into ops.notification_episodes
                (member_guid, number, opened_at, route, notified_at, closed_at)
            select member_guid, cast(number as integer), cast(opened_at as timestamptz), route,
                   cast(notified_at as timestamptz), cast(closed_at as timestamptz)
            from changed_episodes
            """
        )


def closed_episodes(con: duckdb.DuckDBPyConnection, among: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Which of these episodes (member guid, number) are closed, and why: ``retired`` (MX no longer has the
    member), ``ended`` (its connection ended at MX) or ``recovered``. Their reconnect links close with them."""
    import pandas as pd  # inside runs only: the code server never loads pandas (test_definitions.py)

    among = list(among)
    if not among:
        return {}
    frame = pd.DataFrame.from_records(among, columns=["member_guid", "number"])
    with registered(con, "asked_episodes", frame):
        rows = con.execute(
            """
            select e.member_guid, e.number,
                   case when m.removed_at is not null or rt.guid is not null then 'retired'
                        when r.route = 'terminal' then 'ended'
                        else 'recovered' end
            from ops.notification_episodes as e
            join asked_episodes as a on a.member_guid = e.member_guid and a.number = e.number
            left join raw.mx_members as m on m.guid = e.member_guid
            left join ops.retirements as rt on rt.kind = 'member' and rt.guid = e.member_guid
            left join ops.member_routes as r on r.member_guid = e.member_guid
            where e.closed_at is not null
            """
        ).fetchall()
    return {(guid, int(number)): why for guid, number, why in rows}
