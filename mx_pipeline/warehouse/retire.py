"""Retire, never delete: the one home for users, members and accounts MX no longer has.

MX deletes members (the user removes a bank in Connect, the product deletes it, MX replaces it under a new
guid), users and accounts. What MX no longer has keeps every row in ``raw`` for audit and gets ``removed_at``;
its live transactions get ``removed_at`` too, with ``loaded_at`` moved so the incremental models see them
leave. A retired member is routed ``terminal`` with the reason, loses any refresh claim and its open episode,
its last sync outcome becomes ``retired``, and it is never read, scheduled or counted again.
``ops.retirements`` says what was retired, when and why. A user the product offboards on purpose goes the
same way through :func:`offboard_user` (``mx-pipeline offboard-user USER_ID``).

Only a COMPLETE list proves absence (every page read, every record's guid known): a failed page, a 404 on
one member's read, or a record without a guid retires nothing. Absence is judged only for rows that were
there before the list was asked for, so a user registered while the list was being read is never retired.
Even a complete list can be wrong (a page shifts when another record is deleted while we read): whatever MX
lists again comes back with exactly what its retirement took (``reinstate_*``); an offboarded user never does.
Each retirement is several statements: callers run one step's retiring and reinstating in :func:`atomically`.
"""

import contextlib
import datetime as dt
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import duckdb

from mx_pipeline.lifecycle.routes import RETIRED, Route
from mx_pipeline.mx.errors import NotFound
from mx_pipeline.warehouse.connection import Warehouse
from mx_pipeline.warehouse.removal import mark_live, mark_removed
from mx_pipeline.warehouse.sync_state import read_again_next_run

MEMBER_REMOVED = RETIRED.reason
USER_REMOVED = "The user was deleted at MX; nothing of theirs is synced any more."
ACCOUNT_REMOVED = "MX no longer lists this account; no longer synced."
OFFBOARDED = "Offboarded by the product: deleted at MX and retired here."


@dataclass(frozen=True)
class WholeList:
    """A list MX returned whole: whose it is, when it began, and the run that read it."""

    owner: str  # the user (a member list) or the member (an account list)
    listed_from: dt.datetime
    run_id: str


LISTS_OF = {"raw.mx_members": "user_guid", "raw.mx_accounts": "member_guid"}  # what a list lists -> its owner


def absent_from_lists(
    con: duckdb.DuckDBPyConnection, table: str, lists: Collection[WholeList], listed: Collection[str]
) -> list[tuple[str, str]]:
    """(guid, run id of the list) of each live row of ``table`` (members or accounts) we had before its owner's list
    began that no list showed (``listed``: every guid the lists showed), in one statement however many lists."""
    if not lists:
        return []
    rows = con.execute(
        f"""
        select t.guid, o.run_id
        from {table} as t
        join (select unnest($owners::varchar[]) as owner, unnest($froms::timestamptz[]) as listed_from,
                unnest($runs::varchar[]) as run_id) as o
            on t.{LISTS_OF[table]} = o.owner
        where t.removed_at is null and t.fetched_at < o.listed_from
            and t.guid not in (select unnest($listed::varchar[]))
        order by o.run_id, t.guid
        """,
        {
            "owners": [w.owner for w in lists],
            "froms": [w.listed_from for w in lists],
            "runs": [w.run_id for w in lists],
            "listed": list(listed),
        },
    ).fetchall()
    return [(guid, run_id) for guid, run_id in rows]


def users_absent(con: duckdb.DuckDBPyConnection, listed: Collection[str], *, listed_from: dt.datetime) -> list[str]:
    """Users we had before ``listed_from`` (loaded, or registered as one of our end users) that a complete
    ``list_users`` lacks."""
    return _absent(
        con,
        """
        select guid from raw.mx_users where removed_at is null and fetched_at < $from
        union
        select mx_user_guid from ops.end_users
        where mx_user_guid is not null and retired_at is null and coalesce(registered_at, first_seen_at) < $from
        """,
        {"from": listed_from},
        listed,
    )


