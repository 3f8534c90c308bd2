"""Checks on the marts: every MX category that reached us maps to one of ours, and pending twins are accounted for."""

import dagster as dg
import duckdb

from mx_pipeline.defs.grouped_checks import Check, Checking, grouped_checks
from mx_pipeline.defs.ingest.group import POOL
from mx_pipeline.defs.nothing_checked import unless_nothing_checked
from mx_pipeline.defs.resources import WarehouseResource

FCT = dg.AssetKey(["marts", "fct_transactions"])
PENDING_MATCHES = dg.AssetKey(["staging", "stg_pending_matches"])
UNMAPPED = "('fallback', 'unknown_category_id')"  # category sources that mean "not really categorized"


def category_coverage(checking: Checking, con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    total, fallback = con.execute(
        f"select count(*), count(*) filter (where category_source in {UNMAPPED}) from marts.fct_transactions"
    ).fetchone()
    unmapped = con.execute(
        f"""
        select f.category_source, s.mx_top_level_category, s.mx_category, count(*) as transactions
        from marts.fct_transactions as f join staging.stg_transactions as s using (transaction_guid)
        where f.category_source in {UNMAPPED} group by all order by transactions desc limit 50
        """
    ).fetchall()
    # Mapped, but only through their top level: MX subcategories the map could learn.
    by_top_level = con.execute(
        """
        select s.mx_top_level_category, s.mx_category, count(*) as transactions
        from marts.fct_transactions as f join staging.stg_transactions as s using (transaction_guid)
        where f.category_source = 'mx_top_level' and s.mx_category <> s.mx_top_level_category
        group by all order by transactions desc limit 50
        """
    ).fetchall()
    result = dg.AssetCheckResult(
        passed=fallback == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "coverage": 1.0 if total == 0 else round(1 - fallback / total, 6),
            "transactions_in_fallback": fallback,
            "unmapped_mx_categories": dg.MetadataValue.json(
                [
                    {"reason": source, "top_level_category": top, "category": category, "transactions": n}
                    for source, top, category, n in unmapped
                ]
            ),
            "mapped_by_top_level_only": dg.MetadataValue.json(
                [
                    {"top_level_category": top, "category": category, "transactions": n}
                    for top, category, n in by_top_level
                ]
            ),
        },
    )
    return unless_nothing_checked(result, total, "marts.fct_transactions")


def transactions_are_unique(checking: Checking, con: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    rows, distinct = con.execute(
        "select count(*), count(distinct transaction_guid) from marts.fct_transactions"
    ).fetchone()
    result = dg.AssetCheckResult(
        passed=rows == distinct, severity=dg.AssetCheckSeverity.ERROR, metadata={"duplicates": rows - distinct}
    )
    return unless_nothing_checked(result, rows, "marts.fct_transactions")


fct_transactions_checks = grouped_checks(
    FCT,
    {
        "category_coverage": Check(
            category_coverage,
            "Every MX category seen maps to one of ours; fails listing the unmapped ones (now in the fallback).",
        ),
        "transactions_are_unique": Check(
            transactions_are_unique,
            "Each transaction is counted once (a duplicated mapping row must never duplicate money).",
        ),
    },
    pool=POOL,
)


@dg.asset_check(
    asset=PENDING_MATCHES,
    pool=POOL,
    description="Reports pending->posted twins matched, and ambiguous candidates left unmerged for review.",
)
def pending_twins(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.open().connect() as con:
        matched, ambiguous = con.execute(
            """
            select count(*) filter (where is_match), count(distinct pending_guid) filter (where not is_match)
            from staging.stg_pending_matches
            """
        ).fetchone()
        (pending,) = con.execute("select count(*) from staging.stg_transactions where status = 'PENDING'").fetchone()
    result = dg.AssetCheckResult(
        passed=True,  # ambiguity is expected (two identical pending purchases): it is counted, never guessed
        metadata={"matched": matched, "pending_left_ambiguous": ambiguous, "pending_transactions": pending},
    )
    return unless_nothing_checked(result, pending, "the pending transactions in staging.stg_transactions")
