"""Cost follows change: after a sequence of syncs, incremental models and the incrementally published analysts'
file hold exactly what a full build would; a publish that crashes leaves the old file whole and the next one right."""

import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from mx_pipeline.warehouse import Warehouse
from mx_pipeline.warehouse import publish as publishing
from mx_pipeline.warehouse.model_changes import replaced_rows_read
from mx_pipeline.warehouse.models import MODELS_DIR, load_models, load_reference, run_model
from mx_pipeline.warehouse.publish import publish

from .conftest import store_registration

TODAY = dt.datetime.now(dt.UTC).date()
MODELS = load_models()
KEEP_REPLACED = replaced_rows_read(MODELS)  # as the sql_models asset runs them
WRITTEN_NOW = "fetched_at = now(), loaded_at = now()"  # a row marked as the loader marks it: seen and loaded now
VOLATILE = {"built_at", "hours_since_success"}  # member_health's clock columns: differ between any two builds


@pytest.fixture
def twins(tmp_path):
    """Two warehouses fed the same syncs: one built incrementally after each, the other in full."""
    incremental, full = Warehouse(tmp_path / "incremental.duckdb"), Warehouse(tmp_path / "full.duckdb")
    with incremental.connect() as inc, full.connect() as ful:
        for con in (inc, ful):
            load_reference(con)
        yield inc, ful


def sync(cons, sql, params=()):
    """The same change to each warehouse, at the same instant (``now()`` is read once for both)."""
    sql = sql.replace("now()", f"'{dt.datetime.now(dt.UTC).isoformat()}'::timestamptz")
    for con in cons:
        con.execute(sql, list(params))


def txn(cons, guid, *, days_ago, amount="12.50", status="POSTED", account="ACT-1", member="MBR-1", user="USR-1",
        description="Bean There Coffee", category="Coffee Shops", top="Food & Dining", merchant="MCH-1",
        created_days_ago=None):  # fmt: skip
    date = TODAY - dt.timedelta(days=days_ago)
    payload = {"guid": guid, "description": description, "category": category, "top_level_category": top,
               "merchant_guid": merchant, "currency_code": "USD", "transacted_at": f"{date}T15:04:05Z"}  # fmt: skip
    if created_days_ago is not None:
        payload["created_at"] = f"{TODAY - dt.timedelta(days=created_days_ago)}T16:00:00Z"
    sync(cons, "delete from raw.mx_transactions where guid = ?", [guid])  # the table has no key to replace on
    sync(
        cons,
        """
        insert into raw.mx_transactions (guid, member_guid, account_guid, user_guid, status, type, amount,
            date, updated_at, removed_at, payload, run_id, fetched_at, first_fetched_at, loaded_at)
        values (?, ?, ?, ?, ?, 'DEBIT', ?, ?, now(), null, ?, 'run', now(), now(), now())
        """,
        [guid, member, account, user, status, amount, date, json.dumps(payload)],
    )


def build(inc, ful, keep=KEEP_REPLACED):
    """One model run on each: incremental where it can be, and full."""
    load_reference(inc)
    load_reference(ful)
    runs = {m.name: run_model(inc, m, run_id="inc", keep_replaced=keep.get(m.name, frozenset())) for m in MODELS}
    for m in MODELS:
        run_model(ful, m, run_id="full", full_refresh=True)
    return runs


def table(con, name, database=None):
    qualified = f"{database}.{name}" if database else name
    columns = [c for (c,) in con.execute(f"select column_name from (describe {qualified})").fetchall()]
    kept = ", ".join(c for c in columns if c not in VOLATILE)
    return sorted(con.execute(f"select {kept} from {qualified}").fetchall(), key=repr)


def assert_same(inc, ful):
    for m in MODELS:
        assert table(inc, m.name) == table(ful, m.name), m.name