def retire_members(
    con: duckdb.DuckDBPyConnection, member_guids: Collection[str], *, reason: str, run_id: str, now: dt.datetime
) -> list[str]:
    """Retire these members (those not retired yet) with their accounts and live transactions; returns them."""
    retired = _retire_rows(con, "raw.mx_members", "guid", member_guids, now)
    if not retired:
        return []
    guids = [guid for guid, _ in retired]
    params = {"guids": guids, "now": now}
    con.execute(f"update raw.mx_member_status set removed_at = $now where {_IN} and removed_at is null", params)
    con.execute(
        "update raw.mx_accounts set removed_at = $now where member_guid in (select unnest($guids::varchar[]))"
        " and removed_at is null",
        params,
    )
    _retire_transactions("member_guid", guids, now, con)
    con.execute(
        """
        update ops.member_routes set route = $route, reason = $reason, connect_mode = null, routed_at = $now,
                                     run_id = $run
        where member_guid in (select unnest($guids::varchar[]))
        """,
        params | {"route": Route.TERMINAL.value, "reason": reason, "run": run_id},
    )
    con.execute(
        "delete from ops.refresh_claims where member_guid in (select unnest($guids::varchar[]))", {"guids": guids}
    )
    # A sync that failed on the 404 is not a failure to look into any more: the member is gone.
    con.execute(
        "update ops.member_sync set last_outcome = 'retired', last_reason = $reason"
        " where member_guid in (select unnest($guids::varchar[]))",
        {"guids": guids, "reason": reason},
    )
    con.execute(
        "update ops.notification_episodes set closed_at = $now"
        " where member_guid in (select unnest($guids::varchar[])) and closed_at is null",
        params,
    )
    _record(con, "member", [(guid, user_guid, guid) for guid, user_guid in retired], reason, run_id, now)
    return guids


def reinstate_members(con: duckdb.DuckDBPyConnection, listed: Collection[str], *, now: dt.datetime) -> list[str]:
    """Bring back retired members MX lists again: the list that retired them was wrong (MX never reuses a guid).

    Exactly what their retirement marked (same ``removed_at``) is live again; transactions get a new
    ``loaded_at`` so the marts count them again. Nothing else needs undoing: the status gate routes every
    live member afresh from its next status read (its terminal route, ``retired`` sync outcome and closed
    episode are rewritten then), and a member routed ready is fetched again.
    """
    retired = con.execute(
        f"select guid, removed_at from raw.mx_members where {_IN} and removed_at is not null order by guid",
        {"guids": list(listed)},
    ).fetchall()
    for guid, at in retired:
        _reinstate_member(con, guid, at, now)
    return [guid for guid, _ in retired]


def _reinstate_member(con, guid: str, at: dt.datetime, now: dt.datetime) -> None:
    params = {"guid": guid, "at": at}
    con.execute("update raw.mx_members set removed_at = null where guid = $guid", {"guid": guid})
    con.execute("update raw.mx_member_status set removed_at = null where guid = $guid and removed_at = $at", params)
    con.execute("update raw.mx_accounts set removed_at = null where member_guid = $guid and removed_at = $at", params)
    _reinstate_transactions("member_guid", guid, at, now, con)
    con.execute("delete from ops.retirements where kind = 'member' and guid = $guid", {"guid": guid})


