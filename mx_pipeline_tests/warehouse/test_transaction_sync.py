import datetime as dt

from mx_pipeline.landing import LandingArea
from mx_pipeline.mx.errors import MalformedResponse
from mx_pipeline.mx.pagination import Page
from mx_pipeline.warehouse.landed import load_landed
from mx_pipeline.warehouse.members import MemberToFetch
from mx_pipeline.warehouse.read_plan import plan_transaction_reads
from mx_pipeline.warehouse.sync_state import MAX_UPDATED_AT_RANGE_DAYS, coalesce_days
from mx_pipeline.warehouse.transaction_sync import SyncPolicy, extract_member_transactions, sync_member_transactions
from mx_pipeline_tests.holding import held_by_another_process

from .conftest import make_transaction

TODAY = dt.datetime.now(dt.UTC).date()
MEMBER = MemberToFetch("MBR-1", "USR-1", None)


class FakeMx:
    """MX's member transaction list, filtered the way MX filters it, recording each query."""

    def __init__(self, transactions, fail_after: int | None = None, to_date_exclusive: bool = False):
        self.transactions = {t.guid: t for t in transactions}
        self.fail_after = fail_after
        self.to_date_exclusive = to_date_exclusive  # MX's spec: "to this date (at midnight)" may exclude the day
        self.queries = []

    def __call__(self, *, from_date=None, to_date=None, from_updated_at=None, to_updated_at=None):
        self.queries.append(
            {
                "from_date": from_date,
                "to_date": to_date,
                "from_updated_at": from_updated_at,
                "to_updated_at": to_updated_at,
            }
        )
        for served, txn in enumerate(self.transactions.values()):
            if self.fail_after is not None and served == self.fail_after:
                raise MalformedResponse("HTTP 200 body is not valid JSON (512 bytes)", method="GET", path="/t")
            if (from_date and txn.date < from_date) or (to_date and txn.date > to_date):
                continue
            if self.to_date_exclusive and to_date and txn.date == to_date:
                continue
            if from_updated_at and txn.updated_at.date() < from_updated_at:
                continue
            if to_updated_at and txn.updated_at.date() > to_updated_at:
                continue
            yield Page([txn.payload])  # a page a record: a failure can break a read between any two


def _sync(warehouse, mx, run_id="run-1"):
    return sync_member_transactions(warehouse, MEMBER, mx, policy=SyncPolicy(), run_id=run_id)


def _days_ago(n):
    return TODAY - dt.timedelta(days=n)


def _at(day):
    return dt.datetime.combine(day, dt.time(12), dt.UTC)


def test_first_sync_reads_the_whole_history_then_only_changes_and_the_recent_window(warehouse):
    mx = FakeMx(
        [
            make_transaction(date=_days_ago(40), updated_at=_at(_days_ago(2))),  # MX edited it two days ago
            make_transaction(date=_days_ago(10), updated_at=_at(_days_ago(10))),  # unchanged since: in the window
        ]
    )
    _sync(warehouse, mx)
    _sync(warehouse, mx, "run-2")
    first, changed, recent = mx.queries
    # every by-date read asks a day more on either side than the days it settles
    assert first["from_updated_at"] is None and first["from_date"] == _days_ago(731)
    # the watermark's day (noon UTC: that day in any time zone MX may count in); from_updated_at has date precision
    assert changed["from_updated_at"] == _days_ago(2)
    assert changed["to_updated_at"] == TODAY  # sent, so the range MX judges is the one we checked
    assert recent == {
        "from_date": _days_ago(15),
        "to_date": TODAY + dt.timedelta(days=6),
        "from_updated_at": None,
        "to_updated_at": None,
    }