def assert_published(con, path):
    con.execute(f"attach '{path}' as analysts (read_only)")
    try:
        for m in MODELS:
            if m.name.startswith("marts."):
                assert table(con, m.name, "analysts") == table(con, m.name), m.name
        (comment,) = con.execute(
            "select comment from duckdb_columns() where database_name = 'analysts' and table_name = 'fct_transactions'"
            " and column_name = 'amount'"
        ).fetchone()
        assert comment.startswith("Signed: debits (money out) negative")
    finally:
        con.execute("detach analysts")


def test_after_each_sync_incremental_models_and_the_published_file_equal_a_full_build(twins, tmp_path):
    inc, ful = twins
    both, analysts = (inc, ful), tmp_path / "analytics.duckdb"
    for i in range(12):  # two users, three accounts, a few months of history
        txn(both, f"TRN-{i:02}", days_ago=5 + 9 * i, account=f"ACT-{i % 3}", member=f"MBR-{i % 3}",
            user=f"USR-{i % 2}", description=f"Shop {i}")  # fmt: skip
    txn(both, "TRN-P", days_ago=3, status="PENDING", description="Corner Deli", merchant="MCH-2")
    txn(both, "TRN-MOVE", days_ago=TODAY.day + 2, description="Moving Shop")  # last month, for now
    build(inc, ful)
    assert_same(inc, ful)
    assert {how.how for how in publish(inc, analysts).values()} == {"whole"}
    assert_published(inc, analysts)

    # New rows; the pending's posted twin arrives under a new guid; MX moves a transaction into this month.
    txn(both, "TRN-NEW", days_ago=1, account="ACT-2", member="MBR-2", user="USR-0", description="Fresh Basket")
    txn(both, "TRN-Q", days_ago=2, description="Corner Deli", merchant="MCH-2")
    txn(both, "TRN-MOVE", days_ago=0, description="Moving Shop")
    runs = build(inc, ful)
    assert runs["marts.monthly_spend_by_category"].mode == "incremental"
    assert runs["staging.stg_pending_matches"].mode == "incremental"
    assert_same(inc, ful)
    assert ful.execute("select is_match from staging.stg_pending_matches").fetchall() == [(True,)]
    published = publish(inc, analysts)
    assert published["marts.fct_transactions"].how == "changes"
    assert published["marts.fct_transactions"].keys < 10  # the new rows and their neighbours, not the table
    assert published["marts.monthly_spend_by_category"].how == "changes"
    assert_published(inc, analysts)

    # A transaction removed at MX, a category override, a member deleted and re-linked, a merchant override.
    sync(
        both,
        f"update raw.mx_transactions set removed_at = now(), {WRITTEN_NOW} where guid = 'TRN-03'",
    )
    sync(both, "insert into ops.category_overrides (transaction_guid, category_id) values ('TRN-04', 'food.groceries')")
    sync(
        both,
        f"update raw.mx_transactions set removed_at = now(), {WRITTEN_NOW} where member_guid = 'MBR-1'",
    )
    build(inc, ful)
    assert_same(inc, ful)
    publish(inc, analysts)
    assert_published(inc, analysts)
    sync(both, f"update raw.mx_transactions set removed_at = null, {WRITTEN_NOW} where member_guid = 'MBR-1'"
               " and guid <> 'TRN-03'")  # fmt: skip
    sync(both, "update ops.category_overrides set category_id = 'food.restaurants', set_at = now()")
    sync(both, "insert into ops.merchant_category_overrides (merchant_guid, category_id) values ('MCH-2', 'shopping')")
    build(inc, ful)
    assert_same(inc, ful)
    publish(inc, analysts)
    assert_published(inc, analysts)
    (kept,) = inc.execute("select count(distinct changed_at) from ops.model_changes").fetchone()
    assert kept <= len(MODELS)  # pruned once read: at most each model's last run is kept