def reinstate_users(con: duckdb.DuckDBPyConnection, listed: Collection[str], *, now: dt.datetime) -> list[str]:
    """Bring back retired users a complete ``list_users`` shows again (the list that retired them skipped them).

    The MX user and our end user mapped to it are live again, and so is every member retired WITH the user
    (same ``removed_at``; one retired on its own before stays retired until MX lists it again), as
    :func:`reinstate_members` does. A user the product offboarded stays offboarded, listed or not.
    """
    retired = con.execute(
        f"""
        select * from (
            select guid, removed_at from raw.mx_users where {_IN} and removed_at is not null
            union
            select mx_user_guid, retired_at from ops.end_users
            where mx_user_guid in (select unnest($guids::varchar[])) and retired_at is not null
        ) as retired (guid, retired_at)
        where guid not in (select guid from ops.retirements where kind = 'user' and reason = $offboarded)
        order by guid, retired_at
        """,
        {"guids": list(listed), "offboarded": OFFBOARDED},
    ).fetchall()
    for guid, at in retired:
        params = {"guid": guid, "at": at}
        con.execute(
            "update raw.mx_users set removed_at = null, loaded_at = current_timestamp"
            " where guid = $guid and removed_at = $at",
            params,
        )
        con.execute(
            "update ops.end_users set retired_at = null, changed_at = current_timestamp"
            " where mx_user_guid = $guid and retired_at = $at",
            params,
        )
        members = con.execute(
            "select guid from raw.mx_members where user_guid = $guid and removed_at = $at order by guid", params
        ).fetchall()
        for (member_guid,) in members:
            _reinstate_member(con, member_guid, at, now)
        con.execute("delete from ops.retirements where kind = 'user' and guid = $guid", {"guid": guid})
    return sorted({guid for guid, _ in retired})


def retire_users(
    con: duckdb.DuckDBPyConnection, user_guids: Collection[str], *, reason: str, run_id: str, now: dt.datetime
) -> list[str]:
    """Retire these users: the MX user, our end user mapped to it (never registered again by the ingest),
    every member of theirs, with accounts and transactions. Returns the users newly retired."""
    retired = [guid for guid, _ in _retire_rows(con, "raw.mx_users", "guid", user_guids, now)]
    params = {"guids": list(user_guids), "now": now}
    mapped = con.execute(
        "update ops.end_users set retired_at = $now, changed_at = current_timestamp"
        " where mx_user_guid in (select unnest($guids::varchar[]))"
        " and retired_at is null returning mx_user_guid",
        params,
    ).fetchall()
    retired = sorted(set(retired) | {guid for (guid,) in mapped})
    members = con.execute(
        "select guid from raw.mx_members where user_guid in (select unnest($guids::varchar[])) and removed_at is null",
        {"guids": list(user_guids)},
    ).fetchall()
    retire_members(con, [guid for (guid,) in members], reason=reason, run_id=run_id, now=now)
    _record(con, "user", [(guid, guid, None) for guid in retired], reason, run_id, now)
    return retired


def retire_accounts(
    con: duckdb.DuckDBPyConnection, account_guids: Collection[str], *, reason: str, run_id: str, now: dt.datetime
) -> list[str]:
    """Retire these accounts and their live transactions; returns the accounts newly retired."""
    retired = con.execute(
        f"update raw.mx_accounts set removed_at = $now where {_IN} and removed_at is null"
        " returning guid, user_guid, member_guid",
        {"guids": list(account_guids), "now": now},
    ).fetchall()
    _retire_transactions("account_guid", [guid for guid, _, _ in retired], now, con)
    _record(con, "account", retired, reason, run_id, now)
    # A list that drops an account may be wrong (a page shifted): the member's next run reads its accounts again
    # even if MX has not aggregated it since, so a wrongly retired account comes back without waiting for one.
    read_again_next_run(con, (member for _, _, member in retired))
    return [guid for guid, _, _ in retired]


def reinstate_accounts(con: duckdb.DuckDBPyConnection, listed: Collection[str], *, now: dt.datetime) -> list[str]:
    """Bring back retired accounts MX lists again, with the transactions retired with them (same ``removed_at``,
    new ``loaded_at``): the list that retired them was wrong."""
    retired = con.execute(
        f"select guid, removed_at from raw.mx_accounts where {_IN} and removed_at is not null order by guid",
        {"guids": list(listed)},
    ).fetchall()
    for guid, at in retired:
        con.execute("update raw.mx_accounts set removed_at = null where guid = ?", [guid])
        _reinstate_transactions("account_guid", guid, at, now, con)
        con.execute("delete from ops.retirements where kind = 'account' and guid = ?", [guid])
    return [guid for guid, _ in retired]