def test_a_pending_transaction_that_vanishes_upstream_is_marked_removed_not_deleted(warehouse):
    pending = make_transaction("TRN-PENDING", status="PENDING", date=_days_ago(1), updated_at=_at(_days_ago(1)))
    kept = make_transaction("TRN-KEPT", status="PENDING", date=_days_ago(1), updated_at=_at(_days_ago(1)))
    mx = FakeMx([pending, kept])
    _sync(warehouse, mx)
    del mx.transactions["TRN-PENDING"]
    result = _sync(warehouse, mx, "run-2")
    assert result.removed == 1
    with warehouse.connect() as con:
        rows = con.execute("select guid, removed_at is not null from raw.mx_transactions order by guid").fetchall()
    assert rows == [("TRN-KEPT", False), ("TRN-PENDING", True)]


def test_a_vanished_row_is_written_anew_after_every_row_whole_but_for_when_it_was_removed(warehouse):
    """Models read raw's new rows by ``loaded_at``, skipping row groups by its range: a vanished row updated where
    it lay would make them read every row group that holds one."""
    vanishing, *staying = (
        make_transaction(guid, status="PENDING", date=_days_ago(1), updated_at=_at(_days_ago(1)))
        for guid in ("TRN-A", "TRN-B", "TRN-C")
    )
    mx = FakeMx([vanishing, *staying])
    _sync(warehouse, mx)
    columns = "guid, amount, date, payload, run_id, first_fetched_at"
    with warehouse.connect() as con:
        (before,) = con.execute(f"select {columns} from raw.mx_transactions where guid = 'TRN-A'").fetchall()
    del mx.transactions["TRN-A"]
    assert _sync(warehouse, mx, "run-2").removed == 1
    with warehouse.connect() as con:
        in_file_order = con.execute("select guid, removed_at is not null from raw.mx_transactions order by rowid")
        assert in_file_order.fetchall() == [("TRN-B", False), ("TRN-C", False), ("TRN-A", True)]
        (*after, moved) = con.execute(
            f"select {columns}, loaded_at = removed_at from raw.mx_transactions where guid = 'TRN-A'"
        ).fetchone()
    assert tuple(after) == before
    assert moved  # loaded_at moved with removed_at: the incremental models read the row again


def test_a_pending_row_older_than_the_look_back_is_still_reconciled(warehouse):
    old = make_transaction("TRN-OLD", status="PENDING", date=_days_ago(30), updated_at=_at(_days_ago(30)))
    mx = FakeMx([old])
    _sync(warehouse, mx)
    del mx.transactions["TRN-OLD"]
    assert _sync(warehouse, mx, "run-2").removed == 1
    assert mx.queries[-1]["from_date"] == _days_ago(31)


def test_a_removed_pending_that_reappears_is_live_again(warehouse):
    pending = make_transaction("TRN-P", status="PENDING", date=_days_ago(1), updated_at=_at(_days_ago(1)))
    mx = FakeMx([pending])
    _sync(warehouse, mx)
    mx.transactions.clear()
    _sync(warehouse, mx, "run-2")
    mx.transactions["TRN-P"] = pending
    _sync(warehouse, mx, "run-3")
    with warehouse.connect() as con:
        assert con.execute("select removed_at from raw.mx_transactions").fetchall() == [(None,)]


def test_a_posted_row_re_issued_under_a_new_guid_is_marked_removed_so_it_is_not_counted_twice(warehouse):
    posted = make_transaction("TRN-OLD", date=_days_ago(2), updated_at=_at(_days_ago(2)))
    mx = FakeMx([posted])
    _sync(warehouse, mx)
    mx.transactions = {"TRN-NEW": make_transaction("TRN-NEW", date=_days_ago(2), updated_at=_at(_days_ago(0)))}
    assert _sync(warehouse, mx, "run-2").removed == 1
    with warehouse.connect() as con:
        rows = con.execute("select guid, removed_at is not null from raw.mx_transactions order by guid").fetchall()
    assert rows == [("TRN-NEW", False), ("TRN-OLD", True)]


def test_rows_older_than_the_reconcile_window_are_never_judged_vanished(warehouse):
    old = make_transaction("TRN-OLD", date=_days_ago(60), updated_at=_at(_days_ago(60)))
    mx = FakeMx([old])
    _sync(warehouse, mx)
    mx.transactions.clear()  # not listed by the recent-window read, which never asks for it
    assert _sync(warehouse, mx, "run-2").removed == 0


