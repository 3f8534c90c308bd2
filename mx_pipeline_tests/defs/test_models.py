"""The SQL models in the code location: built after ingest, checked, and published for analysts."""

import subprocess
import sys
import textwrap

import duckdb

from mx_pipeline.sandbox.categories import CATEGORIES_BY_GUID, Category

from .conftest import metadata_of


def check(result, name):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def analytics(pipeline):
    return pipeline.warehouse.path.with_name("analytics.duckdb")


def test_the_marts_are_built_after_ingest_and_every_sandbox_category_maps(pipeline):
    result = pipeline.materialize()
    metadata = metadata_of(result)
    transactions = pipeline.query("select count(*) from raw.mx_transactions where removed_at is null")[0][0]
    assert 0 < metadata["marts.fct_transactions"]["dagster/row_count"] <= transactions
    coverage = check(result, "category_coverage")
    assert coverage.passed and coverage.metadata["coverage"].value == 1.0


def test_an_mx_category_we_do_not_know_lands_in_the_fallback_and_fails_coverage(pipeline, monkeypatch):
    # MX adds a category to its taxonomy: a top level and subcategory our map has never seen.
    alien = Category("CAT-interplanetary-space-travel", "Space Travel", "CAT-interplanetary", "Interplanetary", False)
    monkeypatch.setitem(CATEGORIES_BY_GUID, alien.guid, alien)
    world = pipeline.sandbox.world
    with world.lock:
        txn = next(t for t in world.transactions[pipeline.member_of["user-ok-1"]].values() if t.status == "POSTED")
        txn.category_guid = alien.guid
    result = pipeline.materialize()
    coverage = check(result, "category_coverage")
    assert not coverage.passed
    assert coverage.metadata["unmapped_mx_categories"].value == [
        {"reason": "fallback", "top_level_category": "Interplanetary", "category": "Space Travel", "transactions": 1}
    ]
    assert pipeline.query("select category_id from marts.fct_transactions where transaction_guid = ?", txn.guid) == [
        ("uncategorized.unmapped",)
    ]  # kept, never dropped


def test_an_analyst_reading_the_published_marts_never_blocks_a_run_nor_sees_half_of_one(pipeline):
    pipeline.materialize()
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import duckdb, sys
            con = duckdb.connect({str(analytics(pipeline))!r}, read_only=True)
            print(con.execute("select count(*) from marts.fct_transactions").fetchone()[0], flush=True)
            sys.stdin.readline()  # the run happens now, while this session is open
            print(con.execute("select count(*) from marts.fct_transactions").fetchone()[0], flush=True)
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        before = int(reader.stdout.readline())
        pipeline.admin(f"members/{pipeline.member_of['user-ok-1']}/transactions", count=3)
        assert pipeline.materialize().success  # not blocked by the open session
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) == before  # the open session keeps its whole, older copy
    finally:
        reader.kill()
        reader.wait()
    with duckdb.connect(str(analytics(pipeline)), read_only=True) as fresh:
        assert fresh.execute("select count(*) from marts.fct_transactions").fetchone()[0] == before + 3
        (comment,) = fresh.execute(
            "select comment from duckdb_tables() where schema_name = 'marts' and table_name = 'fct_transactions'"
        ).fetchone()
    assert comment.startswith("One row per transaction an analyst should count")


def test_the_member_health_preview_keeps_each_member_on_one_row_whatever_its_reason_says():
    from mx_pipeline.defs.models.assets import _preview

    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        """
        create table marts.member_health as select * from (values
            ('MBR-1', 'ada', 'mxbank', 'CONNECTED', 'ready', null, null),
            ('MBR-2', 'kat', 'mxbank', 'CHALLENGED', 'needs_mfa', 'the bank asks:\nwhich | city?', null)
        ) as t(member_guid, user_id, institution_code, connection_status, route, reason, retired_at)
        """
    )
    table = _preview(con, "marts.member_health")["preview"].value.splitlines()
    assert table[0] == "| member_guid | user_id | institution_code | connection_status | route | reason |"
    assert table[2:] == [
        "| MBR-2 | kat | mxbank | CHALLENGED | needs_mfa | the bank asks: which \\| city? |",  # needing someone first
        "| MBR-1 | ada | mxbank | CONNECTED | ready |  |",
    ]