@contextlib.contextmanager
def atomically(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction around everything one step retires and reinstates: each retirement is several statements,
    and one left half done (a member retired, its accounts live) would never be finished, since retiring skips
    what is retired already. DuckDB has no nested transactions: the functions above open none themselves."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def offboard_user(
    warehouse: Warehouse, user_id: str, delete_mx_user: Callable[[str], None], *, run_id: str, now: dt.datetime
) -> list[str]:
    """The product offboards one of our end users on purpose: delete its MX user(s), then retire it here.

    ``delete_mx_user`` is the MX call (``MxClient.delete_user``); a user MX already deleted (404) is fine.
    The end user is never registered again by the ingest; a new registration through the connect service
    later maps it to a new MX user. Returns the MX user guids retired. Raises ``LookupError`` for an id we
    have never seen.
    """
    with warehouse.connect() as con:
        rows = con.execute(
            """
            select mx_user_guid from ops.end_users where id = $id and mx_user_guid is not null
            union
            select guid from raw.mx_users where id = $id and removed_at is null
            """,
            {"id": user_id},
        ).fetchall()
        (known,) = con.execute("select count(*) from ops.end_users where id = ?", [user_id]).fetchone()
    guids = sorted(guid for (guid,) in rows)
    if not guids and not known:
        raise LookupError(f"no end user {user_id!r} in ops.end_users or raw.mx_users")
    for guid in guids:  # MX first, outside the warehouse: nothing is held while MX answers
        with contextlib.suppress(NotFound):  # already deleted at MX
            delete_mx_user(guid)
    with warehouse.connect() as con, atomically(con):
        retire_users(con, guids, reason=OFFBOARDED, run_id=run_id, now=now)
        con.execute(
            "update ops.end_users set retired_at = ?, changed_at = current_timestamp"
            " where id = ? and retired_at is null",
            [now, user_id],
        )
        # Offboarded is final, even for a user a list had retired before: no later list brings it back.
        con.execute(
            f"update ops.retirements set reason = $reason, run_id = $run where kind = 'user' and {_IN}",
            {"guids": guids, "reason": OFFBOARDED, "run": run_id},
        )
    return guids


_IN = "guid in (select unnest($guids::varchar[]))"


def _absent(con, live_sql: str, params: dict, listed: Collection[str]) -> list[str]:
    rows = con.execute(
        f"select guid from ({live_sql}) as live (guid) where guid not in (select unnest($listed::varchar[]))"
        " order by guid",
        params | {"listed": list(listed)},
    ).fetchall()
    return [guid for (guid,) in rows]


def _retire_rows(con, table: str, key: str, guids: Collection[str], now: dt.datetime) -> list[tuple[str, str]]:
    owner = "user_guid" if table != "raw.mx_users" else "guid"
    return con.execute(
        f"update {table} set removed_at = $now where {key} in (select unnest($guids::varchar[]))"
        f" and removed_at is null returning {key}, {owner}",
        {"guids": list(guids), "now": now},
    ).fetchall()


def _retire_transactions(column: str, guids: list[str], now: dt.datetime, con) -> None:
    if guids:
        mark_removed(
            con, f"t.{column} in (select unnest($guids::varchar[])) and t.removed_at is null", {"guids": guids}, now=now
        )


def _reinstate_transactions(column: str, guid: str, at: dt.datetime, now: dt.datetime, con) -> None:
    """Transactions retired at ``at`` are live again, with a new ``loaded_at`` for the incremental models."""
    mark_live(con, f"t.{column} = $guid and t.removed_at = $at", {"guid": guid, "at": at}, now=now)


def _record(con, kind: str, rows: list[tuple], reason: str, run_id: str, now: dt.datetime) -> None:
    """One ``ops.retirements`` row per (guid, user guid, member guid) in ``rows``."""
    if rows:
        con.executemany(
            "insert or ignore into ops.retirements values (?, ?, ?, ?, ?, ?, ?)",
            [(kind, guid, user_guid, member_guid, reason, now, run_id) for guid, user_guid, member_guid in rows],
        )