def test_an_increment_keeps_the_rows_it_replaced_only_for_a_model_that_reads_them(twins):
    inc, ful = twins
    both = (inc, ful)
    txn(both, "TRN-1", days_ago=3)
    txn(both, "TRN-2", days_ago=4)
    build(inc, ful)
    sync(
        both,
        f"update raw.mx_transactions set removed_at = now(), {WRITTEN_NOW} where guid = 'TRN-1'",
    )
    build(inc, ful)
    logged = {model for (model,) in inc.execute("select model from ops.model_changes where key = 'TRN-1'").fetchall()}
    assert {"staging.stg_transactions", "marts.fct_transactions"} <= logged  # every change's key is logged
    # monthly_spend_by_category re-sums the users' months and categories fct_transactions' replaced rows were in: their
    # users, dates and categories are kept, beside their key, and nothing else
    assert inc.execute("select * from changes.marts__fct_transactions where transaction_guid = 'TRN-1'").fetchall() == [
        ("TRN-1", "USR-1", TODAY - dt.timedelta(days=3), "food.coffee", AnyTime())
    ]
    assert columns_of(inc, "changes.marts__fct_transactions") == [
        "transaction_guid", "user_guid", "transaction_date", "category_id", "changed_at"
    ]  # fmt: skip
    # stg_pending_matches re-matches around where a row was: staging keeps its replaced rows' accounts and dates
    assert columns_of(inc, "changes.staging__stg_transactions") == [
        "transaction_guid", "account_guid", "transaction_date", "changed_at"
    ]  # fmt: skip
    assert_same(inc, ful)


def monthly_keys_replaced(con):
    """The (user, month, category) keys monthly spend's last run replaced."""
    return sorted(
        (key["user_guid"], key["category_id"])
        for (key,) in con.execute(
            "select key::json from ops.model_changes where model = 'marts.monthly_spend_by_category'"
            " and changed_at = (select max(started_at) from ops.model_runs where model = ?)",
            ["marts.monthly_spend_by_category"],
        ).fetchall()
        for key in [json.loads(key)]
    )


def test_monthly_spend_re_sums_only_the_categories_a_change_is_in(twins):
    inc, ful = twins
    txn(twins, "TRN-C", days_ago=0, amount="4.00")
    txn(twins, "TRN-G", days_ago=0, amount="60.00", description="Fresh Basket", category="Groceries", merchant="MCH-2")
    build(inc, ful)
    txn(twins, "TRN-C2", days_ago=0, amount="5.00")  # another coffee, the same month
    runs = build(inc, ful)
    assert runs["marts.monthly_spend_by_category"].mode == "incremental"
    assert monthly_keys_replaced(inc) == [("USR-1", "food.coffee")]  # groceries are not summed again
    assert inc.execute(
        "select category_id, spend, transactions from marts.monthly_spend_by_category order by 1"
    ).fetchall() == [("food.coffee", Decimal("9.00"), 2), ("food.groceries", Decimal("60.00"), 1)]
    assert_same(inc, ful)


def test_a_transaction_moved_to_another_category_leaves_its_old_category_summed_again(twins):
    inc, ful = twins
    txn(twins, "TRN-C", days_ago=0, amount="4.00")
    txn(twins, "TRN-G", days_ago=0, amount="60.00", description="Fresh Basket", category="Groceries", merchant="MCH-2")
    build(inc, ful)
    sync(twins, "insert into ops.category_overrides (transaction_guid, category_id) values ('TRN-C', 'food.groceries')")
    runs = build(inc, ful)
    assert runs["marts.monthly_spend_by_category"].mode == "incremental"
    assert monthly_keys_replaced(inc) == [("USR-1", "food.coffee"), ("USR-1", "food.groceries")]
    # coffee has no transaction left that month: its row goes
    assert inc.execute(
        "select category_id, spend, transactions from marts.monthly_spend_by_category order by 1"
    ).fetchall() == [("food.groceries", Decimal("64.00"), 2)]
    assert_same(inc, ful)


