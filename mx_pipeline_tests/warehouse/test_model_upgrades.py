"""Upgrades of the models' bookkeeping: a warehouse migrated from before a fix builds right from its next run, whatever
runs next (the marts alone, or everything), and repairs what the old increments left wrong."""

import datetime as dt
from decimal import Decimal

from mx_pipeline.warehouse import Warehouse
from mx_pipeline.warehouse.models import run_model
from mx_pipeline.warehouse.publish import publish

from .test_incremental_models import (
    KEEP_REPLACED,
    MODELS,
    assert_published,
    assert_same,
    counted,
    run_all,
    sync,
    table,
    txn,
)


def test_after_the_upgrade_that_keeps_replaced_matches_the_marts_alone_build_and_fct_is_incremental_again(tmp_path):
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.connect() as con:
        txn((con,), "TRN-P", days_ago=3, amount="8.00", status="PENDING", description="Corner Deli")
        run_all(con, run_id="before")
        con.execute("drop table changes.staging__stg_pending_matches")  # as before 0029
        con.execute("delete from ops.model_changes_kept where model = 'staging.stg_pending_matches'")
        con.execute("delete from ops.schema_migrations where version like '0029%'")
    with warehouse.connect() as con:  # the upgrade, then a run of the marts alone
        txn((con,), "TRN-Q", days_ago=2, amount="8.00", description="Corner Deli")
        runs = run_all(con, [m for m in MODELS if m.name.startswith("marts.")], run_id="marts-only")
        assert runs["marts.fct_transactions"].mode == "incremental"  # no match was replaced since it last read
        assert counted(con) == [("TRN-P",)]  # not staged yet
        run_all(con, run_id="whole")
        assert counted(con) == [("TRN-Q",)]  # its pending is matched, and hidden
        txn((con,), "TRN-R", days_ago=1, amount="8.00", description="Corner Deli")
        assert run_all(con, run_id="next")["marts.fct_transactions"].mode == "incremental"
        assert counted(con) == [("TRN-P",), ("TRN-Q",), ("TRN-R",)]  # ambiguous: the pending counts again


def test_the_upgrade_to_0030_repairs_a_match_the_old_increment_left_behind(tmp_path):
    """Before 0030 an increment left a posted row MX moved away matched to its pending: 0030 rebuilds the matches in
    full, and the pending counts again."""
    incremental, full = Warehouse(tmp_path / "inc.duckdb"), Warehouse(tmp_path / "full.duckdb")
    with incremental.connect() as inc, full.connect() as ful:
        both = (inc, ful)
        txn(both, "TRN-P", days_ago=10, status="PENDING", description="Corner Deli")
        txn(both, "TRN-Q", days_ago=9, description="Corner Deli")
        run_all(inc, run_id="before-0030")
        txn(both, "TRN-Q", days_ago=30, description="Corner Deli")  # MX moves the posted row a month back
        # as the code before 0030 ran it: stg_transactions kept no rows, so pm recomputed around the new day only
        for m in MODELS:
            run_model(inc, m, run_id="before-0030", keep_replaced=KEEP_REPLACED.get(m.name, frozenset()))
            if m.name == "staging.stg_transactions":
                inc.execute("delete from changes.staging__stg_transactions")
        assert counted(inc) == [("TRN-Q",)]  # the damage: TRN-P hidden
        inc.execute("drop table changes.staging__stg_transactions")
        inc.execute("delete from ops.model_changes_kept where model = 'staging.stg_transactions'")
        inc.execute("delete from ops.schema_migrations where version like '0030%'")
    with incremental.connect() as inc, full.connect() as ful:  # the upgrade
        txn((inc, ful), "TRN-X", days_ago=1, amount="3.00", description="Fresh Basket", account="ACT-9")
        runs = run_all(inc, run_id="after-the-upgrade")
        run_all(ful, run_id="full", full_refresh=True)
        assert_same(inc, ful)
        assert runs["staging.stg_pending_matches"].mode == "full"


def test_the_upgrade_to_0028_repairs_a_user_id_the_old_increment_missed(tmp_path):
    """Before 0028 mapped_at was the registration's received time: a registration received before a model run began
    and stored after it was never read by an increment. After 0028 the next run gives its rows the user id."""
    incremental, full = Warehouse(tmp_path / "inc.duckdb"), Warehouse(tmp_path / "full.duckdb")
    with incremental.connect() as inc, full.connect() as ful:
        both = (inc, ful)
        txn(both, "TRN-1", days_ago=3, user="USR-1")
        received = dt.datetime.now(dt.UTC)  # the connect service receives u-1's registration as USR-1
        run_all(inc, run_id="first")
        # stored after that run began, with registered_at = received: what mapped_at read before 0028
        sync(both, "insert into ops.end_users (id, source, mx_user_guid, first_seen_at, registered_at, changed_at)"
                   " values ('u-1', 'connect', 'USR-1', ?, ?, ?)", [received, received, received])  # fmt: skip
        run_all(inc, run_id="missed-it")
        assert inc.execute("select user_id from marts.fct_transactions").fetchall() == [(None,)]  # the damage
        inc.execute("delete from ops.schema_migrations where version like '0028%'")  # deployed alone (09e56dc)
    with incremental.connect() as inc, full.connect() as ful:  # the upgrade
        run_all(inc, run_id="after-the-upgrade")
        run_all(ful, run_id="full", full_refresh=True)
        for mart in ("marts.fct_transactions", "marts.monthly_spend_by_category"):  # stg_users' mapped_at may differ
            assert table(inc, mart) == table(ful, mart), mart


