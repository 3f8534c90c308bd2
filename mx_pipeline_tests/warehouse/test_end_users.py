from mx_pipeline.warehouse.end_users import add_end_users_from_csv, end_users_to_register, record_registrations


def test_csv_users_are_added_once_and_blank_ids_ignored(warehouse, tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("id,note\nu-1,first\n u-2 ,padded\n,blank\nu-1,again\n")
    with warehouse.connect() as con:
        assert add_end_users_from_csv(con, csv, source="users.csv") == 2
        assert add_end_users_from_csv(con, csv, source="users.csv") == 0
        assert sorted(end_users_to_register(con, set())) == ["u-1", "u-2"]


def test_a_user_whose_mx_guid_vanished_upstream_is_registered_again(warehouse, tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("id\nu-1\nu-2\n")
    with warehouse.connect() as con:
        add_end_users_from_csv(con, csv, source="users.csv")
        record_registrations(con, {"u-1": "USR-1", "u-2": "USR-2"}, now=None)
        assert end_users_to_register(con, {"USR-1", "USR-2"}) == []
        assert end_users_to_register(con, {"USR-2"}) == ["u-1"]
