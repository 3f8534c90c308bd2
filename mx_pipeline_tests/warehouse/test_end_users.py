import datetime as dt

import pytest

from mx_pipeline.warehouse.end_users import (
    EndUsersCsvError,
    add_end_users_from_csv,
    end_users_to_register,
    record_registrations,
)
from mx_pipeline.warehouse.retire import USER_REMOVED, retire_users, users_absent

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)


def test_csv_users_are_added_once_and_blank_ids_ignored(warehouse, tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("id,note\nu-1,first\n u-2 ,padded\n,blank\nu-1,again\n")
    with warehouse.connect() as con:
        assert add_end_users_from_csv(con, csv, source="users.csv") == 2
        assert add_end_users_from_csv(con, csv, source="users.csv") == 0
        assert sorted(end_users_to_register(con)) == ["u-1", "u-2"]


def test_ids_are_read_as_written_never_split_on_a_sniffed_delimiter(warehouse, tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text('id\nu;1\nu|2\n"u 3"\n')
    with warehouse.connect() as con:
        assert add_end_users_from_csv(con, csv, source="users.csv") == 3
        assert sorted(end_users_to_register(con)) == ["u 3", "u;1", "u|2"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (None, "does not exist"),
        ("", "is not comma-separated with an `id` column"),
        ("u-1\nu-2\n", "is not comma-separated with an `id` column"),
        ("id;email\nu-1;a@example.com\n", "is not comma-separated with an `id` column"),
    ],
    ids=["missing", "empty", "no header", "semicolons"],
)
def test_a_users_csv_that_cannot_be_read_says_why_and_adds_nobody(warehouse, tmp_path, text, says):
    csv = tmp_path / "users.csv"
    if text is not None:
        csv.write_text(text)
    with warehouse.connect() as con:
        with pytest.raises(EndUsersCsvError, match=says) as raised:
            add_end_users_from_csv(con, csv, source="users.csv")
        assert str(csv) in str(raised.value)
        assert con.execute("select count(*) from ops.end_users").fetchone() == (0,)


def test_a_user_whose_mx_guid_vanished_upstream_is_retired_not_registered_again(warehouse, tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("id\nu-1\nu-2\n")
    with warehouse.connect() as con:
        add_end_users_from_csv(con, csv, source="users.csv")
        record_registrations(con, {"u-1": "USR-1", "u-2": "USR-2"}, now=NOW - dt.timedelta(days=1))
        assert end_users_to_register(con) == []
        assert users_absent(con, {"USR-1", "USR-2"}, listed_from=NOW) == []
        gone = users_absent(con, {"USR-2"}, listed_from=NOW)
        assert gone == ["USR-1"]
        assert retire_users(con, gone, reason=USER_REMOVED, run_id="run-1", now=NOW) == ["USR-1"]
        assert end_users_to_register(con) == []
        assert con.execute("select id, retired_at from ops.end_users order by id").fetchall() == [
            ("u-1", NOW),
            ("u-2", None),
        ]


def test_a_user_registered_while_the_list_was_read_is_not_retired(warehouse, tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("id\nu-1\n")
    with warehouse.connect() as con:
        add_end_users_from_csv(con, csv, source="users.csv")
        record_registrations(con, {"u-1": "USR-1"}, now=NOW + dt.timedelta(seconds=1))
        assert users_absent(con, set(), listed_from=NOW) == []
