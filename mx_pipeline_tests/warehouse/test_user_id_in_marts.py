"""Analysts join on the product's user id: every mart about a user carries user_id beside MX's user_guid."""

import datetime as dt

import pytest

from mx_pipeline.warehouse.models import load_models, load_reference

from .test_models import build, txn

NOW = dt.datetime.now(dt.UTC)
MARTS = ("marts.fct_transactions", "marts.monthly_spend_by_category", "marts.dim_accounts", "marts.member_health")


@pytest.fixture
def con(warehouse):
    with warehouse.connect() as con:
        load_reference(con)
        con.execute(
            "insert into raw.mx_member_status (guid, user_guid, connection_status, payload, run_id, fetched_at)"
            " values ('MBR-1', 'USR-1', 'CONNECTED', '{}', 'r', ?)",
            [NOW],
        )
        con.execute(
            "insert into raw.mx_accounts (guid, member_guid, user_guid, type, balance, currency_code, payload, run_id,"
            " fetched_at) values ('ACT-1', 'MBR-1', 'USR-1', 'CHECKING', 10, 'USD', '{}', 'r', ?)",
            [NOW],
        )
        txn(con, "TRN-1")
        yield con


def user_ids(con) -> dict[str, set]:
    return {mart: set(con.execute(f"select user_guid, user_id from {mart}").fetchall()) for mart in MARTS}


def test_every_mart_carries_mx_users_id_as_user_id(con):
    con.execute("insert into raw.mx_users (guid, id, payload, run_id, fetched_at) values ('USR-1', 'u-1', '{}', 'r', ?)",
                [NOW])  # fmt: skip
    build(con)
    assert user_ids(con) == {mart: {("USR-1", "u-1")} for mart in MARTS}


def test_a_user_mx_lists_without_an_id_takes_it_from_our_registration(con):
    con.execute("insert into raw.mx_users (guid, id, payload, run_id, fetched_at) values ('USR-1', null, '{}', 'r', ?)",
                [NOW])  # fmt: skip
    con.execute("insert into ops.end_users (id, source, mx_user_guid, registered_at) values ('u-1', 'api', 'USR-1', ?)",
                [NOW])  # fmt: skip
    build(con)
    assert user_ids(con) == {mart: {("USR-1", "u-1")} for mart in MARTS}


def test_a_mapping_that_arrives_after_the_rows_reaches_them_on_the_next_incremental_run(con):
    build(con)
    assert user_ids(con)["marts.fct_transactions"] == {("USR-1", None)}
    con.execute("insert into ops.end_users (id, source, mx_user_guid, registered_at) values ('u-1', 'api', 'USR-1', ?)",
                [dt.datetime.now(dt.UTC)])  # fmt: skip
    results = build(con)
    assert results["marts.fct_transactions"].mode == "incremental"
    assert user_ids(con) == {mart: {("USR-1", "u-1")} for mart in MARTS}


def test_each_mart_documents_user_id():
    models = {m.name: m for m in load_models()}
    for mart in MARTS:
        assert "user id" in models[mart].column_comments["user_id"], mart
