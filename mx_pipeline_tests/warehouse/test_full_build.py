"""A full build costs a pass over the rows: each payload parsed once, no keys of a change computed when every
row is built anyway, and the same tables whether built in full or after each sync."""

import datetime as dt
import json
from decimal import Decimal

import pytest
import sqlglot
from sqlglot import exp

from mx_pipeline.warehouse import Warehouse
from mx_pipeline.warehouse.models import DEFAULT_POLICY, _policy_params, _render, load_models, load_reference, run_model

TODAY = dt.datetime.now(dt.UTC).date()
MODELS = {m.name: m for m in load_models()}
VOLATILE = {"built_at", "hours_since_success"}  # member_health's clock columns: differ between any two builds


@pytest.fixture
def twins(tmp_path):
    """Two warehouses fed the same syncs: one built after each sync where it can be incrementally, one in full."""
    with Warehouse(tmp_path / "inc.duckdb").connect() as inc, Warehouse(tmp_path / "full.duckdb").connect() as ful:
        yield inc, ful


def txn(cons, guid, *, days_ago, amount="12.50", status="POSTED", account="ACT-1", description="Corner Deli",
        removed=False):  # fmt: skip
    date = TODAY - dt.timedelta(days=days_ago)
    payload = {"guid": guid, "description": description, "category": "Groceries", "top_level_category": "Food & Dining",
               "merchant_guid": "MCH-1", "currency_code": "USD", "transacted_at": f"{date}T15:04:05Z"}  # fmt: skip
    fetched = dt.datetime.now(dt.UTC)
    for con in cons:
        con.execute("delete from raw.mx_transactions where guid = ?", [guid])  # the table has no key to replace on
        con.execute(
            """
            insert into raw.mx_transactions (guid, member_guid, account_guid, user_guid, status, type,
                amount, date, updated_at, removed_at, payload, run_id, fetched_at, first_fetched_at, loaded_at)
            values (?, 'MBR-1', ?, 'USR-1', ?, 'DEBIT', ?, ?, ?, ?, ?, 'run', ?, ?, ?)
            """,
            [guid, account, status, amount, date, fetched, fetched if removed else None, json.dumps(payload), fetched,
             fetched, fetched],
        )  # fmt: skip


def build(inc, ful):
    for con in (inc, ful):
        load_reference(con)
    for model in MODELS.values():
        run_model(inc, model, run_id="inc")
        run_model(ful, model, run_id="full", full_refresh=True)


def table(con, name):
    columns = [c for (c,) in con.execute(f"select column_name from (describe {name})").fetchall()]
    kept = ", ".join(c for c in columns if c not in VOLATILE)
    return sorted(con.execute(f"select {kept} from {name}").fetchall(), key=repr)


def assert_same(inc, ful):
    for name in MODELS:
        assert table(inc, name) == table(ful, name), name


def counted(con):
    return con.execute(
        "select transaction_guid, amount, replaced_pending_guid from marts.fct_transactions order by 1"
    ).fetchall()


def test_built_in_full_or_after_each_sync_the_tables_are_the_same(twins):
    inc, ful = twins
    both = (inc, ful)
    txn(both, "TRN-P1", days_ago=4, status="PENDING")  # its posted twin comes in the next sync
    txn(both, "TRN-P2", days_ago=3, status="PENDING", amount="7.00", description="Fresh Basket")
    txn(both, "TRN-Q2a", days_ago=2, amount="7.00", description="Fresh Basket")  # two candidates: ambiguous
    txn(both, "TRN-Q2b", days_ago=2, amount="7.00", description="Fresh Basket")
    txn(both, "TRN-SAME1", days_ago=9, amount="3.25", description="Metro Transit")  # identical purchases
    txn(both, "TRN-SAME2", days_ago=9, amount="3.25", description="Metro Transit")
    txn(both, "TRN-OLD", days_ago=30, amount="40.00", account="ACT-2", description="Quickfuel", removed=True)
    txn(both, "TRN-NEW", days_ago=30, amount="40.00", account="ACT-2", description="Quickfuel")  # re-issued guid
    txn(both, "TRN-EXP", days_ago=20, status="PENDING", amount="9.99", account="ACT-2")  # MX deletes it soon
    build(inc, ful)
    assert_same(inc, ful)
    assert counted(ful) == [
        ("TRN-NEW", Decimal("-40.0000"), None),
        ("TRN-P1", Decimal("-12.5000"), None),
        ("TRN-P2", Decimal("-7.0000"), None),
        ("TRN-Q2a", Decimal("-7.0000"), None),
        ("TRN-Q2b", Decimal("-7.0000"), None),
        ("TRN-SAME1", Decimal("-3.2500"), None),
        ("TRN-SAME2", Decimal("-3.2500"), None),
    ]

    txn(both, "TRN-Q1", days_ago=3)  # P1's posted twin, under a new guid
    txn(both, "TRN-Q2b", days_ago=2, amount="7.00", description="Fresh Basket", removed=True)  # now unambiguous
    txn(both, "TRN-SAME2", days_ago=9, amount="3.25", description="Metro Transit")  # MX edits one twin
    build(inc, ful)
    assert MODELS["marts.fct_transactions"].materialized == "incremental"
    assert_same(inc, ful)
    assert counted(inc) == [
        ("TRN-NEW", Decimal("-40.0000"), None),
        ("TRN-Q1", Decimal("-12.5000"), "TRN-P1"),
        ("TRN-Q2a", Decimal("-7.0000"), "TRN-P2"),
        ("TRN-SAME1", Decimal("-3.2500"), None),
        ("TRN-SAME2", Decimal("-3.2500"), None),
    ]


def operators(node):
    yield node
    for child in node.get("children", []):
        yield from operators(child)


def test_a_full_build_of_fct_transactions_never_yields_more_rows_than_staging_holds(tmp_path):
    """No range join over the account's days on a full build: every row is built, so no change has keys to reach."""
    with Warehouse(tmp_path / "w.duckdb").connect() as con:
        for i in range(150):  # one account, 150 purchases in 10 days: every row is within 6 days of most others
            txn((con,), f"TRN-{i:03}", days_ago=1 + i % 10, amount=f"{i + 1}.00", description=f"Shop {i}")
        load_reference(con)
        for name in ("staging.stg_users", "staging.stg_transactions", "staging.stg_pending_matches"):
            run_model(con, MODELS[name], run_id="test")
        body = _render(MODELS["marts.fct_transactions"].body, since=None, params=_policy_params(DEFAULT_POLICY))
        profile = tmp_path / "profile.json"
        con.execute("pragma enable_profiling = 'json'")
        con.execute(f"pragma profiling_output = '{profile}'")
        con.execute(f"create table full_build as {body}")
        con.execute("pragma disable_profiling")
        (built,) = con.execute("select count(*) from full_build").fetchone()
    plan = json.loads(profile.read_text())
    widest = max(op.get("intermediate_rows", 0) for top in plan["operator"] for op in operators(top))
    assert (built, widest) == (150, 150)  # more than the reference tables' rows


def test_staging_parses_each_payload_once():
    """One JSON function reads the payload, into every field staging takes: a ``->>`` per field parses it per field."""
    body = _render(MODELS["staging.stg_transactions"].body, since=None, params=_policy_params(DEFAULT_POLICY))
    reads = [c.parent for c in sqlglot.parse_one(body, read="duckdb").find_all(exp.Column) if c.name == "payload"]
    assert [read.sql(dialect="duckdb").split("(")[0].lower() for read in reads] == ["json_transform"]
