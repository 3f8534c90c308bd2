"""An edited category map reaches every model that depends on it, however the runs that see the edit go."""

import dataclasses

import pytest

from mx_pipeline.warehouse.models import REFERENCE_DIR, ModelError, load_models, load_reference, run_model
from mx_pipeline_tests.warehouse.test_models import build, txn

FCT = "marts.fct_transactions"


@pytest.fixture
def con(warehouse):
    with warehouse.connect() as con:
        load_reference(con)
        yield con


@pytest.fixture
def coffee_is_a_restaurant(tmp_path):
    """The reference folder with one mapping edited: MX's Coffee Shops now count as restaurants."""
    folder = tmp_path / "reference"
    folder.mkdir()
    for csv in REFERENCE_DIR.glob("*.csv"):
        (folder / csv.name).write_text(csv.read_text())
    mapping = folder / "mx_category_map.csv"
    edited = mapping.read_text().replace(
        "Food & Dining,Coffee Shops,food.coffee", "Food & Dining,Coffee Shops,food.restaurants"
    )
    assert edited != mapping.read_text()
    mapping.write_text(edited)
    return folder


def categories(con) -> dict[str, str]:
    return dict(con.execute("select transaction_guid, category_id from marts.fct_transactions").fetchall())


def spend_categories(con) -> set[str]:
    return {c for (c,) in con.execute("select distinct category_id from marts.monthly_spend_by_category").fetchall()}


@pytest.fixture
def built(con):
    """Two coffees, mapped and built with today's map; fct_transactions is incremental from here on."""
    txn(con, "TRN-1", days_ago=20, fetched_days_ago=20)
    txn(con, "TRN-2", days_ago=10, fetched_days_ago=10)
    build(con)
    assert categories(con) == {"TRN-1": "food.coffee", "TRN-2": "food.coffee"}
    return con


def test_a_map_edit_seen_by_a_run_that_built_only_staging_still_rebuilds_the_marts(built, coffee_is_a_restaurant):
    con = built
    load_reference(con, coffee_is_a_restaurant)
    build(con, "staging.stg_transactions")  # the first run to see the edit builds no model that maps
    load_reference(con, coffee_is_a_restaurant)  # the next run: the CSV is no longer "new" to anyone
    results = build(con)
    assert results[FCT].mode == "full"
    assert categories(con) == {"TRN-1": "food.restaurants", "TRN-2": "food.restaurants"}
    assert spend_categories(con) == {"food.restaurants"}


def test_a_map_edit_seen_by_a_run_that_failed_half_way_rebuilds_the_rest_next_time(built, coffee_is_a_restaurant):
    con = built
    load_reference(con, coffee_is_a_restaurant)
    broken = {m.name: m for m in load_models()}
    broken[FCT] = dataclasses.replace(broken[FCT], body="select nope()")
    for model in broken.values():  # dependency order: staging first, then the marts
        if model.name == FCT:
            with pytest.raises(ModelError):
                run_model(con, model, run_id="failed")
            break
        run_model(con, model, run_id="failed")
    load_reference(con, coffee_is_a_restaurant)
    results = build(con)
    assert results[FCT].mode == "full"
    assert categories(con) == {"TRN-1": "food.restaurants", "TRN-2": "food.restaurants"}
    assert spend_categories(con) == {"food.restaurants"}


def test_each_model_rebuilds_for_the_map_once_then_is_incremental_again(built, coffee_is_a_restaurant):
    con = built
    load_reference(con, coffee_is_a_restaurant)
    assert build(con)[FCT].mode == "full"
    load_reference(con, coffee_is_a_restaurant)
    txn(con, "TRN-3", days_ago=1, fetched_days_ago=0)
    results = build(con)
    assert (results[FCT].mode, results["staging.stg_transactions"].mode) == ("incremental", "incremental")
    assert categories(con) == {"TRN-1": "food.restaurants", "TRN-2": "food.restaurants", "TRN-3": "food.restaurants"}


def test_an_unchanged_reference_leaves_incremental_models_incremental(built):
    con = built
    load_reference(con)  # the next run reloads the very same files
    txn(con, "TRN-3", days_ago=1, fetched_days_ago=0)
    results = build(con)
    assert results[FCT].mode == "incremental" and results[FCT].recomputed == 1
    assert categories(con)["TRN-3"] == "food.coffee"


def test_a_model_that_reads_no_reference_is_never_rebuilt_for_it(built, coffee_is_a_restaurant):
    con = built
    load_reference(con, coffee_is_a_restaurant)
    assert build(con, "staging.stg_transactions")["staging.stg_transactions"].mode == "incremental"