def test_an_unreadable_page_is_quarantined_and_the_member_is_read_again_next_time(warehouse):
    transactions = [make_transaction(date=_days_ago(3), updated_at=_at(_days_ago(3))) for _ in range(3)]
    mx = FakeMx(transactions, fail_after=2)
    result = _sync(warehouse, mx)
    assert result.error and "MalformedResponse" in result.error
    with warehouse.connect() as con:
        assert con.execute("select reason from ops.quarantine").fetchone()[0].startswith("MalformedResponse")
        assert con.execute("select last_outcome, transactions_watermark from ops.member_sync").fetchall() == [
            ("failed", None)
        ]
        assert con.execute("select count(*) from raw.mx_transactions").fetchone() == (2,)  # what arrived is kept
    mx.fail_after = None
    result = _sync(warehouse, mx, "run-2")
    assert result.error is None and result.counts.inserted == 1
    assert mx.queries[-1]["from_updated_at"] is None  # no complete sync yet: the whole history again


def test_the_watermark_never_moves_back(warehouse):
    mx = FakeMx([make_transaction(date=_days_ago(5), updated_at=_at(_days_ago(5)))])
    _sync(warehouse, mx)
    mx.transactions.clear()
    _sync(warehouse, mx, "run-2")
    with warehouse.connect() as con:
        (watermark,) = con.execute("select transactions_watermark from ops.member_sync").fetchone()
    assert watermark == _at(_days_ago(5))


def _rows(warehouse):
    with warehouse.connect() as con:
        return con.execute("select guid, removed_at is not null from raw.mx_transactions order by guid").fetchall()


def test_a_copy_re_issued_long_after_its_date_retires_the_old_guid_with_one_extra_read(warehouse):
    mx = FakeMx([make_transaction("TRN-OLD", date=_days_ago(40), updated_at=_at(_days_ago(40)))])
    _sync(warehouse, mx)
    # MX re-issues the 40-day-old purchase under a new guid: only the change filter sees it, and nothing
    # lists the old guid's day any more
    mx.transactions = {"TRN-NEW": make_transaction("TRN-NEW", date=_days_ago(40), updated_at=_at(TODAY))}
    result = _sync(warehouse, mx, "run-2")
    assert result.removed == 1
    assert _rows(warehouse) == [("TRN-NEW", False), ("TRN-OLD", True)]
    late = mx.queries[-1]
    assert late == {
        "from_date": _days_ago(41),
        "to_date": _days_ago(39),
        "from_updated_at": None,
        "to_updated_at": None,
    }
    # first sync, then the changes (which list the recent window in full: it holds nothing) + the one late day
    assert len(mx.queries) == 3


def test_a_read_needs_only_its_plan_while_another_process_holds_the_warehouse(warehouse):
    """Reading (the late-arrival check included) never opens the warehouse: only planning and loading do."""
    mx = FakeMx([make_transaction("TRN-OLD", date=_days_ago(40), updated_at=_at(_days_ago(40)))])
    _sync(warehouse, mx)
    mx.transactions = {"TRN-NEW": make_transaction("TRN-NEW", date=_days_ago(40), updated_at=_at(TODAY))}
    area = LandingArea.beside(warehouse.path)
    with warehouse.connect() as con:
        plan = plan_transaction_reads(con, area, [MEMBER], SyncPolicy(), run_id="run-2")
    with held_by_another_process(warehouse.path):
        read = extract_member_transactions(area, plan, MEMBER, mx)
    assert read.error is None and mx.queries[-1]["from_date"] == _days_ago(41)  # the late day, listed again
    assert load_landed(warehouse, area, run_id="run-2").removed == 1
    assert _rows(warehouse) == [("TRN-NEW", False), ("TRN-OLD", True)]
    plan.discard()
    assert not area.fs.exists(f"{area.root}/plans") or not area.fs.ls(f"{area.root}/plans")


