"""The loader's memory is bounded by its pool, whatever the size of a member's rows: a merge holds narrow columns
only (keys, digests, row names) and streams whole rows from the landed Parquet into the table."""

from decimal import Decimal

import pytest

from mx_pipeline.landing import LandingArea
from mx_pipeline.landing.transactions import TransactionLanding
from mx_pipeline.mx.pagination import Page
from mx_pipeline.warehouse import landed
from mx_pipeline.warehouse.landed import load_landed

from .conftest import make_transaction

POOL = "32MB"  # the loader's pool here: half of what one member's payloads take below
ROWS, NOTE = 16_000, "x" * 4_000  # 16,000 transactions of about 4 KB: some 68 MB of payloads


@pytest.fixture
def area(warehouse, monkeypatch) -> LandingArea:
    monkeypatch.setattr(landed, "MEMORY_LIMIT", POOL)
    return LandingArea.beside(warehouse.path)


def _land_member(area: LandingArea, run_id: str, changed: dict[int, dict] | None = None) -> None:
    """The member's whole history, 1,000 transactions a page; ``changed``: fields MX changed, by row."""
    landing = TransactionLanding(area, run_id=run_id, member_guid="MBR-1", user_guid="USR-1", batch_size=1_000)
    changed = changed or {}
    for start in range(0, ROWS, 1_000):
        rows = range(start, start + 1_000)
        landing.add(
            Page([{**make_transaction(f"TRN-{i:05d}").payload, "memo": NOTE, **changed.get(i, {})} for i in rows])
        )
    landing.finish(outcome="synced")


def _table(warehouse) -> tuple[int, int, int]:
    with warehouse.connect() as con:
        return con.execute(
            "select count(*), count(distinct guid), sum(length(payload ->> 'memo')) from raw.mx_transactions"
        ).fetchone()


def test_a_member_whose_rows_outgrow_the_loaders_pool_loads_whole_and_nothing_is_set_aside(warehouse, area):
    _land_member(area, "run-1")
    report = load_landed(warehouse, area, run_id="loader")
    assert report.members == ("MBR-1",) and report.counts.inserted == ROWS
    assert _table(warehouse) == (ROWS, ROWS, ROWS * len(NOTE))
    assert report.quarantined == 0 and not list(area.root_path.rglob("unloadable.json"))


def test_its_next_read_is_compared_row_by_row_in_the_same_pool_and_only_the_changed_row_is_written(warehouse, area):
    _land_member(area, "run-1")
    load_landed(warehouse, area, run_id="loader")
    _land_member(area, "run-2", changed={7: {"amount": Decimal("99.5"), "updated_at": "2026-11-21T09:00:00Z"}})
    report = load_landed(warehouse, area, run_id="loader")
    assert (report.counts.inserted, report.counts.updated, report.counts.unchanged) == (0, 1, ROWS - 1)
    with warehouse.connect() as con:
        changed = con.execute("select guid, amount, run_id from raw.mx_transactions where run_id = 'run-2'").fetchall()
    assert [(guid, str(amount), run) for guid, amount, run in changed] == [("TRN-00007", "99.5000", "run-2")]


def test_a_read_in_which_every_row_changed_replaces_them_all_in_the_same_pool_keeping_when_each_first_came(
    warehouse, area
):
    _land_member(area, "run-1")
    load_landed(warehouse, area, run_id="loader")
    with warehouse.connect() as con:
        first_came = dict(con.execute("select guid, first_fetched_at from raw.mx_transactions").fetchall())
    recategorized = {"top_level_category": "Shopping", "updated_at": "2026-11-21T09:00:00Z"}
    _land_member(area, "run-2", changed=dict.fromkeys(range(ROWS), recategorized))

    report = load_landed(warehouse, area, run_id="loader")

    assert (report.counts.inserted, report.counts.updated, report.counts.unchanged) == (0, ROWS, 0)
    assert report.quarantined == 0 and not list(area.root_path.rglob("unloadable.json"))
    assert _table(warehouse) == (ROWS, ROWS, ROWS * len(NOTE))
    with warehouse.connect() as con:
        rows = con.execute(
            "select guid, first_fetched_at, run_id, payload ->> 'top_level_category' from raw.mx_transactions"
        ).fetchall()
    assert {guid: first for guid, first, _, _ in rows} == first_came
    assert {(run, category) for _, _, run, category in rows} == {("run-2", "Shopping")}


def test_many_small_members_whose_rows_outgrow_the_pool_together_load_as_one_group(warehouse, area, monkeypatch):
    """DuckDB guesses a group's Parquet rows from its first file: after a member of 86 rows, 40 files look like
    3,440 rows, the join would hold the landed side's whole rows to find the 56,000 named ones, and the group would
    run out of the pool and be loaded member by member."""
    monkeypatch.setattr(landed, "MEMORY_LIMIT", "64MB")
    sizes, memo = [86] + [1_434] * 39, "x" * 1_500  # some 90 MB of payloads together
    for m, rows in enumerate(sizes):
        landing = TransactionLanding(area, run_id="run-1", member_guid=f"MBR-{m:02d}", user_guid="USR-1")
        landing.add(Page([{**make_transaction(f"TRN-{m:02d}-{i:04d}").payload, "memo": memo} for i in range(rows)]))
        landing.finish(outcome="synced")
    groups_loaded = []
    monkeypatch.setattr(landed, "_load_group", _counting_sizes(landed._load_group, groups_loaded))

    report = load_landed(warehouse, area, run_id="loader")

    assert groups_loaded == [len(sizes)]  # one group, not retried member by member
    assert report.counts.inserted == sum(sizes) and report.quarantined == 0


def _counting_sizes(load_group, sizes: list[int]):
    def counted(con, area, table, group, run_id):
        sizes.append(len(group))
        return load_group(con, area, table, group, run_id)

    return counted
