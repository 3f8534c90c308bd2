"""Members as the fetching assets see them: who is listed, who the status gate made ready, status changes.

A member or user MX no longer has (``removed_at``, see ``retire.py``) is none of these: never read again.

A ready member MX has not aggregated since our last complete sync is skipped as unchanged: its accounts and
transactions are not read again. MX changes a member's data when it aggregates it, and each successful
aggregation moves ``successfully_aggregated_at``; the one change MX makes without one is deleting a pending
transaction left unposted for 14 days, so a member holding a live pending row that old (dated at most
``PENDING_AHEAD_DAYS`` ahead of its making) is read all the same: the reconcile window settles it. A member is read
whatever MX says when its last complete sync is unknown (never synced, or a read of it failed since) and when the
data team asks for it by name (``read_unchanged``).
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from mx_pipeline.warehouse.sync_state import PENDING_AHEAD_DAYS


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
UNCHANGED = "unchanged since the last sync: MX has not aggregated"
MX_PENDING_FAILSAFE_DAYS = 14  # MX: "All PENDING transactions are deleted after 14 days as a failsafe"
# A ready member whose last complete sync saw the aggregation MX reports now (``r`` routes, ``s`` status).
_UNCHANGED = f"""coalesce(
    r.route = 'ready'
    and s.successfully_aggregated_at = (
        select synced_aggregated_at from ops.member_sync
        where member_guid = r.member_guid and last_outcome <> 'failed')
    and not exists (
        select 1 from raw.mx_transactions as t
        where t.member_guid = r.member_guid and t.status = 'PENDING' and t.removed_at is null
          and t.date <= cast(timezone('UTC', s.fetched_at) as date) - {MX_PENDING_FAILSAFE_DAYS - PENDING_AHEAD_DAYS}),
    false)"""


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


# Member guid -> (its entry in a member list, JSON; when that list began): statuses a run read with its lists.
ListedStatuses = dict[str, tuple[str, dt.datetime]]


def statuses_listed(con: duckdb.DuckDBPyConnection, member_guids: Sequence[str], *, run_id: str) -> ListedStatuses:
    """What run ``run_id`` read of these members in their users' member lists: member guid -> (the entry, JSON; when
    that list began). MX's member list carries the fields a status read would (``MemberStatus.LISTED``).

    A member counts when the run read its user's member list whole (``ops.user_sync.listed_at``; the member's row is
    then what the list said, rewritten or not), the run did not quarantine its record, and the run asked MX for no
    aggregation of it after (``ops.refresh_attempts``: mirror a shared ledger first). A status so taken is as old as
    its list: landed with that time, it never overwrites a status another run read from MX since.
    """
    rows = con.execute(
        """
        select m.guid, m.payload::varchar, u.listed_at
        from raw.mx_members as m
        join ops.user_sync as u on u.user_guid = m.user_guid
        where u.last_run_id = $run_id and u.last_outcome = 'listed' and u.listed_at is not null
          and m.removed_at is null and m.connection_status is not null
          and m.guid in (select unnest($members::varchar[]))
          and not exists (select 1 from ops.refresh_attempts as a where a.member_guid = m.guid and a.run_id = $run_id)
          and not exists (
              select 1 from ops.quarantine as q
              where q.run_id = $run_id and q.table_name = 'raw.mx_members' and q.record_guid = m.guid)
        """,
        {"run_id": run_id, "members": list(member_guids)},
    ).fetchall()
    return {guid: (entry, listed_at) for guid, entry, listed_at in rows}


def members_to_fetch(
    con: duckdb.DuckDBPyConnection, scope: Scope = EVERYTHING, *, read_unchanged: bool = False
) -> list[MemberToFetch]:
    """Members the status gate last routed ready (connected, no job running), with their last aggregation;
    without those MX has not aggregated since our last complete sync, unless ``read_unchanged``."""
    rows = con.execute(
        f"""
        select r.member_guid, r.user_guid, s.successfully_aggregated_at
        from ops.member_routes as r join raw.mx_member_status as s on s.guid = r.member_guid
        where r.route = 'ready' and s.removed_at is null and {_in_scope("r.user_guid", "r.member_guid")}
          and ($read_unchanged or not {_UNCHANGED})
        order by r.member_guid
        """,
        scope.params | {"read_unchanged": read_unchanged},
    ).fetchall()
    return [MemberToFetch(*row) for row in rows]


def members_not_fetched(
    con: duckdb.DuckDBPyConnection, scope: Scope = EVERYTHING, *, read_unchanged: bool = False
) -> list[MemberNotFetched]:
    """Every other routed member still live, with its route and status as the reason, or ``UNCHANGED``."""
    rows = con.execute(
        f"""
        select r.member_guid, r.user_guid,
               case when r.route = 'ready' then '{UNCHANGED}'
                    else r.route || ' (' || coalesce(r.connection_status, 'no status') || ')' end
        from ops.member_routes as r left join raw.mx_member_status as s on s.guid = r.member_guid
        where {_in_scope("r.user_guid", "r.member_guid")}
          and r.member_guid not in (select guid from raw.mx_members where removed_at is not null)
          and (r.route <> 'ready' or (s.removed_at is null and not $read_unchanged and {_UNCHANGED}))
        order by r.member_guid
        """,
        scope.params | {"read_unchanged": read_unchanged},
    ).fetchall()
    return [MemberNotFetched(*row) for row in rows]


def members_to_read(
    con: duckdb.DuckDBPyConnection, scope: Scope = EVERYTHING, *, read_unchanged: bool = False
) -> tuple[list[MemberToFetch], list[MemberNotFetched]]:
    """(members to read, the others in scope with the reason they are not)."""
    return (
        members_to_fetch(con, scope, read_unchanged=read_unchanged),
        members_not_fetched(con, scope, read_unchanged=read_unchanged),
    )


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
