"""Benchmark: the SQL models over N synthetic raw transactions (default 5,000,000), beside the floor and pandas.

Not a test (nothing asserts); run it by hand (a small ``--rows`` to check it works):

    .venv/bin/python mx_pipeline_tests/benchmarks/bench_models.py --rows 5000000

The raw rows are spread over many users, members and accounts (about 330 rows per account, 3 accounts per
member, 2 members per user, two years of dates) with MX's payload shape (about 30 fields), and carry what the
models exist for: pending rows whose posted twin arrived under a new guid, identical purchases (same account,
day, amount and merchant, each its own guid), re-issued guids (the old one removed) and rows MX stopped listing.

Phases, each in its own process (so each peak RSS is that phase's own), printed side by side at the end:

- ``copy``: a bare DuckDB copy of ``raw.mx_transactions`` under the models' memory cap (the floor);
- ``full``: every model built in full (the pipeline's runner and memory cap), then the analysts' file published;
- ``increment``: 1% new rows spread over every account (new purchases, pendings and their posted twins,
  identical purchases, re-issues) plus 0.1% of old rows MX stopped listing (marked removed as the loader marks
  them), then the models and the publish the ``sql_models`` asset calls;
- ``pandas``: a plain pandas port of the same logic, as a data team would write it: payload JSON parsed per
  row, sign, normalized description, fingerprint, pending matching (account, amount, -1..+5 days, Jaro-Winkler
  >= 0.8 on the normalized descriptions, unambiguous pairs only), vanished rows and pendings older than 14
  days dropped, MX categories mapped to ours (exact, then top level, then the fallback; unknown ids kept),
  our category's kind and parent, the user id joined, and monthly spend by category. It leaves out the
  product's overrides (none in this data), ``dim_accounts``, ``member_health``, the writes of the tables and
  the analysts' file, and incremental runs; its Jaro-Winkler is plain Python (rapidfuzz is not installed),
  run only on the candidate pairs.
"""

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mx_pipeline_tests.benchmarks.increment_floor import increment_floor
from mx_pipeline_tests.benchmarks.memory import peak_rss_mib

MERCHANTS = [("Bean There Coffee", "SQ *BEAN THERE COFFEE {n}"), ("Fresh Basket", "FRESH BASKET #{n} PROVO UT"),
             ("QuickFuel", "QUICKFUEL {n} PHOENIX AZ"), ("Shopazon", "SHOPAZON MKTP US*{n}"),
             ("Metro Transit", "METRO TRANSIT FARE REF {n}"), ("Handy Hardware", "HANDY HARDWARE {n}"),
             ("Acme Corp", "PAYROLL ACME CORP {n}"), ("Netflix", "NETFLIX.COM {n}"),
             ("Corner Deli", "CORNER DELI XX{n}"), ("City Power", "CITY POWER & LIGHT {n}")]  # fmt: skip
ROWS_PER_ACCOUNT = 330