def test_a_day_listed_again_keeps_its_rows_whether_mx_reads_to_date_as_inclusive_or_not(warehouse):
    """MX's to_date is "to this date (at midnight)": each by-date read asks a day more on either side than the
    days it settles, so an exclusive reading never makes a day's rows look vanished."""
    purchase = make_transaction("TRN-COFFEE", date=_days_ago(40), updated_at=_at(_days_ago(40)))
    mx = FakeMx([purchase], to_date_exclusive=True)
    _sync(warehouse, mx)
    # the bank reports an identical coffee weeks late: its day is listed again by date
    mx.transactions["TRN-COFFEE-2"] = make_transaction("TRN-COFFEE-2", date=_days_ago(40), updated_at=_at(TODAY))
    result = _sync(warehouse, mx, "run-2")
    assert result.removed == 0
    assert _rows(warehouse) == [("TRN-COFFEE", False), ("TRN-COFFEE-2", False)]


def test_a_sync_where_nothing_late_arrived_makes_no_extra_read(warehouse):
    mx = FakeMx([make_transaction("TRN-OLD", date=_days_ago(40), updated_at=_at(_days_ago(40)))])
    _sync(warehouse, mx)
    mx.transactions["TRN-RECENT"] = make_transaction("TRN-RECENT", date=_days_ago(1), updated_at=_at(TODAY))
    mx.transactions["TRN-OLD"] = make_transaction(  # MX edits the old one: not new to us, nothing to re-list
        "TRN-OLD", date=_days_ago(40), updated_at=_at(TODAY), amount="13.00"
    )
    _sync(warehouse, mx, "run-2")
    _sync(warehouse, mx, "run-3")
    assert len(mx.queries) == 1 + 1 + 1  # each later sync: the changes alone, which list the recent window in full


def test_an_identical_purchase_arriving_late_is_a_second_purchase(warehouse):
    coffee = {"date": _days_ago(40), "amount": "4.50", "description": "Bean There Coffee"}
    mx = FakeMx([make_transaction("TRN-COFFEE-1", updated_at=_at(_days_ago(40)), **coffee)])
    _sync(warehouse, mx)
    mx.transactions["TRN-COFFEE-2"] = make_transaction("TRN-COFFEE-2", updated_at=_at(TODAY), **coffee)
    assert _sync(warehouse, mx, "run-2").removed == 0  # MX lists both: both stay
    assert _rows(warehouse) == [("TRN-COFFEE-1", False), ("TRN-COFFEE-2", False)]


def test_a_late_copy_stored_by_a_failed_sync_is_still_settled_by_the_next_one(warehouse):
    mx = FakeMx([make_transaction("TRN-OLD", date=_days_ago(40), updated_at=_at(_days_ago(40)))])
    _sync(warehouse, mx)
    mx.transactions = {
        "TRN-NEW": make_transaction("TRN-NEW", date=_days_ago(40), updated_at=_at(TODAY)),
        "TRN-X": make_transaction("TRN-X", date=_days_ago(2), updated_at=_at(TODAY)),
    }
    mx.fail_after = 1  # TRN-NEW is stored, then the page breaks
    assert _sync(warehouse, mx, "run-2").error
    mx.fail_after = None
    assert _sync(warehouse, mx, "run-3").removed == 1
    assert _rows(warehouse) == [("TRN-NEW", False), ("TRN-OLD", True), ("TRN-X", False)]


def test_late_days_are_coalesced_into_few_reads():
    days = [_days_ago(n) for n in (300, 298, 200, 100, 99, 60, 30)]
    assert coalesce_days(days, merge_gap_days=7, max_ranges=4) == [
        (_days_ago(300), _days_ago(298)),
        (_days_ago(200), _days_ago(200)),
        (_days_ago(100), _days_ago(99)),
        (_days_ago(60), _days_ago(30)),
    ]
    assert coalesce_days(days, merge_gap_days=7, max_ranges=2) == [
        (_days_ago(300), _days_ago(200)),
        (_days_ago(100), _days_ago(30)),
    ]
    assert coalesce_days([], merge_gap_days=7, max_ranges=4) == []


