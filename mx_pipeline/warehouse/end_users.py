"""``ops.end_users``: our own users, wherever we learned of them, and their MX user guid once registered."""

import datetime as dt
from collections.abc import Collection
from pathlib import Path

import duckdb


class EndUsersCsvError(ValueError):
    """The users CSV is missing or is not a comma-separated file whose header names an ``id`` column."""


def add_end_users_from_csv(con: duckdb.DuckDBPyConnection, csv_path: Path, *, source: str) -> int:
    """Add the ``id`` column of a CSV (comma-separated, header first) to ``ops.end_users``; returns how many were new.

    A path that is no file, or a file DuckDB cannot read as such, raises ``EndUsersCsvError`` saying which: a
    mistyped path would otherwise register nobody in a run that succeeds. The dialect is fixed, not sniffed: an
    id holding a ``;`` or ``|`` is an id, not a delimiter."""
    if not csv_path.is_file():
        raise EndUsersCsvError(f"the users CSV {csv_path} does not exist (or is not a file)")
    try:
        (added,) = con.execute(
            """
            insert into ops.end_users (id, source)
            select distinct trim(id), $source
            from read_csv($path, header = true, all_varchar = true, delim = ',', quote = '"', escape = '"')
            where nullif(trim(id), '') is not null
            on conflict (id) do nothing
            """,
            {"path": str(csv_path), "source": source},
        ).fetchone()
    except duckdb.Error as exc:
        said = str(exc).splitlines()[0]
        raise EndUsersCsvError(
            f"the users CSV {csv_path} is not comma-separated with an `id` column named in its header line ({said})"
        ) from None
    return int(added)


def end_users_to_register(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Ids of end users with no MX user guid yet. One whose MX user was deleted is retired, never re-created:
    only a new registration through the connect service brings it back."""
    rows = con.execute(
        "select id from ops.end_users where mx_user_guid is null and retired_at is null order by first_seen_at, id"
    ).fetchall()
    return [user_id for (user_id,) in rows]


def record_registrations(con: duckdb.DuckDBPyConnection, guids_by_id: dict[str, str], *, now: dt.datetime) -> None:
    """Store the MX user guid of each end user just registered."""
    if not guids_by_id:
        return
    con.executemany(
        "update ops.end_users set mx_user_guid = ?, registered_at = ?, changed_at = current_timestamp where id = ?",
        [(guid, now, user_id) for user_id, guid in guids_by_id.items()],
    )


def register_listed(con: duckdb.DuckDBPyConnection, *, now: dt.datetime) -> int:
    """Register each end user with no MX user yet as the live MX user MX lists by its id (the one with the least guid,
    should MX list two); returns how many."""
    (registered,) = con.execute(
        """
        update ops.end_users as e set mx_user_guid = u.guid, registered_at = $now, changed_at = current_timestamp
        from (select id, min(guid) as guid from raw.mx_users where removed_at is null group by id) as u
        where u.id = e.id and e.mx_user_guid is null and e.retired_at is null
        """,
        {"now": now},
    ).fetchone()
    return int(registered)


def mx_user_guids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every live MX user guid in ``raw.mx_users``: the users whose members are read."""
    rows = con.execute("select guid from raw.mx_users where removed_at is null order by guid").fetchall()
    return [guid for (guid,) in rows]


def end_user_ids(con: duckdb.DuckDBPyConnection, mx_user_guids: Collection[str]) -> dict[str, str]:
    """Our end user's id for each of these MX user guids we know one for (MX's ``id``, or our registration)."""
    rows = con.execute(
        """
        select guid, min(id) from (
            select guid, id from raw.mx_users where guid in (select unnest($guids::varchar[])) and id is not null
            union
            select mx_user_guid, id from ops.end_users where mx_user_guid in (select unnest($guids::varchar[]))
        ) as known (guid, id)
        group by guid order by guid
        """,
        {"guids": list(mx_user_guids)},
    ).fetchall()
    return dict(rows)


def strange_user_guids(con: duckdb.DuckDBPyConnection, mx_user_guids: Collection[str]) -> frozenset[str]:
    """Those of these MX user guids that neither MX's list of users nor a registration of ours ever gave us."""
    rows = con.execute(
        """
        select guid from unnest($guids::varchar[]) as t(guid)
        where guid not in (select guid from raw.mx_users)
          and guid not in (select mx_user_guid from ops.end_users where mx_user_guid is not null)
        """,
        {"guids": list(mx_user_guids)},
    ).fetchall()
    return frozenset(guid for (guid,) in rows)