def test_when_a_reader_missed_kept_rows_of_other_columns_it_rebuilds_in_full_once(twins):
    # Kept rows with other columns than the readers now read (whole rows, as kept before the readers' columns were
    # known, or a reader's SQL edited) are kept anew from then on. A reader that last read before a run whose rows
    # went with the old table rebuilds in full once; one that read every run's rows stays incremental.
    inc, ful = twins
    whole_rows = KEEP_REPLACED | {"marts.fct_transactions": frozenset({"*"})}
    txn(twins, "TRN-1", days_ago=3)
    build(inc, ful, keep=whole_rows)
    txn(twins, "TRN-2", days_ago=40, amount="7.00")
    build(inc, ful, keep=whole_rows)
    assert "amount" in columns_of(inc, "changes.marts__fct_transactions")
    txn(twins, "TRN-3", days_ago=5, amount="3.00")
    assert build(inc, ful)["marts.monthly_spend_by_category"].mode == "incremental"  # it read TRN-2's run
    assert columns_of(inc, "changes.marts__fct_transactions") == [
        "transaction_guid", "user_guid", "transaction_date", "category_id", "changed_at"
    ]  # fmt: skip
    assert_same(inc, ful)

    txn(twins, "TRN-4", days_ago=6, amount="4.00")
    for model in MODELS:  # a run without monthly spend, whose fct_transactions keeps whole rows
        if model.name != "marts.monthly_spend_by_category":
            run_model(inc, model, run_id="subset", keep_replaced=whole_rows.get(model.name, frozenset()))
    assert build(inc, ful)["marts.monthly_spend_by_category"].mode == "full"  # TRN-4's kept row went
    assert_same(inc, ful)
    txn(twins, "TRN-5", days_ago=7, amount="5.00")
    assert build(inc, ful)["marts.monthly_spend_by_category"].mode == "incremental"
    assert_same(inc, ful)


class AnyTime:
    def __eq__(self, other):
        return isinstance(other, dt.datetime)


def columns_of(con, table):
    schema, name = table.split(".")
    found = con.execute(
        "select column_name from duckdb_columns() where schema_name = ? and table_name = ? order by column_index",
        [schema, name],
    ).fetchall()
    return [column for (column,) in found]


def test_a_run_of_the_marts_alone_between_a_load_and_the_next_whole_run_loses_no_transaction(twins):
    """Staging hands on raw's loaded_at: a row loaded before a marts-only run (a subset materialized in the UI, a
    failed step re-executed) is staged only by the next whole run, after the marts' last start."""
    inc, ful = twins
    txn(twins, "TRN-1", days_ago=3)
    build(inc, ful)
    txn(twins, "TRN-2", days_ago=2, amount="40.00")
    for model in MODELS:
        if model.name.startswith("marts."):
            run_model(inc, model, run_id="marts-only", keep_replaced=KEEP_REPLACED.get(model.name, frozenset()))
    build(inc, ful)
    counted = inc.execute("select transaction_guid from marts.fct_transactions order by 1").fetchall()
    assert counted == [("TRN-1",), ("TRN-2",)]
    assert_same(inc, ful)


def _lost_before_loaded_at(warehouse, upgraded_to: str):
    """A warehouse whose marts lost a transaction to the race before 0025 (read before a model run, loaded after
    it), with the migrations after ``upgraded_to`` still to apply."""
    with warehouse.connect() as con:
        txn((con,), "TRN-1", days_ago=3)
        read_at = dt.datetime.now(dt.UTC)
        run_all(con, run_id="before-0025")
        txn((con,), "TRN-LOST", days_ago=2, amount="40.00")
        con.execute("update raw.mx_transactions set fetched_at = ?, loaded_at = ? where guid = 'TRN-LOST'",
                    [read_at, read_at])  # fmt: skip
        run_all(con, run_id="lost-it")
        assert counted(con) == [("TRN-1",)]
        con.execute("delete from ops.schema_migrations where version > ?", [upgraded_to])


def counted(con):
    return con.execute("select transaction_guid from marts.fct_transactions order by 1").fetchall()


@pytest.mark.parametrize("upgraded_to", ["0024", "0026"], ids=["before 0025", "at 0025"])
def test_a_transaction_lost_before_loaded_at_is_counted_after_the_upgrade(tmp_path, upgraded_to):
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    _lost_before_loaded_at(warehouse, upgraded_to)
    with warehouse.connect() as con:  # the upgrade
        run_all(con, run_id="after-the-upgrade")
        assert counted(con) == [("TRN-1",), ("TRN-LOST",)]