def test_a_member_away_past_mx_s_six_months_is_read_again_in_full_and_its_watermark_moves(warehouse):
    mx = FakeMx(
        [
            make_transaction("TRN-KEPT", date=_days_ago(200), updated_at=_at(_days_ago(200))),
            make_transaction("TRN-GONE", date=_days_ago(190), updated_at=_at(_days_ago(190))),
        ]
    )
    _sync(warehouse, mx)  # watermark: 190 days ago, older than MX's change filter may reach back
    del mx.transactions["TRN-GONE"]
    mx.transactions["TRN-NEW"] = make_transaction("TRN-NEW", date=_days_ago(1), updated_at=_at(TODAY))
    result = _sync(warehouse, mx, "run-2")
    assert result.error is None
    assert mx.queries[-1] == {
        "from_date": _days_ago(731),
        "to_date": TODAY + dt.timedelta(days=6),
        "from_updated_at": None,
        "to_updated_at": None,
    }
    assert len(mx.queries) == 2
    assert result.removed == 1  # the full read settles everything it covers
    assert _rows(warehouse) == [("TRN-GONE", True), ("TRN-KEPT", False), ("TRN-NEW", False)]
    with warehouse.connect() as con:
        assert con.execute("select transactions_watermark from ops.member_sync").fetchone() == (_at(TODAY),)


def test_the_change_filter_never_reaches_back_further_than_mx_allows(warehouse):
    mx = FakeMx([make_transaction("TRN-1", date=_days_ago(179), updated_at=_at(_days_ago(179)))])
    _sync(warehouse, mx)
    _sync(warehouse, mx, "run-2")
    changed = mx.queries[1]
    assert changed["from_updated_at"] == _days_ago(179)  # the watermark's day: still allowed
    assert (changed["to_updated_at"] - changed["from_updated_at"]).days <= MAX_UPDATED_AT_RANGE_DAYS


def test_the_day_after_a_member_connected_one_read_brings_the_changes_and_settles_the_recent_window(warehouse):
    """Its whole history carries the connect day's updated_at: the changes read lists the recent window in full
    (every row we hold there was updated that day), so it settles vanished rows and no second read is needed."""
    connected = _at(_days_ago(1))
    mx = FakeMx(
        [
            make_transaction("TRN-OLD", date=_days_ago(100), updated_at=connected),
            make_transaction("TRN-PENDING", status="PENDING", date=_days_ago(2), updated_at=connected),
        ]
    )
    _sync(warehouse, mx)
    del mx.transactions["TRN-PENDING"]  # posted under a new guid, as MX often does
    mx.transactions["TRN-POSTED"] = make_transaction("TRN-POSTED", date=_days_ago(1), updated_at=_at(TODAY))
    result = _sync(warehouse, mx, "run-2")
    assert len(mx.queries) == 2
    assert mx.queries[1]["from_updated_at"] == _days_ago(1)
    assert mx.queries[1]["to_date"] == TODAY + dt.timedelta(days=6)  # a day past the window, as by-date reads ask
    assert result.removed == 1
    assert _rows(warehouse) == [("TRN-OLD", False), ("TRN-PENDING", True), ("TRN-POSTED", False)]


def test_a_removed_row_mx_may_list_again_unchanged_keeps_the_recent_window_read(warehouse):
    pending = make_transaction("TRN-P", status="PENDING", date=_days_ago(3), updated_at=_at(_days_ago(3)))
    mx = FakeMx([pending])
    _sync(warehouse, mx)
    mx.transactions.clear()
    _sync(warehouse, mx, "run-2")  # TRN-P vanished: marked removed
    mx.transactions["TRN-NEW"] = make_transaction("TRN-NEW", date=_days_ago(40), updated_at=_at(TODAY))
    _sync(warehouse, mx, "run-3")  # the watermark moves to today; TRN-P was last updated three days ago
    mx.transactions["TRN-P"] = pending  # MX lists it again, unchanged: no change filter would see it
    mx.queries.clear()
    _sync(warehouse, mx, "run-4")
    assert [q["from_updated_at"] for q in mx.queries][:2] == [TODAY, None]  # the changes, then the window by date
    assert ("TRN-P", False) in _rows(warehouse)