def _rows_sql(start: int, count: int, accounts: int, *, days: int, fetched: str) -> str:
    """``count`` MX-shaped transactions numbered from ``start``; every 100 rows hold the shapes the models handle.

    Position k = i % 100: 0 a pending, 1 its posted twin (a new guid, a day later), 3 a guid MX re-issued
    (removed) and 4 its new guid, 5 a row MX stopped listing, 7 an identical purchase of 6 (same account, day,
    amount and merchant), 50 a pending with no twin (it expires after 14 days); the rest are plain purchases.
    """
    described = ", ".join(f"'{d}'" for d, _ in MERCHANTS)
    originals = ", ".join(f"'{o}'" for _, o in MERCHANTS)
    return f"""
    with numbered as (
        select i, i % 100 as k, case when i % 100 in (1, 4, 7) then i - 1 else i end as src
        from range({start}, {start + count}) as t(i)
    ),
    shaped as (
        select n.*, cast(hash(n.src) % {accounts} as bigint) as account,
               cast(1 + hash(n.src * 7) % {len(MERCHANTS)} as bigint) as merchant,
               current_date - cast(hash(n.src * 13) % {days} as integer) + case when n.k = 1 then 1 else 0 end
                   as day,
               cast((1 + hash(n.src * 31) % 20000) / 100 as decimal(18, 2)) as amount,
               case when n.k in (0, 50) then 'PENDING' else 'POSTED' end as status,
               case when n.src % 11 = 0 then 'CREDIT' else 'DEBIT' end as type,
               c.category, c.top
        from numbered as n
        join bench_categories as c on c.n = hash(n.src * 17) % (select count(*) from bench_categories)
    )
    select
        'TRN-' || i as guid, 'MBR-' || account // 3 as member_guid, 'ACT-' || account as account_guid,
        'USR-' || account // 6 as user_guid, status, type, amount, day as date, {fetched} as updated_at,
        case when k in (3, 5) or (k = 0 and day < current_date - 14) then {fetched} end as removed_at,
        json_object(
            'guid', 'TRN-' || i, 'id', 'ext-' || i, 'account_guid', 'ACT-' || account,
            'member_guid', 'MBR-' || account // 3, 'user_guid', 'USR-' || account // 6, 'account_id', 'acct-' || account,
            'amount', amount, 'type', type, 'status', status, 'currency_code', 'USD', 'date', strftime(day, '%Y-%m-%d'),
            'transacted_at', strftime(day, '%Y-%m-%dT15:04:05Z'),
            'posted_at', case when status = 'POSTED' then strftime(day, '%Y-%m-%dT23:00:00Z') end,
            'created_at', strftime(day, '%Y-%m-%dT23:00:00Z'), 'updated_at', strftime(day, '%Y-%m-%dT23:00:00Z'),
            'description', list_extract([{described}], merchant),
            'original_description', replace(list_extract([{originals}], merchant), '{{n}}',
                                            cast(1000 + hash(src * 3) % 9000 as varchar)),
            'category', category, 'top_level_category', top, 'category_guid', 'CAT-' || hash(category) % 1000,
            'merchant_guid', 'MCH-' || merchant, 'merchant_category_code', 5000 + merchant,
            'merchant_location_guid', null, 'is_bill_pay', false, 'is_direct_deposit', merchant = 7,
            'is_expense', type = 'DEBIT', 'is_fee', false, 'is_income', merchant = 7, 'is_international', false,
            'is_overdraft_fee', false, 'is_payroll_advance', false, 'is_recurring', merchant in (8, 10),
            'is_subscription', merchant = 8, 'latitude', null, 'longitude', null, 'memo', null,
            'check_number_string', null, 'extended_transaction_type', null, 'localized_description', null,
            'localized_memo', null, 'metadata', null) as payload,
        'bench' as run_id, {fetched} as fetched_at, {fetched} as first_fetched_at
    from shaped
    """