def test_between_the_upgrade_and_the_next_whole_run_the_marts_build_and_publish_as_before(tmp_path):
    """0027 drops nothing: a run of the marts alone builds, and publishes every mart."""
    warehouse, analysts = Warehouse(tmp_path / "warehouse.duckdb"), tmp_path / "analytics.duckdb"
    _lost_before_loaded_at(warehouse, "0026")
    with warehouse.connect() as con:  # the upgrade, on whatever connects first, then a run of the marts alone
        publish(con, analysts)
        run_all(con, [m for m in MODELS if m.name.startswith("marts.")], run_id="marts-only")
        publish(con, analysts)
        with duckdb.connect(str(analysts), read_only=True) as published:
            assert counted(published) == [("TRN-1",)]
            assert published.execute("select count(*) from marts.monthly_spend_by_category").fetchall() == [(1,)]
        run_all(con, run_id="whole")
        publish(con, analysts)
    with duckdb.connect(str(analysts), read_only=True) as published:
        assert counted(published) == [("TRN-1",), ("TRN-LOST",)]


def test_a_model_reading_one_rebuilt_in_full_follows_in_full(twins):
    """Staging rebuilt in full to repair it (a full refresh of it alone): the models reading it by its rows' times
    could not tell what changed, so they follow in full, whatever ran between."""
    inc, ful = twins
    txn(twins, "TRN-1", days_ago=3)
    build(inc, ful)
    inc.execute("delete from staging.stg_transactions")  # broken somehow
    staging = next(m for m in MODELS if m.name == "staging.stg_transactions")
    run_model(inc, staging, run_id="repair", full_refresh=True)
    runs = build(inc, ful)
    assert {name: runs[name].mode for name in ("staging.stg_pending_matches", "marts.fct_transactions")} == {
        "staging.stg_pending_matches": "full",
        "marts.fct_transactions": "full",
    }
    assert_same(inc, ful)
    assert build(inc, ful)["marts.fct_transactions"].mode == "incremental"


def test_a_pending_match_made_undone_and_made_again_recomputes_its_two_sides_not_the_account(twins):
    """fct_transactions learns which pending matches changed from stg_pending_matches' change log: a posted twin
    reaches its pending, not every row of the account within 6 days of it."""
    inc, ful = twins
    for i in range(10):  # the account's other purchases around the pending
        txn(twins, f"TRN-{i}", days_ago=i % 7, amount=f"{20 + i}.00", description=f"Shop {i}")
    txn(twins, "TRN-P", days_ago=3, amount="8.00", status="PENDING", description="Corner Deli", merchant="MCH-2")
    build(inc, ful)

    txn(twins, "TRN-Q", days_ago=2, amount="8.00", description="Corner Deli", merchant="MCH-2")  # its posted twin
    runs = build(inc, ful)
    assert (runs["marts.fct_transactions"].mode, runs["marts.fct_transactions"].recomputed) == ("incremental", 2)
    assert_same(inc, ful)
    assert inc.execute("select replaced_pending_guid from marts.fct_transactions where transaction_guid = 'TRN-Q'"
                       ).fetchall() == [("TRN-P",)]  # fmt: skip

    txn(twins, "TRN-R", days_ago=1, amount="8.00", description="Corner Deli", merchant="MCH-2")  # now ambiguous
    runs = build(inc, ful)
    assert (runs["marts.fct_transactions"].mode, runs["marts.fct_transactions"].recomputed) == ("incremental", 3)
    assert_same(inc, ful)
    assert inc.execute("select count(*) from marts.fct_transactions where transaction_guid = 'TRN-P'").fetchall() == [
        (1,)
    ]  # counted again, until one candidate is left

    sync(twins, f"update raw.mx_transactions set removed_at = now(), {WRITTEN_NOW} where guid = 'TRN-R'")
    assert build(inc, ful)["marts.fct_transactions"].mode == "incremental"
    assert_same(inc, ful)
    assert inc.execute("select count(*) from marts.fct_transactions where transaction_guid = 'TRN-P'").fetchall() == [
        (0,)
    ]


