"""Reads loaded late, or several at once: a read is landed, then loaded by its run's load step, or by a later load
when its run was killed after its reads. What reaches the warehouse and the marts must not depend on when, or with
which other reads, it was loaded."""

import datetime as dt

import pytest

from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.records import RecordLanding
from mx_pipeline.mx.records import User
from mx_pipeline.warehouse import retire, sync_state
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.landed_reads import EVERY_USER, USERS_LANDED
from mx_pipeline.warehouse.model_changes import replaced_rows_read
from mx_pipeline.warehouse.models import load_models, load_reference, run_model
from mx_pipeline.warehouse.read_plan import plan_transaction_reads
from mx_pipeline.warehouse.rows import user_row
from mx_pipeline.warehouse.tables import USERS
from mx_pipeline.warehouse.transaction_sync import SyncPolicy, extract_member_transactions

from .conftest import make_transaction, store_registration
from .test_transaction_sync import MEMBER, FakeMx, _at, _days_ago, _sync

MODELS = load_models()
STAGING = next(m for m in MODELS if m.name == "staging.stg_transactions")


def _read_not_loaded(warehouse, mx, run_id):
    """Plan and read one member's transactions into the landing area, not loaded (a run killed after its reads)."""
    area = LandingArea.beside(warehouse.path)
    with warehouse.connect() as con:
        plan = plan_transaction_reads(con, area, [MEMBER], SyncPolicy(), run_id=run_id)
    extract_member_transactions(area, plan, MEMBER, mx)
    return area


def _staged(warehouse, **options):
    with warehouse.connect() as con:
        load_reference(con)
        run_model(con, STAGING, run_id="models", **options)
        return con.execute("select transaction_guid from staging.stg_transactions order by 1").fetchall()


def test_a_read_loaded_after_a_model_run_that_began_after_it_still_reaches_the_models(warehouse):
    mx = FakeMx([make_transaction("TRN-A", date=_days_ago(1), updated_at=_at(_days_ago(1)))])
    _sync(warehouse, mx)
    assert _staged(warehouse) == [("TRN-A",)]
    mx.transactions["TRN-B"] = make_transaction("TRN-B", date=_days_ago(1), updated_at=_at(_days_ago(1)))
    area = _read_not_loaded(warehouse, mx, "run-2")
    _staged(warehouse)  # a model run starts after the read, before its load
    load_landed(warehouse, area, run_id="run-3")  # the next load takes it
    assert _staged(warehouse) == [("TRN-A",), ("TRN-B",)]
    assert _staged(warehouse, full_refresh=True) == [("TRN-A",), ("TRN-B",)]


def _read_users_not_loaded(area, ids_by_guid: dict[str, str], run_id: str) -> None:
    """A complete list of MX's users landed, not loaded (a run killed after its reads)."""
    landing = RecordLanding(area, USERS_LANDED.name, USERS, user_row,
                            run_id=run_id, member_guid=None, user_guid=EVERY_USER)  # fmt: skip
    for guid, user_id in ids_by_guid.items():
        landing.add(User.from_payload({"guid": guid, "id": user_id}))
    landing.finish(outcome="synced", listed_guids=list(ids_by_guid), listed_from=dt.datetime.now(dt.UTC))


def _user_ids_in_the_marts(warehouse, **options):
    """One run of every model, as the sql_models asset runs them; fct_transactions' user ids."""
    keep = replaced_rows_read(MODELS)
    with warehouse.connect() as con:
        load_reference(con)
        for model in MODELS:
            run_model(con, model, run_id="models", keep_replaced=keep.get(model.name, frozenset()), **options)
        return con.execute("select transaction_guid, user_id from marts.fct_transactions order by 1").fetchall()


def test_a_user_read_loaded_after_a_model_run_that_began_after_it_still_reaches_the_marts(warehouse):
    area = LandingArea.beside(warehouse.path)
    _read_users_not_loaded(area, {"USR-1": "end-user-1"}, "run-1")
    load_landed(warehouse, area, run_id="run-1", table=USERS_LANDED)
    _sync(warehouse, FakeMx([make_transaction("TRN-A", date=_days_ago(1), updated_at=_at(_days_ago(1)))]))
    assert _user_ids_in_the_marts(warehouse) == [("TRN-A", "end-user-1")]
    _read_users_not_loaded(area, {"USR-1": "end-user-1-renamed"}, "run-2")  # MX's user id was edited
    _user_ids_in_the_marts(warehouse)  # a model run starts after the read, before its load
    load_landed(warehouse, area, run_id="run-3", table=USERS_LANDED)  # the next load takes it
    assert _user_ids_in_the_marts(warehouse) == [("TRN-A", "end-user-1-renamed")]
    assert _user_ids_in_the_marts(warehouse, full_refresh=True) == [("TRN-A", "end-user-1-renamed")]


