"""The SQL models on hand-made raw rows: each cleaning and mapping rule, the runner's lineage, errors, increments."""

import datetime as dt
import json

import pytest
import sqlglot

from mx_pipeline.sandbox.categories import DEFAULT_CATEGORIES
from mx_pipeline.warehouse import model_changes
from mx_pipeline.warehouse.model_changes import replaced_columns_read
from mx_pipeline.warehouse.models import (
    REFERENCE_DIR,
    ModelError,
    load_models,
    load_reference,
    parse_model,
    run_model,
)

TODAY = dt.datetime.now(dt.UTC).date()
DAY = dt.timedelta(days=1)
MODELS = {m.name: m for m in load_models()}


@pytest.fixture
def con(warehouse):
    with warehouse.connect() as con:
        load_reference(con)
        yield con


def txn(con, guid, *, amount="12.50", type="DEBIT", status="POSTED", days_ago=3, account="ACT-1", run="run-1",
        description="Bean There Coffee", original="SQ *BEAN THERE COFFEE 4411", category="Coffee Shops",
        top="Food & Dining", merchant="MCH-1", removed=False, fetched_days_ago=None, created_ago=None):  # fmt: skip
    date = TODAY - dt.timedelta(days=days_ago)
    fetched = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago if fetched_days_ago is None else fetched_days_ago)
    payload = {"guid": guid, "description": description, "original_description": original, "category": category,
               "top_level_category": top, "merchant_guid": merchant, "currency_code": "USD",
               "transacted_at": f"{date}T15:04:05Z"}  # fmt: skip
    if created_ago is not None:  # when MX created the record, this long ago
        payload["created_at"] = (dt.datetime.now(dt.UTC) - created_ago).isoformat()
    con.execute(
        """
        insert into raw.mx_transactions (guid, member_guid, account_guid, user_guid, status, type, amount, date,
            updated_at, removed_at, payload, run_id, fetched_at, first_fetched_at)
        values (?, 'MBR-1', ?, 'USR-1', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [guid, account, status, type, amount, date, fetched, fetched if removed else None, json.dumps(payload), run,
         fetched, fetched],
    )  # fmt: skip


def build(con, *names, **options):
    order = [m for m in load_models() if not names or m.name in names]
    return {m.name: run_model(con, m, run_id="test", **options) for m in order}


def fct(con, *columns):
    return con.execute(f"select {', '.join(columns)} from marts.fct_transactions order by 1").fetchall()


def test_lineage_comes_from_the_sql_itself():
    assert MODELS["staging.stg_transactions"].reads == {"raw.mx_transactions"}
    assert MODELS["marts.monthly_spend_by_category"].reads == {"marts.fct_transactions"}
    order = [m.name for m in load_models()]
    assert order.index("staging.stg_transactions") < order.index("marts.fct_transactions")


def test_the_columns_of_replaced_rows_a_model_reads_come_from_its_sql():
    assert MODELS["marts.monthly_spend_by_category"].reads_replaced == {
        "marts.fct_transactions": {"user_guid", "transaction_date", "category_id"}
    }
    assert MODELS["marts.fct_transactions"].reads_replaced == {
        "staging.stg_pending_matches": {"pending_guid", "posted_guid"}
    }
    assert MODELS["staging.stg_pending_matches"].reads_replaced == {
        "staging.stg_transactions": {"transaction_guid", "account_guid", "transaction_date"}
    }

    def read(sql):
        return replaced_columns_read(sqlglot.parse_one(sql, read="duckdb"))

    assert read("select c.user_guid from changes.marts__x as c join marts.y as y on y.k = c.k") == {
        "marts.x": {"user_guid", "k"}
    }
    assert read("select User_Guid from changes.marts__x as c join marts.y as y on y.k = C.k") == {
        "marts.x": {"user_guid", "k"}  # unqualified: maybe theirs, kept if the model has it; names ignore case
    }
    assert read("select * from marts.y where k in (select k from changes.marts__x)") == {"marts.x": {"k"}}
    assert read("select * from changes.marts__x where changed_at > now()") == {"marts.x": {"*"}}


@pytest.mark.parametrize(
    ("sql", "read"),
    [
        ("select user_guid from changes.marts__x group by all having bool_or(kind = 'expense')", {"user_guid", "kind"}),
        (
            "select user_guid from changes.marts__x qualify row_number() over (partition by account) = 1",
            {"user_guid", "account"},
        ),
        ("select c.user_guid from changes.marts__x as c join marts.y as y using (account)", {"user_guid", "account"}),
        ("select c.*, y.name from changes.marts__x as c join marts.y as y on y.k = c.k", {"*"}),
        ("select * from changes.marts__x as c join marts.y as y on y.k = c.k", {"*"}),
        ("select c.k from changes.marts__x as c natural join marts.y", {"*"}),
        (
            "select c.k from changes.marts__x as c where exists (select 1 from marts.y as y where y.a = c.amount)",
            {"k", "amount"},
        ),
        ("select user_guid from changes.marts__x where columns('kind') = 'expense'", {"*"}),
        ("select columns(lambda c: c like '%date') from changes.marts__x", {"*"}),
        ("select to_json(c) from changes.marts__x as c", {"*"}),
        ("select #2 from changes.marts__x", {"*"}),
    ],
    ids=[
        "having",
        "qualify",
        "using",
        "qualified star",
        "star of a join",
        "natural join",
        "correlated subquery",
        "columns regex",
        "columns lambda",
        "a whole row by its alias",
        "a column by position",
    ],
)
def test_every_column_a_reader_may_read_of_replaced_rows_is_kept_wherever_its_sql_names_it(sql, read):
    assert replaced_columns_read(sqlglot.parse_one(sql, read="duckdb")) == {"marts.x": read}


def test_the_rows_a_model_replaces_keep_the_columns_its_readers_name_in_any_case(con):
    con.execute("create table marts.x (k varchar, user_guid varchar, amount decimal(18, 4))")

    model_changes.reset(con, "marts.x", "K", keep_columns=frozenset({"User_Guid", "a_column_of_another_table"}))

    kept = con.execute("select column_name from (describe changes.marts__x)").fetchall()
    assert kept == [("k",), ("user_guid",), ("changed_at",)]


def test_amounts_are_signed_once_debits_negative(con):
    txn(con, "TRN-1", amount="12.50", type="DEBIT")
    txn(con, "TRN-2", amount="2500.00", type="CREDIT", description="Payroll", category="Paycheck", top="Income")
    build(con)
    assert fct(con, "transaction_guid", "amount") == [("TRN-1", -12.5), ("TRN-2", 2500)]


def test_descriptions_are_normalized_and_mx_fields_kept_for_audit(con):
    txn(con, "TRN-1", description="", original="FRESH BASKET #5487 PROVO UT  xx4411")
    build(con)
    (normalized, original) = con.execute(
        "select description_normalized, mx_original_description from staging.stg_transactions"
    ).fetchone()
    assert normalized == "fresh basket provo ut"
    assert original == "FRESH BASKET #5487 PROVO UT  xx4411"


@pytest.mark.parametrize(
    ("pending_created", "posted_created"),
    [(3 * DAY, DAY), (3 * DAY, 3 * DAY), (3 * DAY, 3 * DAY + dt.timedelta(minutes=30)), (None, None)],
    ids=["posted later", "together", "posted first in the same aggregation", "no created_at"],
)
def test_a_pending_whose_posted_twin_arrived_under_a_new_guid_is_counted_once(con, pending_created, posted_created):
    txn(con, "TRN-P", status="PENDING", days_ago=3, created_ago=pending_created)
    txn(con, "TRN-Q", status="POSTED", days_ago=1, created_ago=posted_created)
    build(con)
    assert fct(con, "transaction_guid", "replaced_pending_guid") == [("TRN-Q", "TRN-P")]


def test_a_pending_is_never_the_twin_of_an_identical_purchase_mx_had_before_it(con):
    """Yesterday's fare posted, today's identical fare pending: two rides. MX creates a twin when its pending settles."""
    txn(
        con,
        "TRN-YESTERDAY",
        status="POSTED",
        days_ago=2,
        created_ago=2 * DAY,
        description="RideNow",
        original="RIDENOW",
    )
    txn(con, "TRN-TODAY", status="PENDING", days_ago=1, created_ago=DAY, description="RideNow", original="RIDENOW")
    build(con)
    assert fct(con, "transaction_guid", "replaced_pending_guid") == [("TRN-TODAY", None), ("TRN-YESTERDAY", None)]
    assert con.execute("select count(*) from staging.stg_pending_matches").fetchone() == (0,)


def test_an_increment_counts_a_new_pending_beside_the_identical_purchase_posted_before_it(con):
    txn(con, "TRN-YESTERDAY", status="POSTED", days_ago=2, created_ago=2 * DAY, fetched_days_ago=1, run="run-1")
    build(con)
    txn(con, "TRN-TODAY", status="PENDING", days_ago=1, created_ago=dt.timedelta(0), fetched_days_ago=0, run="run-2")
    assert build(con)["marts.fct_transactions"].mode == "incremental"
    assert fct(con, "transaction_guid", "amount") == [("TRN-TODAY", -12.5), ("TRN-YESTERDAY", -12.5)]
    spend = con.execute("select sum(spend) from marts.monthly_spend_by_category").fetchone()
    assert spend == (25,)


def test_ambiguous_twins_are_left_unmerged_and_counted(con):
    txn(con, "TRN-P1", status="PENDING", days_ago=3)
    txn(con, "TRN-P2", status="PENDING", days_ago=3)
    txn(con, "TRN-Q", status="POSTED", days_ago=2)
    build(con)
    assert {g for (g,) in fct(con, "transaction_guid")} == {"TRN-P1", "TRN-P2", "TRN-Q"}
    assert con.execute("select count(*) from staging.stg_pending_matches where not is_match").fetchone() == (2,)


def test_vanished_rows_and_pendings_older_than_14_days_are_not_counted(con):
    txn(con, "TRN-GONE", removed=True)
    txn(con, "TRN-OLD-PENDING", status="PENDING", days_ago=20)
    txn(con, "TRN-KEPT")
    build(con)
    assert fct(con, "transaction_guid") == [("TRN-KEPT",)]


def test_only_rows_mx_stopped_listing_leave_so_identical_purchases_from_any_fetch_all_count(con):
    txn(con, "TRN-A", days_ago=40, run="run-1", removed=True)  # re-issued by MX: the sync retired the old guid
    txn(con, "TRN-A2", days_ago=40, run="run-9", fetched_days_ago=0)
    fare = {"description": "Metro Transit", "category": "Public Transportation", "top": "Auto & Transport"}
    txn(con, "TRN-T1", days_ago=30, run="run-2", **fare)
    txn(con, "TRN-T2", days_ago=30, run="run-3", fetched_days_ago=0, **fare)  # the same fare, a later fetch
    txn(con, "TRN-T3", days_ago=30, run="run-3", fetched_days_ago=0, **fare)  # and a third, in its own batch
    build(con)
    assert fct(con, "transaction_guid") == [("TRN-A2",), ("TRN-T1",), ("TRN-T2",), ("TRN-T3",)]


def test_categories_are_ours_with_overrides_that_survive_re_mapping(con):
    txn(con, "TRN-MAPPED")
    txn(con, "TRN-TOP", category="Food & Dining")  # a top-level category: its fallback row
    txn(con, "TRN-NEW", category="Boba Tea", top="Food & Dining")  # an MX subcategory the map does not list
    txn(con, "TRN-ALIEN", category="Space Travel", top="Interplanetary")  # an unknown top level
    txn(con, "TRN-OVERRIDE", merchant="MCH-2")
    txn(con, "TRN-MERCHANT", merchant="MCH-9")
    con.execute(
        "insert into ops.category_overrides (transaction_guid, category_id) values ('TRN-OVERRIDE', 'shopping.general')"
    )
    con.execute("insert into ops.merchant_category_overrides (merchant_guid, category_id) values ('MCH-9', 'food.groceries')")  # fmt: skip
    build(con)
    rows = dict((g, (c, s)) for g, c, s in fct(con, "transaction_guid", "category_id", "category_source"))
    assert rows == {
        "TRN-ALIEN": ("uncategorized.unmapped", "fallback"),
        "TRN-MAPPED": ("food.coffee", "mx_category"),
        "TRN-MERCHANT": ("food.groceries", "merchant_override"),
        "TRN-NEW": ("food.restaurants", "mx_top_level"),
        "TRN-OVERRIDE": ("shopping.general", "transaction_override"),
        "TRN-TOP": ("food.restaurants", "mx_top_level"),
    }
    build(con, full_refresh=True)  # a re-sync and re-mapping keeps the product's override
    assert fct(con, "category_id")[0] and ("shopping.general",) in fct(con, "category_id")


def test_every_mx_default_category_maps_to_a_category_of_ours(con):
    unknown = con.execute(
        """
        select m.category_id from reference.mx_category_map as m
        left join reference.internal_categories as c using (category_id) where c.category_id is null
        """
    ).fetchall()
    assert unknown == []
    (fallbacks,) = con.execute("select count(*) from reference.mx_category_map where mx_category is null").fetchone()
    assert fallbacks == 21  # one per MX top level


def test_every_category_the_sandbox_serves_from_mx_defaults_maps_without_the_fallback(con):
    for i, category in enumerate(DEFAULT_CATEGORIES):
        txn(con, f"TRN-{i}", category=category.name, top=category.top_level_name, description=f"Shop {i}")
    build(con)
    assert con.execute("select count(*) from marts.fct_transactions where category_source = 'fallback'").fetchone() == (
        0,
    )
    assert con.execute("select count(*) from marts.fct_transactions").fetchone() == (len(DEFAULT_CATEGORIES),)


def test_an_incremental_model_reads_only_what_arrived_since_its_last_run(con):
    txn(con, "TRN-1", fetched_days_ago=1)
    assert build(con, "staging.stg_transactions")["staging.stg_transactions"].mode == "full"
    txn(con, "TRN-2", fetched_days_ago=0)
    con.execute("update raw.mx_transactions set payload = json_object('description', 'changed') where guid = 'TRN-1'")
    result = build(con, "staging.stg_transactions")["staging.stg_transactions"]
    assert (result.mode, result.rows) == ("incremental", 2)
    (read,) = con.execute("select count(*) from staging.stg_transactions where transaction_guid = 'TRN-2'").fetchone()
    assert read == 1
    assert con.execute(
        "select mx_description from staging.stg_transactions where transaction_guid = 'TRN-1'"
    ).fetchone() == ("Bean There Coffee",)  # not re-read: its fetched_at did not move


def test_a_failing_model_names_its_file_and_line(tmp_path, con):
    folder = tmp_path / "marts"
    folder.mkdir()
    (folder / "broken.sql").write_text("-- description: One row per nothing.\nselect\n    1 as ok,\n    nope()\n")
    model = parse_model(folder / "broken.sql", tmp_path)
    with pytest.raises(ModelError, match=r"broken\.sql:4: .*nope"):
        run_model(con, model, run_id="test")


def test_an_increment_failing_after_its_affected_keys_still_names_its_file(tmp_path, con):
    folder = tmp_path / "marts"
    folder.mkdir()
    (folder / "broken.sql").write_text(
        "-- materialized: incremental\n-- unique_key: k\n"
        "with affected as (select 1 as k where not __is_full__)\n"
        "select k, case when __is_full__ then 'ok' else error('nope') end as v from range(1, 3) as t(k)\n"
    )
    model = parse_model(folder / "broken.sql", tmp_path)
    assert run_model(con, model, run_id="first").mode == "full"
    with pytest.raises(ModelError, match=r"broken\.sql:\d+: .*nope"):  # the SELECT read its keys from a table
        run_model(con, model, run_id="second")


def test_model_headers_become_table_and_column_comments(con):
    build(con)
    (comment,) = con.execute(
        "select comment from duckdb_columns() where table_name = 'fct_transactions' and column_name = 'amount'"
    ).fetchone()
    assert comment.startswith("Signed: debits (money out) negative")


def test_a_small_change_costs_in_proportion_to_the_change_and_reaches_the_rows_it_affects(con):
    for i in range(30):
        txn(con, f"TRN-{i:02}", days_ago=20 + i, fetched_days_ago=20 + i, description=f"Shop {i}")
    txn(con, "TRN-P", status="PENDING", days_ago=2, fetched_days_ago=2)
    build(con)
    txn(con, "TRN-Q", status="POSTED", days_ago=1, fetched_days_ago=0)  # the pending's twin posts
    con.execute(
        "insert into ops.category_overrides (transaction_guid, category_id) values ('TRN-05', 'food.groceries')"
    )
    results = build(con)
    fct_run = results["marts.fct_transactions"]
    assert fct_run.mode == "incremental" and fct_run.recomputed <= 4  # TRN-Q, its twin, TRN-05 (and TRN-00 nearby)
    guids = {g for (g,) in fct(con, "transaction_guid")}
    assert "TRN-P" not in guids and "TRN-Q" in guids and len(guids) == 31
    assert ("food.groceries",) in con.execute(
        "select category_id from marts.fct_transactions where transaction_guid = 'TRN-05'"
    ).fetchall()


def test_each_reference_load_records_the_version_loaded(con, tmp_path):
    edited = tmp_path / "reference"
    edited.mkdir()
    for name in ("internal_categories", "mx_category_map"):
        (edited / f"{name}.csv").write_text((REFERENCE_DIR / f"{name}.csv").read_text())
    with (edited / "mx_category_map.csv").open("a") as csv:
        csv.write("Food & Dining,Boba Tea,food.coffee\n")
    before, after = load_reference(con).hashes, load_reference(con, edited).hashes
    assert before["reference.internal_categories"] == after["reference.internal_categories"]
    assert before["reference.mx_category_map"] != after["reference.mx_category_map"]
    assert dict(con.execute("select table_name, content_hash from ops.reference_loads").fetchall()) == after


def test_twins_that_arrived_together_still_count_twice_after_mx_edits_one(con):
    for guid in ("TRN-T1", "TRN-T2"):
        txn(con, guid, days_ago=30, fetched_days_ago=30, run="run-1")
    build(con)
    con.execute(  # MX edits T2 today: a new version, fetched now; it first arrived with T1
        "update raw.mx_transactions set fetched_at = now(), loaded_at = now(), run_id = 'run-2', updated_at = now() where guid = 'TRN-T2'"
    )
    build(con)
    assert fct(con, "transaction_guid") == [("TRN-T1",), ("TRN-T2",)]


def test_an_override_on_an_old_copy_never_brings_a_re_issued_guid_back(con):
    txn(con, "TRN-A", days_ago=40, fetched_days_ago=40, run="run-1", removed=True)
    txn(con, "TRN-A2", days_ago=40, fetched_days_ago=0, run="run-9")
    build(con)
    con.execute("insert into ops.category_overrides (transaction_guid, category_id) values ('TRN-A', 'food.groceries')")
    assert build(con)["marts.fct_transactions"].mode == "incremental"
    assert fct(con, "transaction_guid") == [("TRN-A2",)]


def test_a_category_id_we_do_not_have_never_drops_the_row(con):
    txn(con, "TRN-1")
    con.execute("insert into ops.category_overrides (transaction_guid, category_id) values ('TRN-1', 'food.grocery')")
    build(con)
    assert fct(con, "category_id", "category_source") == [("uncategorized.unmapped", "unknown_category_id")]


def test_words_that_start_like_ref_survive_normalization(con):
    txn(con, "TRN-1", description="REFORMATION Refund REF: 88ZX12")
    build(con)
    assert con.execute("select description_normalized from staging.stg_transactions").fetchone() == (
        "reformation refund",
    )