@pytest.mark.parametrize(
    ("moved", "status", "days_ago"),
    [("TRN-P", "PENDING", 1), ("TRN-Q", "POSTED", 30)],
    ids=["the pending", "the posted"],
)
def test_a_twin_moved_to_another_day_is_unmatched_by_an_increment_too(twins, moved, status, days_ago):
    """MX moves one of a matched pair days away: the other stays where they matched, and both count."""
    inc, ful = twins
    txn(twins, "TRN-P", days_ago=10, status="PENDING", description="Corner Deli")
    txn(twins, "TRN-Q", days_ago=9, description="Corner Deli")
    build(inc, ful)
    assert inc.execute("select is_match from staging.stg_pending_matches").fetchall() == [(True,)]
    txn(twins, moved, days_ago=days_ago, status=status, description="Corner Deli")
    runs = build(inc, ful)
    assert {runs[name].mode for name in ("staging.stg_pending_matches", "marts.fct_transactions")} == {"incremental"}
    assert_same(inc, ful)
    assert counted(inc) == [("TRN-P",), ("TRN-Q",)]


def test_a_user_id_that_moves_to_another_mx_user_leaves_the_old_users_rows_too(twins):
    """The guid an id left keeps a row in stg_users (ops.end_users_left), so its rows lose the id incrementally too."""
    inc, ful = twins
    at = dt.datetime.now(dt.UTC)
    txn(twins, "TRN-1", days_ago=3, user="USR-1")
    store_registration(twins, "u-1", "USR-1", at)
    build(inc, ful)
    assert inc.execute("select user_id from marts.fct_transactions").fetchall() == [("u-1",)]
    store_registration(twins, "u-1", "USR-2", at + dt.timedelta(seconds=1))  # u-1 signed up anew: another MX user
    assert build(inc, ful)["marts.fct_transactions"].mode == "incremental"
    for mart in (
        m for m in MODELS if m.name.startswith("marts.")
    ):  # stg_users' mapped_at is each warehouse's own clock
        assert table(inc, mart.name) == table(ful, mart.name), mart.name  # TRN-1: full None, incremental u-1


def test_a_run_that_keeps_none_of_the_rows_it_replaced_makes_its_readers_rebuild(twins):
    """A run of staging alone whose keep map names no reader of stg_pending_matches (run_all of a subset computes it
    from the subset; run_model's keep_replaced may be anything) keeps none of the matches it replaced: its readers
    that missed them rebuild in full, and the pending whose match went counts again."""
    inc, ful = twins
    txn(twins, "TRN-P", days_ago=10, status="PENDING", description="Corner Deli")
    txn(twins, "TRN-Q", days_ago=9, description="Corner Deli")
    build(inc, ful)
    assert counted(inc) == [("TRN-Q",)]
    sync(twins, f"update raw.mx_transactions set removed_at = now(), {WRITTEN_NOW} where guid = 'TRN-Q'")
    run_all(
        inc, [m for m in MODELS if m.name.startswith("staging.")], run_id="staging-alone"
    )  # keeps stg_transactions' rows for pm, none of pm's
    build(inc, ful)
    assert_same(inc, ful)  # full: TRN-P counts; incremental: hidden still


def run_all(con, models=MODELS, run_id="run", **options):
    """One sql_models step on one warehouse: every model, keeping what their readers read of the rows they replace."""
    load_reference(con)
    keep = replaced_rows_read(models)
    return {m.name: run_model(con, m, run_id=run_id, keep_replaced=keep.get(m.name, frozenset()), **options)
            for m in models}  # fmt: skip


READS_REPLACED_ROWS = "    from changes.marts__fct_transactions\n    where changed_at > __since__\n)"