def _accounts(rows: int) -> int:
    return max(rows // ROWS_PER_ACCOUNT, 6)


def _categories(con) -> None:
    con.execute(
        """
        create or replace temp table bench_categories as
        select row_number() over () - 1 as n, mx_top_level_category as top,
               coalesce(mx_category, mx_top_level_category) as category
        from reference.mx_category_map
        """
    )


def generate(path: Path, rows: int) -> None:
    from mx_pipeline.warehouse import Warehouse
    from mx_pipeline.warehouse.models import load_reference

    accounts = _accounts(rows)
    with Warehouse(path).connect() as con:
        load_reference(con)
        _categories(con)
        fetched = "now() - interval 1 day"
        con.execute(
            f"insert into raw.mx_transactions by name {_rows_sql(0, rows, accounts, days=730, fetched=fetched)}"
        )
        con.execute(
            f"""
            insert into raw.mx_users by name
            select 'USR-' || u as guid, 'user-' || u as id, json_object('guid', 'USR-' || u) as payload,
                   'bench' as run_id, {fetched} as fetched_at
            from range({(accounts + 5) // 6}) as t(u);
            insert into raw.mx_members by name
            select 'MBR-' || m as guid, 'USR-' || m // 2 as user_guid, 'mxbank' as institution_code,
                   'CONNECTED' as connection_status, json_object('guid', 'MBR-' || m) as payload, 'bench' as run_id,
                   {fetched} as fetched_at
            from range({(accounts + 2) // 3}) as t(m);
            insert into raw.mx_accounts by name
            select 'ACT-' || a as guid, 'MBR-' || a // 3 as member_guid, 'USR-' || a // 6 as user_guid,
                   'CHECKING' as type, 100.00 as balance, 'USD' as currency_code, {fetched} as updated_at,
                   json_object('guid', 'ACT-' || a, 'name', 'Checking ' || a, 'subtype', 'NONE',
                               'available_balance', '100.00', 'is_closed', false) as payload,
                   'bench' as run_id, {fetched} as fetched_at
            from range({accounts}) as t(a)
            """
        )


def bare_copy(path: Path) -> dict:
    from mx_pipeline.defs.resources import WarehouseResource

    with WarehouseResource(path=str(path)).open().connect() as con:  # the models' memory cap
        started = time.perf_counter()
        con.execute("create or replace table raw.copy_of_transactions as select * from raw.mx_transactions")
        seconds = time.perf_counter() - started
        con.execute("drop table raw.copy_of_transactions")
    return {"seconds": seconds}


def models(path: Path, increment: bool) -> dict:
    from mx_pipeline.defs.resources import WarehouseResource
    from mx_pipeline.warehouse.model_changes import replaced_rows_read
    from mx_pipeline.warehouse.models import load_models, load_reference, run_model
    from mx_pipeline.warehouse.publish import publish
    from mx_pipeline.warehouse.removal import mark_removed

    with WarehouseResource(path=str(path)).open().connect() as con:  # the pipeline's own memory cap
        if increment:
            (rows,) = con.execute("select count(*) from raw.mx_transactions").fetchone()
            _categories(con)
            con.execute(
                "insert into raw.mx_transactions by name"
                f" {_rows_sql(rows, rows // 100, _accounts(rows), days=3, fetched='now()')}"
            )
            vanished = f"guid in (select 'TRN-' || (hash(i) % {rows}) from range({rows // 1000}) as t(i))"
            mark_removed(con, vanished, now=dt.datetime.now(dt.UTC))  # as the loader marks them
        started = time.perf_counter()
        load_reference(con)
        every = load_models()
        kept = replaced_rows_read(every)
        results = [run_model(con, m, run_id="bench", keep_replaced=kept.get(m.name, frozenset())) for m in every]
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        publish(con, path.with_name("analytics.duckdb"))
        published = time.perf_counter() - started
    fct = next(r for r in results if r.name == "marts.fct_transactions")
    return {
        "seconds": seconds,
        "publish": published,
        "fct_rows": fct.rows,
        "recomputed": fct.recomputed,
        "mode": fct.mode,
        "per_model": {r.name: round(r.seconds, 2) for r in results},
    }


def jaro_winkler(a: str, b: str) -> float:
    """Jaro-Winkler similarity (prefix scale 0.1, up to 4 characters), as DuckDB's jaro_winkler_similarity."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(max(len(a), len(b)) // 2 - 1, 0)
    matched_b = [False] * len(b)
    matches_a = []
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not matched_b[j] and b[j] == ch:
                matched_b[j] = True
                matches_a.append(ch)
                break
    m = len(matches_a)
    if m == 0:
        return 0.0
    matches_b = [ch for ch, hit in zip(b, matched_b, strict=True) if hit]
    transpositions = sum(x != y for x, y in zip(matches_a, matches_b, strict=True)) / 2
    jaro = (m / len(a) + m / len(b) + (m - transpositions) / m) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4], strict=False):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * 0.1 * (1 - jaro)


def pandas_baseline(path: Path) -> dict:
    import hashlib

    import duckdb
    import pandas as pd

    from mx_pipeline.warehouse.models import REFERENCE_DIR

    started = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    cursor = con.execute(
        "select guid, account_guid, user_guid, status, type, amount, date, removed_at, payload::varchar as payload"
        " from raw.mx_transactions"
    )
    keep = ["currency_code", "description", "original_description", "category", "top_level_category"]
    frames = []
    while len(chunk := cursor.fetch_df_chunk(16)):
        fields = pd.DataFrame.from_records(
            [{key: parsed.get(key) for key in keep} for parsed in map(json.loads, chunk.pop("payload"))],
            index=chunk.index,
        )
        frames.append(pd.concat([chunk, fields], axis=1))
    users = con.execute("select guid as user_guid, id as user_id from raw.mx_users").df()
    con.close()
    tx = pd.concat(frames, ignore_index=True)
    del frames
    tx["amount"] = tx["amount"].where(tx["type"] != "DEBIT", -tx["amount"])  # Decimal objects: exact
    description = tx["description"].where(tx["description"].str.strip() != "", None)
    text = description.fillna(tx["original_description"]).fillna("").str.lower()
    text = text.str.replace(r"(x{2,}|\*{2,}|#)\s*\d+|\b\d{4,}\b|\bref(erence)?\s*[:#]\s*\w+|\bref\s+\d+", " ",
                            regex=True)  # fmt: skip
    text = text.str.replace(r"[^a-z0-9&' ]+", " ", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    tx["description_normalized"] = text
    tx["fingerprint"] = [
        hashlib.md5(f"{a}|{d}|{m}|{n}".encode()).hexdigest()
        for a, d, m, n in zip(tx["account_guid"], tx["date"], tx["amount"], text, strict=True)
    ]
    # Pending matching: candidates on account and amount, then the date window and the similarity.
    pending = tx[tx["status"] == "PENDING"][["guid", "account_guid", "amount", "date", "description_normalized"]]
    posted = tx[(tx["status"] == "POSTED") & tx["removed_at"].isna()]
    posted = posted[["guid", "account_guid", "amount", "date", "description_normalized"]]
    pairs = pending.merge(posted, on=["account_guid", "amount"], suffixes=("_p", "_q"))
    days = (pd.to_datetime(pairs["date_q"]) - pd.to_datetime(pairs["date_p"])).dt.days
    pairs = pairs[(days >= -1) & (days <= 5)]
    similar = [
        jaro_winkler(p, q)
        for p, q in zip(pairs["description_normalized_p"], pairs["description_normalized_q"], strict=True)
    ]
    pairs = pairs[[s >= 0.8 for s in similar]]
    unambiguous = (pairs.groupby("guid_p")["guid_q"].transform("size") == 1) & (
        pairs.groupby("guid_q")["guid_p"].transform("size") == 1
    )
    matches = pairs[unambiguous][["guid_p", "guid_q"]]
    # What counts: live rows, no pending whose twin posted, no pending older than 14 days.
    cutoff = pd.Timestamp.now().normalize() - pd.Timedelta(days=14)
    expired = (tx["status"] == "PENDING") & (pd.to_datetime(tx["date"]) < cutoff)
    counted = tx[tx["removed_at"].isna() & ~expired & ~tx["guid"].isin(matches["guid_p"])]
    # Our categories: exact MX category, else its top level, else the fallback; an unknown id is kept.
    mapping = pd.read_csv(REFERENCE_DIR / "mx_category_map.csv", dtype=str)
    ours = pd.read_csv(REFERENCE_DIR / "internal_categories.csv", dtype=str)
    exact = mapping.dropna(subset=["mx_category"]).rename(
        columns={"mx_top_level_category": "top_level_category", "mx_category": "category", "category_id": "exact"}
    )
    top = mapping[mapping["mx_category"].isna()].rename(
        columns={"mx_top_level_category": "top", "category_id": "top_id"}
    )[["top", "top_id"]]
    counted = counted.merge(exact, on=["top_level_category", "category"], how="left")
    counted["top"] = counted["top_level_category"].fillna(counted["category"])
    counted = counted.merge(top, on="top", how="left")
    proposed = counted["exact"].fillna(counted["top_id"]).fillna("uncategorized.unmapped")
    counted["category_id"] = proposed.where(proposed.isin(ours["category_id"]), "uncategorized.unmapped")
    counted = counted.merge(ours, on="category_id", how="left")
    parents = ours[["category_id", "name"]].rename(columns={"category_id": "parent_id", "name": "parent_name"})
    counted = counted.merge(parents, on="parent_id", how="left")
    counted["parent_category_id"] = counted["parent_id"].fillna(counted["category_id"])
    counted = counted.merge(matches.rename(columns={"guid_p": "replaced_pending_guid", "guid_q": "guid"}),
                            on="guid", how="left").merge(users, on="user_guid", how="left")  # fmt: skip
    expense = counted[counted["kind"] == "expense"].assign(month=pd.to_datetime(counted["date"]).dt.to_period("M"))
    spend = expense.groupby(
        ["month", "user_guid", "user_id", "currency_code", "parent_category_id", "category_id"], dropna=False
    )["amount"].agg(["sum", "size"])
    return {"seconds": time.perf_counter() - started, "fct_rows": len(counted), "spend_rows": len(spend)}


PHASES = {
    "copy": bare_copy,
    "full": lambda path: models(path, increment=False),
    "pandas": pandas_baseline,  # before the increment: the same rows as the full build
    "increment": lambda path: models(path, increment=True),
    "floor": increment_floor,  # last: it moves rows around
}


def report(rows: int, figures: dict[str, dict]) -> None:
    copy, full, pandas, inc, inc_floor = (figures.get(p) for p in PHASES)
    floor = copy["seconds"]
    full_total = full["seconds"] + full["publish"]
    lines = [
        f"{rows:,} raw transactions",
        f"{'phase':<44}{'seconds':>9}{'ratio':>26}{'peak RSS':>12}",
        f"{'bare DuckDB copy of raw (models memory cap)':<44}{floor:>9.1f}{'1.0x (the floor)':>26}"
        f"{copy['rss']:>8,.0f} MiB",
        f"{'models, full build':<44}{full['seconds']:>9.1f}{full['seconds'] / floor:>21.1f}x copy"
        f"{full['rss']:>8,.0f} MiB   (goal <= 2x)",
        f"{'  + publish analytics.duckdb':<44}{full_total:>9.1f}{full_total / floor:>21.1f}x copy",
        f"{'after 1% new rows, models + publish':<44}{inc['seconds'] + inc['publish']:>9.1f}"
        f"{(inc['seconds'] + inc['publish']) / full_total:>20.1%} of full{inc['rss']:>8,.0f} MiB   (goal <= 5%)",
        f"{'  of which publish':<44}{inc['publish']:>9.1f}",
        f"{'1% by key, nothing else (see docstring)':<44}{inc_floor['seconds']:>9.1f}"
        f"{inc_floor['seconds'] / full_total:>20.1%} of full",
    ]
    if pandas:
        lines.append(
            f"{'pandas, same logic (see docstring)':<44}{pandas['seconds']:>9.1f}"
            f"{pandas['seconds'] / full['seconds']:>19.1f}x models{pandas['rss']:>8,.0f} MiB"
        )
    lines.append(f"fct_transactions: full {full['fct_rows']:,} rows, increment recomputed {inc['recomputed']:,}"
                 f" ({inc['mode']})" + (f"; pandas counted {pandas['fct_rows']:,}" if pandas else ""))  # fmt: skip
    lines.append(f"per model, full: {full['per_model']}")
    lines.append(f"per model, increment: {inc['per_model']}")
    lines.append(f"1% by key, its parts: {inc_floor['parts']}")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--skip-pandas", action="store_true", help="leave the pandas baseline out (it is slow)")
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        figures = PHASES[args.phase](args.path)
        figures["rss"] = peak_rss_mib()
        print(json.dumps(figures), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        started = time.perf_counter()
        generate(path, args.rows)
        print(f"generated {args.rows:,} raw transactions in {time.perf_counter() - started:.1f} s", flush=True)
        figures = {}
        for phase in PHASES:
            if phase == "pandas" and args.skip_pandas:
                continue
            done = subprocess.run(
                [sys.executable, __file__, "--phase", phase, "--path", str(path)],
                check=True, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            figures[phase] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{phase}: {figures[phase]['seconds']:.1f} s", flush=True)
        report(args.rows, figures)


if __name__ == "__main__":
    main()