def test_an_offboarding_that_waits_behind_a_model_run_still_reaches_the_marts(warehouse):
    area = LandingArea.beside(warehouse.path)
    _read_users_not_loaded(area, {"USR-1": "end-user-1"}, "run-1")
    load_landed(warehouse, area, run_id="run-1", table=USERS_LANDED)
    with warehouse.connect() as con:
        con.execute(
            "insert into raw.mx_members (guid, user_guid, institution_code, connection_status, payload, run_id,"
            " fetched_at) values ('MBR-1', 'USR-1', 'mxbank', 'CONNECTED', '{}', 'run-1', now())"
        )
    _sync(warehouse, FakeMx([make_transaction("TRN-A", date=_days_ago(1), updated_at=_at(_days_ago(1)))]))
    assert _user_ids_in_the_marts(warehouse) == [("TRN-A", "end-user-1")]
    asked = dt.datetime.now(dt.UTC)  # the CLI's time, taken before MX and the warehouse answer

    def delete_at_mx_while_the_models_run(guid):
        _user_ids_in_the_marts(warehouse)

    retire.offboard_user(warehouse, "end-user-1", delete_at_mx_while_the_models_run, run_id="offboard", now=asked)
    assert _user_ids_in_the_marts(warehouse) == []
    assert _user_ids_in_the_marts(warehouse, full_refresh=True) == []


@pytest.mark.parametrize("user_id_at_mx", [None, "end-user-1"], ids=["no id at MX", "an id at MX"])
def test_a_registration_stored_after_a_model_run_that_began_after_it_still_reaches_the_marts(warehouse, user_id_at_mx):
    if user_id_at_mx is not None:  # loaded before; a registration that says the same changes nothing
        area = LandingArea.beside(warehouse.path)
        _read_users_not_loaded(area, {"USR-1": user_id_at_mx}, "run-1")
        load_landed(warehouse, area, run_id="run-1", table=USERS_LANDED)
    _sync(warehouse, FakeMx([make_transaction("TRN-A", date=_days_ago(1), updated_at=_at(_days_ago(1)))]))
    assert _user_ids_in_the_marts(warehouse) == [("TRN-A", user_id_at_mx)]
    received = dt.datetime.now(dt.UTC)  # the connect service spools it, and the sensor stores it later
    _user_ids_in_the_marts(warehouse)  # a model run starts after it was received, before it was stored
    with warehouse.connect() as con:
        store_registration((con,), "end-user-1", "USR-1", received)
    assert _user_ids_in_the_marts(warehouse) == [("TRN-A", "end-user-1")]
    assert _user_ids_in_the_marts(warehouse, full_refresh=True) == [("TRN-A", "end-user-1")]


@pytest.mark.parametrize("group_rows", [250_000, 1], ids=["in one merge", "in a merge each"])
def test_a_row_the_newest_read_lists_is_live_whatever_older_read_is_loaded_with_it(warehouse, group_rows):
    listed = make_transaction("TRN-X", status="PENDING", date=_days_ago(1), updated_at=_at(_days_ago(1)))
    mx = FakeMx([listed, make_transaction("TRN-Y", status="PENDING", date=_days_ago(1), updated_at=_at(_days_ago(1)))])
    _sync(warehouse, mx)
    del mx.transactions["TRN-X"]  # a read misses it (MX hid it a moment, a page shifted)
    _read_not_loaded(warehouse, mx, "run-2")
    mx.transactions["TRN-X"] = listed  # a later read lists it again, unchanged
    area = _read_not_loaded(warehouse, mx, "run-3")
    load_landed(warehouse, area, run_id="run-4", group_rows=group_rows)
    with warehouse.connect() as con:
        rows = con.execute("select guid, removed_at is null from raw.mx_transactions order by guid").fetchall()
    assert rows == [("TRN-X", True), ("TRN-Y", True)]


@pytest.mark.parametrize("group_rows", [250_000, 1], ids=["in one merge", "in a merge each"])
def test_a_row_only_an_older_read_lists_is_removed_once_when_both_are_loaded_together(warehouse, group_rows):
    mx = FakeMx([make_transaction("TRN-Y", status="PENDING", date=_days_ago(1), updated_at=_at(_days_ago(1)))])
    _sync(warehouse, mx)
    mx.transactions["TRN-Z"] = make_transaction(
        "TRN-Z", status="PENDING", date=_days_ago(1), updated_at=_at(_days_ago(1))
    )
    _read_not_loaded(warehouse, mx, "run-2")
    del mx.transactions["TRN-Z"]
    area = _read_not_loaded(warehouse, mx, "run-3")
    load_landed(warehouse, area, run_id="run-4", group_rows=group_rows)
    with warehouse.connect() as con:
        rows = con.execute(
            "select guid, count(*), count(removed_at) from raw.mx_transactions group by guid order by guid"
        ).fetchall()
    assert rows == [("TRN-Y", 1, 0), ("TRN-Z", 1, 1)]


def test_a_marking_that_fails_sets_its_member_aside_and_does_not_fail_the_load(warehouse, monkeypatch):
    # A statement that fails inside the marking aborts the load's transaction: what cleans up after it must not
    # fail too (DuckDB refuses every statement but a rollback then), hiding the failure behind one that fails every
    # load, when the loader would have set the member aside and loaded the others.
    mx = FakeMx([make_transaction("TRN-A", date=_days_ago(1), updated_at=_at(_days_ago(1)))])
    _sync(warehouse, mx)
    area = _read_not_loaded(warehouse, mx, "run-2")

    def out_of_memory(con, *args, **kwargs):
        con.execute("select cast('out of memory' as integer)")

    monkeypatch.setattr(sync_state, "mark_removed", out_of_memory)
    load_landed(warehouse, area, run_id="run-3")
    with warehouse.connect() as con:
        ((reason,),) = con.execute("select reason from ops.quarantine").fetchall()
    assert "could not be loaded" in reason and "ConversionException" in reason