@pytest.mark.parametrize(
    "narrowed",
    [
        "    group by all\n    having bool_or(category_kind = 'expense')\n)",
        "    qualify bool_or(category_kind = 'expense') over (partition by user_guid)\n)",
    ],
    ids=["having", "qualify"],
)
def test_a_reader_that_names_a_replaced_column_only_in_having_or_qualify_builds_and_sums_right(tmp_path, narrowed):
    """A model author narrows monthly spend's months to those an expense left: the kept rows must hold its kind."""
    root = tmp_path / "dbt_like_sql"
    shutil.copytree(MODELS_DIR, root)
    spend = root / "marts" / "monthly_spend_by_category.sql"
    assert READS_REPLACED_ROWS in spend.read_text()
    spend.write_text(spend.read_text().replace(READS_REPLACED_ROWS, READS_REPLACED_ROWS[:-1] + narrowed))
    models = load_models(root)
    with Warehouse(tmp_path / "warehouse.duckdb").connect() as con:
        txn((con,), "TRN-1", days_ago=3)
        run_all(con, models, run_id="first")
        txn((con,), "TRN-1", days_ago=3, amount="20.00")
        run_all(con, models, run_id="second")
        assert con.execute("select spend from marts.monthly_spend_by_category").fetchall() == [(20,)]


def test_a_publish_that_crashes_leaves_the_old_file_whole_and_the_next_one_right(twins, tmp_path, monkeypatch):
    inc, ful = twins
    analysts = tmp_path / "analytics.duckdb"
    for i in range(6):
        txn((inc,), f"TRN-{i}", days_ago=2 + 20 * i, description=f"Shop {i}")
    build(inc, ful)
    publish(inc, analysts)
    before = table(inc, "marts.fct_transactions")
    txn((inc,), "TRN-NEW", days_ago=1, description="Fresh Basket")
    build(inc, ful)

    def crash(con, name, *args):
        if name == "marts.monthly_spend_by_category":  # fct_transactions is already applied to the copy
            raise RuntimeError("killed mid-publish")
        return bring_up_to_date(con, name, *args)

    bring_up_to_date = publishing._bring_up_to_date
    monkeypatch.setattr(publishing, "_bring_up_to_date", crash)
    with pytest.raises(RuntimeError, match="killed mid-publish"):
        publish(inc, analysts)
    with duckdb.connect(str(analysts), read_only=True) as old:
        assert table(old, "marts.fct_transactions") == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".analytics")] == []  # no building file, no log
    monkeypatch.undo()
    killed = tmp_path / ".analytics.duckdb.99999.building"  # a publish killed outright leaves its file
    killed.write_bytes(b"half a file")
    assert publish(inc, analysts)["marts.fct_transactions"].how == "changes"
    assert not killed.exists()
    assert_published(inc, analysts)


def test_a_publish_killed_outright_leaves_nothing_that_trips_the_next_one(twins, tmp_path):
    # Killed mid-build, a publish leaves its file and DuckDB's write-ahead log beside it. A later publish that
    # gets the same process id (a restarted container runs the same processes) must not replay that log.
    inc, ful = twins
    analysts = tmp_path / "analytics.duckdb"
    txn((inc,), "TRN-1", days_ago=2)
    build(inc, ful)
    publish(inc, analysts)
    killed = tmp_path / f".analytics.duckdb.{os.getpid()}.building"
    subprocess.run([sys.executable, "-c", KILLED_WHILE_BUILDING, str(killed)], check=False)
    assert Path(f"{killed}.wal").exists()
    txn((inc,), "TRN-2", days_ago=1)
    build(inc, ful)
    assert publish(inc, analysts)["marts.fct_transactions"].how == "changes"
    assert_published(inc, analysts)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".analytics")] == []


KILLED_WHILE_BUILDING = """
import duckdb, os, signal, sys
con = duckdb.connect()
con.execute("set checkpoint_threshold = '1GB'")  # its last writes in the log only, as mid-build
con.execute(f"attach '{sys.argv[1]}' as published")
con.execute("create table published.t as select 1 as x")
con.execute("checkpoint published")
con.execute("insert into published.t values (2)")
os.kill(os.getpid(), signal.SIGKILL)
"""


