"""Benchmark: the SQL models over N synthetic raw transactions (default 5,000,000), beside two baselines.

Not a test (nothing asserts); run it by hand:

    .venv/bin/python mx_pipeline_tests/benchmarks/bench_models.py --rows 5000000

Prints time and peak RSS for: a bare DuckDB copy of ``raw.mx_transactions`` (the floor), the models built in
full, the models after a small change (1,000 new rows: the incremental path), and a plain pandas
implementation of the same cleaning and mapping (sign, normalize, map to our categories, drop vanished and
expired pendings, hide pendings whose posted twin arrived by exact normalized description). Each figure comes
from its own process, so each peak RSS is that phase's own.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MERCHANTS = ["SQ *BEAN THERE COFFEE", "FRESH BASKET #{n} PROVO UT", "QUICKFUEL {n} PHOENIX", "SHOPAZON MKTP US*{n}",
             "METRO TRANSIT FARE", "HANDY HARDWARE {n}", "PAYROLL ACME CORP", "NETFLIX.COM {n}"]  # fmt: skip


def generate(path: Path, rows: int) -> None:
    from mx_pipeline.warehouse import Warehouse
    from mx_pipeline.warehouse.models import load_reference

    merchants = ", ".join(f"'{m}'" for m in MERCHANTS)
    with Warehouse(path).connect() as con:
        load_reference(con)
        con.execute(
            f"""
            create temp table categories as
            select row_number() over () - 1 as n, mx_top_level_category as top,
                   coalesce(mx_category, mx_top_level_category) as category
            from reference.mx_category_map;
            insert into raw.mx_transactions by position
            select
                'TRN-' || i, 'MBR-' || (i // 400), 'ACT-' || (i // 100), 'USR-' || (i // 800),
                case when i % 50 = 0 then 'PENDING' else 'POSTED' end,
                case when i % 13 = 0 then 'CREDIT' else 'DEBIT' end,
                cast(round(1 + (hash(i) % 20000) / 100.0, 2) as decimal(18, 4)),
                current_date - cast(i % 730 as integer),
                now() - interval 1 day,
                case when i % 97 = 0 then now() - interval 1 day end,
                json_object(
                    'guid', 'TRN-' || i,
                    'description', replace(list_extract([{merchants}], 1 + i % 8), '{{n}}', ''),
                    'original_description', replace(list_extract([{merchants}], 1 + i % 8), '{{n}}',
                                                    cast(1000 + i % 9000 as varchar)),
                    'category', c.category, 'top_level_category', c.top,
                    'merchant_guid', 'MCH-' || (i % 8), 'currency_code', 'USD',
                    'transacted_at', strftime(current_date - cast(i % 730 as integer), '%Y-%m-%dT12:00:00Z')),
                'generate', now() - interval 1 day, now() - interval 1 day
            from range({rows}) as t(i)
            join categories as c on c.n = t.i % (select count(*) from categories)
            """
        )


def bare_copy(path: Path) -> str:
    import duckdb

    con = duckdb.connect(str(path))
    started = time.perf_counter()
    con.execute("create or replace table raw.copy_of_transactions as select * from raw.mx_transactions")
    return f"bare DuckDB copy of raw: {time.perf_counter() - started:.1f} s"


def models(path: Path, small_change: bool) -> str:
    from mx_pipeline.defs.resources import WarehouseResource
    from mx_pipeline.warehouse.models import load_models, load_reference, run_model
    from mx_pipeline.warehouse.publish import publish

    # The pipeline's own DuckDB memory cap (WarehouseResource.memory_limit), as in production.
    with WarehouseResource(path=str(path)).open().connect() as con:
        if small_change:
            con.execute(
                """
                insert into raw.mx_transactions
                select 'NEW-' || i, 'MBR-1', 'ACT-' || i, 'USR-1', 'POSTED', 'DEBIT', 9.99, current_date, now(), null,
                       json_object('description', 'NEW SHOP', 'category', 'Groceries',
                                   'top_level_category', 'Food & Dining'), 'new', now(), now()
                from range(1000) as t(i)
                """
            )
        started = time.perf_counter()
        load_reference(con)
        results = [run_model(con, m, run_id="bench") for m in load_models()]
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        publish(con, path.with_name("analytics.duckdb"))
        published = time.perf_counter() - started
    fct = next(r for r in results if r.name == "marts.fct_transactions")
    label = "models after 1,000 new rows (incremental)" if small_change else "models, full build"
    return (
        f"{label}: {seconds:.1f} s, fct_transactions {fct.rows:,} rows, {fct.recomputed:,} recomputed ({fct.mode});"
        f" then publishing analytics.duckdb {published:.1f} s"
    )


def pandas_baseline(path: Path) -> str:
    import duckdb
    import pandas as pd

    from mx_pipeline.warehouse.models import REFERENCE_DIR

    started = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    raw = con.execute(
        """
        select guid, account_guid, status, type, amount, date, removed_at,
               payload ->> 'description' as description, payload ->> 'original_description' as original,
               payload ->> 'category' as category, payload ->> 'top_level_category' as top
        from raw.mx_transactions
        """
    ).df()
    con.close()
    raw["amount"] = raw["amount"].where(raw["type"] != "DEBIT", -raw["amount"])
    text = raw["description"].fillna(raw["original"]).str.lower()
    text = text.str.replace(r"(x{2,}|\*{2,}|#)\s*\d+|\b\d{4,}\b", " ", regex=True)
    text = text.str.replace(r"[^a-z0-9& ]+", " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    raw["description_normalized"] = text
    mapping = pd.read_csv(REFERENCE_DIR / "mx_category_map.csv", dtype=str)
    exact = mapping.dropna(subset=["mx_category"]).rename(columns={"mx_top_level_category": "top",
                                                                   "mx_category": "category"})  # fmt: skip
    top = mapping[mapping["mx_category"].isna()][["mx_top_level_category", "category_id"]]
    top = top.rename(columns={"mx_top_level_category": "top", "category_id": "top_category_id"})
    raw = raw.merge(exact, on=["top", "category"], how="left").merge(top, on="top", how="left")
    raw["category_id"] = raw["category_id"].fillna(raw["top_category_id"]).fillna("uncategorized.unmapped")
    live = raw[raw["removed_at"].isna()]
    cutoff = pd.Timestamp.now().normalize() - pd.Timedelta(days=14)
    live = live[~((live["status"] == "PENDING") & (pd.to_datetime(live["date"]) < cutoff))]
    pending, posted = live[live["status"] == "PENDING"], live[live["status"] == "POSTED"]
    twins = pending.merge(posted, on=["account_guid", "amount", "description_normalized"], suffixes=("", "_posted"))
    counted = live[~live["guid"].isin(twins["guid"])]
    return f"pandas, same cleaning and mapping: {time.perf_counter() - started:.1f} s, {len(counted):,} rows"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--phase", choices=["copy", "models", "incremental", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        line = {
            "copy": lambda: bare_copy(args.path),
            "models": lambda: models(args.path, small_change=False),
            "incremental": lambda: models(args.path, small_change=True),
            "pandas": lambda: pandas_baseline(args.path),
        }[args.phase]()
        print(f"{line}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB", flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        started = time.perf_counter()
        generate(path, args.rows)
        print(f"generated {args.rows:,} raw transactions in {time.perf_counter() - started:.1f} s", flush=True)
        for phase in ("copy", "models", "incremental", "pandas"):
            subprocess.run([sys.executable, __file__, "--phase", phase, "--path", str(path)], check=True)


if __name__ == "__main__":
    main()