def test_after_the_upgrade_to_0033_a_publish_left_behind_by_old_keys_is_made_whole(tmp_path):
    """Before 0033 monthly spend logged keys without a category. A publish that failed after such a run left the
    analysts' file behind by keys the new key's columns cannot read: 0033 makes the next run a full build, and that
    publish copies monthly spend whole."""
    warehouse, analysts = Warehouse(tmp_path / "warehouse.duckdb"), tmp_path / "analytics.duckdb"
    with warehouse.connect() as con:
        txn((con,), "TRN-1", days_ago=0, amount="4.00")
        run_all(con, run_id="published")
        publish(con, analysts)
        txn((con,), "TRN-2", days_ago=0, amount="5.00")
        run_all(con, run_id="its-publish-failed")
        con.execute(  # the key as logged before 0033: its user and month alone
            "update ops.model_changes set key = to_json(struct_pack(user_guid := json_extract_string(key, 'user_guid'),"
            " month := json_extract_string(key, 'month')))::varchar where model = 'marts.monthly_spend_by_category'"
        )
        con.execute("delete from ops.schema_migrations where version like '0033%'")
    with warehouse.connect() as con:  # the upgrade
        txn((con,), "TRN-3", days_ago=40, amount="6.00")  # another month
        assert run_all(con, run_id="after-the-upgrade")["marts.monthly_spend_by_category"].mode == "full"
        assert publish(con, analysts)["marts.monthly_spend_by_category"].how == "whole"
        assert_published(con, analysts)
        assert con.execute("select spend from marts.monthly_spend_by_category order by month").fetchall() == [
            (Decimal("6.00"),),
            (Decimal("9.00"),),
        ]


def test_after_the_upgrade_to_0033_monthly_spend_builds_alone(tmp_path):
    """0033's monthly spend reads the category of fct_transactions' replaced rows: the table keeping them has it from
    the upgrade on, so a run of monthly spend alone (a subset, a re-executed step) builds (found by review)."""
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.connect() as con:
        txn((con,), "TRN-1", days_ago=0, amount="4.00")
        run_all(con, run_id="before")
        txn((con,), "TRN-2", days_ago=0, amount="5.00")
        run_all(con, run_id="before-2")
        con.execute(  # kept as before 0033: no category
            "create or replace table changes.marts__fct_transactions as"
            " select transaction_guid, user_guid, transaction_date, changed_at from changes.marts__fct_transactions"
        )
        con.execute("delete from ops.schema_migrations where version like '0033%'")
    with warehouse.connect() as con:  # the upgrade, then monthly spend alone
        monthly = [m for m in MODELS if m.name == "marts.monthly_spend_by_category"]
        assert run_all(con, monthly, run_id="monthly-alone")["marts.monthly_spend_by_category"].mode == "full"
        assert con.execute("select spend from marts.monthly_spend_by_category").fetchall() == [(Decimal("9.00"),)]
        txn((con,), "TRN-3", days_ago=0, amount="6.00")
        assert run_all(con, run_id="next")["marts.monthly_spend_by_category"].mode == "incremental"
        assert con.execute("select spend from marts.monthly_spend_by_category").fetchall() == [(Decimal("15.00"),)]


def test_the_upgrade_to_0034_counts_a_pending_the_old_rule_hid_behind_an_identical_purchase_posted_before_it(tmp_path):
    """Before 0034 staging read no created_at, and a posted purchase MX had before an identical pending was taken for
    its twin: the pending was hidden. The upgrade rebuilds staging and the matches, and the pending counts."""
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.connect() as con:
        txn((con,), "TRN-YESTERDAY", days_ago=2, amount="3.40", description="RideNow", created_days_ago=2)
        txn((con,), "TRN-TODAY", days_ago=1, amount="3.40", description="RideNow", status="PENDING", created_days_ago=1)
        con.execute("update raw.mx_transactions set payload = json_merge_patch(payload, '{\"created_at\": null}')")
        run_all(con, run_id="before")
        assert counted(con) == [("TRN-YESTERDAY",)]  # as the old rule had it
        con.execute(  # MX had sent created_at all along; the old staging did not read it
            "update raw.mx_transactions set payload = json_merge_patch(payload, json_object('created_at',"
            " case guid when 'TRN-YESTERDAY' then current_date - 2 else current_date - 1 end))"
        )
        con.execute("alter table staging.stg_transactions drop column created_at")
        con.execute("delete from ops.schema_migrations where version like '0034%'")
    with warehouse.connect() as con:  # the upgrade
        runs = run_all(con, run_id="after-the-upgrade")
        assert runs["staging.stg_transactions"].mode == runs["staging.stg_pending_matches"].mode == "full"
        assert counted(con) == [("TRN-TODAY",), ("TRN-YESTERDAY",)]
        txn((con,), "TRN-LUNCH", days_ago=0, amount="9.00", description="Corner Deli", created_days_ago=0)
        assert run_all(con, run_id="next")["staging.stg_pending_matches"].mode == "incremental"
        assert counted(con) == [("TRN-LUNCH",), ("TRN-TODAY",), ("TRN-YESTERDAY",)]