def refused(*args):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def stops_short(source, destination, count, copy_file_range=os.copy_file_range):
    """The first 4 KiB, then nothing more (a file system that copies part of a file and stops)."""
    return copy_file_range(source, destination, min(count, 4096)) if os.lseek(source, 0, os.SEEK_CUR) == 0 else 0


@pytest.mark.parametrize("copy_file_range", [refused, stops_short, None], ids=["refused", "stops short", "missing"])
def test_a_publish_starts_from_a_whole_copy_whatever_the_kernel_copies(twins, tmp_path, monkeypatch, copy_file_range):
    inc, ful = twins
    analysts = tmp_path / "analytics.duckdb"
    txn((inc,), "TRN-1", days_ago=2)
    build(inc, ful)
    publish(inc, analysts)
    if copy_file_range is None:
        monkeypatch.delattr(publishing.os, "copy_file_range")
    else:
        monkeypatch.setattr(publishing.os, "copy_file_range", copy_file_range)
    txn((inc,), "TRN-2", days_ago=1)
    build(inc, ful)
    assert publish(inc, analysts)["marts.fct_transactions"].how == "changes"
    assert_published(inc, analysts)


def test_a_published_file_of_unknown_provenance_is_republished_whole(twins, tmp_path):
    inc, ful = twins
    analysts = tmp_path / "analytics.duckdb"
    txn((inc,), "TRN-1", days_ago=2)
    build(inc, ful)
    with duckdb.connect(str(analysts)) as stranger:  # e.g. written by an older version, or by hand
        stranger.execute("create schema marts; create table marts.fct_transactions as select 1 as nonsense")
    assert publish(inc, analysts)["marts.fct_transactions"].how == "whole"
    assert_published(inc, analysts)
    txn((inc,), "TRN-2", days_ago=1)
    assert build(inc, ful)["marts.fct_transactions"].mode == "incremental"
    assert publish(inc, analysts)["marts.fct_transactions"].how == "changes"
    run_model(inc, next(m for m in MODELS if m.name == "marts.fct_transactions"), run_id="again", full_refresh=True)
    assert publish(inc, analysts)["marts.fct_transactions"].how == "whole"  # rebuilt in full since it was published
    assert_published(inc, analysts)
    assert {p.how for p in publish(inc, analysts).values()} == {"unchanged"}
    assert_published(inc, analysts)


def test_a_file_once_published_is_never_written_again_whoever_reads_it_and_whatever_crashes(
    twins, tmp_path, monkeypatch
):
    # An analyst's session keeps reading the file it opened, whole, however many publishes follow: no publish may
    # write into a file it published, whether or not the reader holds DuckDB's lock (a plain open file holds none,
    # and a process loses its lock when it closes any other handle on the file), nor after a publish killed just
    # before its rename.
    inc, ful = twins
    analysts, held = tmp_path / "analytics.duckdb", []

    def a_sync_then_publish(n):
        txn((inc,), f"TRN-{n}", days_ago=n, description=f"Shop {n}")
        build(inc, ful)
        publish(inc, analysts)
        assert_published(inc, analysts)
        reader = open(analysts, "rb")  # noqa: SIM115 (held open across the publishes that follow)
        held.append((reader, hashlib.sha256(reader.read()).hexdigest()))

    replace = publishing.os.replace

    def killed_before_the_rename(source, destination):
        if Path(destination) == analysts:
            raise RuntimeError("killed before the rename")
        replace(source, destination)

    try:
        for n in (1, 2, 3):
            a_sync_then_publish(n)
        txn((inc,), "TRN-KILLED", days_ago=4)
        build(inc, ful)
        monkeypatch.setattr(publishing.os, "replace", killed_before_the_rename)
        with pytest.raises(RuntimeError, match="killed before the rename"):
            publish(inc, analysts)
        monkeypatch.undo()
        for n in (5, 6, 7):
            a_sync_then_publish(n)
        for reader, published in held:
            reader.seek(0)
            assert hashlib.sha256(reader.read()).hexdigest() == published
        assert len({os.fstat(reader.fileno()).st_ino for reader, _ in held}) == len(held)
    finally:
        for reader, _ in held:
            reader.close()
