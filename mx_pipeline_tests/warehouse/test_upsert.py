import datetime as dt

import duckdb
import pytest

from mx_pipeline.warehouse.rows import Load, to_frame, transaction_row
from mx_pipeline.warehouse.tables import TRANSACTIONS
from mx_pipeline.warehouse.upsert import UpsertCounts, upsert

from .conftest import make_transaction

FIRST = Load("run-1", dt.datetime(2026, 11, 25, 8, tzinfo=dt.UTC))
SECOND = Load("run-2", dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC))


def _frame(transactions, load=FIRST):
    return to_frame(TRANSACTIONS, [transaction_row(t, load) for t in transactions])


def _rows(con):
    return con.execute("select guid, amount::varchar, run_id from raw.mx_transactions order by guid").fetchall()


def test_a_batch_with_duplicate_guids_keeps_the_latest_version(warehouse):
    # A page can repeat a guid; the newer version must win, whatever its place in the batch.
    newer = make_transaction("TRN-A", amount="2.00", updated_at=dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
    older = make_transaction("TRN-A", amount="1.00", updated_at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    with warehouse.connect() as con:
        counts = upsert(con, TRANSACTIONS, _frame([newer, older, make_transaction("TRN-B")]))
        assert counts == UpsertCounts(inserted=2)
        assert _rows(con) == [("TRN-A", "2.0000", "run-1"), ("TRN-B", "12.3400", "run-1")]


def test_equal_timestamps_let_the_later_row_of_the_batch_win(warehouse):
    same = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    first = make_transaction("TRN-A", amount="1.00", updated_at=same)
    last = make_transaction("TRN-A", amount="3.00", updated_at=same)
    with warehouse.connect() as con:
        upsert(con, TRANSACTIONS, _frame([first, last]))
        assert _rows(con) == [("TRN-A", "3.0000", "run-1")]


def test_rereading_unchanged_rows_writes_nothing_and_keeps_their_load_metadata(warehouse):
    batch = [make_transaction("TRN-A"), make_transaction("TRN-B")]
    with warehouse.connect() as con:
        upsert(con, TRANSACTIONS, _frame(batch, FIRST))
        assert upsert(con, TRANSACTIONS, _frame(batch, SECOND)) == UpsertCounts(unchanged=2)
        assert {run for _, _, run in _rows(con)} == {"run-1"}


def test_a_changed_row_is_updated_in_place(warehouse):
    with warehouse.connect() as con:
        upsert(con, TRANSACTIONS, _frame([make_transaction("TRN-A", status="PENDING")], FIRST))
        posted = make_transaction("TRN-A", status="POSTED", updated_at=dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
        assert upsert(con, TRANSACTIONS, _frame([posted], SECOND)) == UpsertCounts(updated=1)
        assert con.execute("select status, run_id from raw.mx_transactions").fetchall() == [("POSTED", "run-2")]


def test_a_mixed_batch_inserts_updates_and_skips_exactly_leaving_one_row_per_guid(warehouse):
    # raw.mx_transactions has no primary key to guard it (see warehouse/upsert.py): the upsert alone keeps guids
    # unique, and columns the batch does not carry (first_fetched_at) stay as the first load set them.
    later = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    with warehouse.connect() as con:
        upsert(con, TRANSACTIONS, _frame([make_transaction(g) for g in ("TRN-A", "TRN-B", "TRN-C")], FIRST))
        first_fetched = dict(con.execute("select guid, first_fetched_at from raw.mx_transactions").fetchall())
        batch = [
            make_transaction("TRN-A"),  # unchanged
            make_transaction("TRN-B", amount="9.99", updated_at=later),  # changed
            make_transaction("TRN-C", amount="1.11", updated_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),  # older
            make_transaction("TRN-D"),  # new
        ]
        assert upsert(con, TRANSACTIONS, _frame(batch, SECOND)) == UpsertCounts(inserted=1, updated=1, unchanged=2)
        assert _rows(con) == [("TRN-A", "12.3400", "run-1"), ("TRN-B", "9.9900", "run-2"),
                              ("TRN-C", "12.3400", "run-1"), ("TRN-D", "12.3400", "run-2")]  # fmt: skip
        kept = dict(con.execute("select guid, first_fetched_at from raw.mx_transactions").fetchall())
        assert {guid: kept[guid] for guid in first_fetched} == first_fetched


def test_money_and_dates_land_exact(warehouse):
    txn = make_transaction("TRN-A", amount="1234567.8901", date=dt.date(2026, 2, 28))
    with warehouse.connect() as con:
        upsert(con, TRANSACTIONS, _frame([txn]))
        amount, date, payload = con.execute("select amount, date, payload from raw.mx_transactions").fetchone()
    assert str(amount) == "1234567.8901"
    assert date == dt.date(2026, 2, 28)
    assert '"amount":1234567.8901' in payload  # as MX sent it: no float round trip


def test_an_empty_batch_is_a_no_op(warehouse):
    with warehouse.connect() as con:
        assert upsert(con, TRANSACTIONS, _frame([])) == UpsertCounts()


def test_a_stale_version_never_replaces_a_newer_one(warehouse):
    v2 = make_transaction("TRN-A", status="POSTED", amount="5.00", updated_at=dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    v1 = make_transaction("TRN-A", status="PENDING", amount="4.00", updated_at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    with warehouse.connect() as con:
        upsert(con, TRANSACTIONS, _frame([v2], FIRST))
        # v1 arrives later (a slow page, a replayed read): it is older than what we hold, so it is not written
        assert upsert(con, TRANSACTIONS, _frame([v1], SECOND)) == UpsertCounts(unchanged=1)
        assert con.execute("select status, amount::varchar, run_id from raw.mx_transactions").fetchall() == [
            ("POSTED", "5.0000", "run-1")
        ]


def test_with_equal_updated_at_the_later_fetch_wins_and_the_earlier_does_not(warehouse):
    same = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    with warehouse.connect() as con:
        upsert(con, TRANSACTIONS, _frame([make_transaction("TRN-A", amount="1.00", updated_at=same)], FIRST))
        later = make_transaction("TRN-A", amount="2.00", updated_at=same)
        assert upsert(con, TRANSACTIONS, _frame([later], SECOND)) == UpsertCounts(updated=1)
        earlier = make_transaction("TRN-A", amount="3.00", updated_at=same)
        assert upsert(con, TRANSACTIONS, _frame([earlier], FIRST)) == UpsertCounts(unchanged=1)
        assert _rows(con) == [("TRN-A", "2.0000", "run-2")]


def test_a_version_with_an_updated_at_beats_one_without(warehouse):
    with warehouse.connect() as con:
        upsert(con, TRANSACTIONS, _frame([make_transaction("TRN-A", amount="1.00", updated_at=SECOND.fetched_at)]))
        unknown = make_transaction("TRN-A", amount="9.00")
        frame = _frame([unknown], SECOND).assign(updated_at=None)
        assert upsert(con, TRANSACTIONS, frame) == UpsertCounts(unchanged=1)
        assert _rows(con) == [("TRN-A", "1.0000", "run-1")]


def test_a_merge_that_fails_leaves_its_connection_as_it_found_it(warehouse):
    # The merge steers DuckDB's join order for its own statements only: a loader that sets a failed batch aside
    # and goes on over the same connection must plan its next statements as DuckDB would.
    impossible = to_frame(TRANSACTIONS, [transaction_row(make_transaction("TRN-A"), FIRST)]).assign(date="2026-02-30")
    with warehouse.connect() as con:
        before = con.execute("select current_setting('disabled_optimizers')").fetchall()
        with pytest.raises(duckdb.ConversionException):
            upsert(con, TRANSACTIONS, impossible)
        assert con.execute("select current_setting('disabled_optimizers')").fetchall() == before
        assert upsert(con, TRANSACTIONS, _frame([make_transaction("TRN-A")])) == UpsertCounts(inserted=1)
