"""The README's analyst path, as a new analyst would walk it: run the demo, open the file the README names, and
run every example query of the README, each of which must answer its question."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from mx_pipeline_tests.local_http import free_port

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "data" / "reference"
README = (ROOT / "README.md").read_text()
ANALYSTS = README[README.index("## For analysts") :].split("\n## ", 1)[0]


def sql_blocks(markdown: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", markdown, re.DOTALL)


def queries(markdown: str) -> dict[str, str]:
    """Every query of the README's sql blocks, by the question in its leading comment."""
    found = {}
    for block in sql_blocks(markdown):
        for statement in filter(str.strip, block.split(";")):
            question = re.match(r"\s*-- (.*)", statement)
            assert question, f"an example query without its question: {statement!r}"
            found[question[1].strip()] = statement.strip()
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The data dir after ``mx-pipeline demo`` on the built-in sandbox (a subprocess, as a user would run it)."""
    data = tmp_path_factory.mktemp("data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MX_")} | {
        "MX_PIPELINE_DATA_DIR": str(data),
        # No connect service of another data dir (a `make dev` running here) is compared with this demo's links.
        "MX_PIPELINE_CONNECT_PORT": str(free_port()),
    }
    command = [sys.executable, "-c", "from mx_pipeline.cli import main; raise SystemExit(main(['demo']))"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return data


@pytest.fixture(scope="module")
def analysts_file(demo) -> duckdb.DuckDBPyConnection:
    """The file the README tells analysts to open (its ``data/`` is the data dir), opened read-only."""
    named = re.search(r"Query `data/([\w./-]+\.duckdb)`", ANALYSTS)
    assert named, "the README names the analysts' file"
    path = demo / named[1]
    assert path.exists(), f"the README names {named[0]}, which the demo did not write ({sorted(demo.iterdir())})"
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


def test_the_readme_shows_example_queries_with_their_questions():
    assert len(queries(ANALYSTS)) >= 3
    assert queries(README).keys() == queries(ANALYSTS).keys()  # every example query of the README is here


def test_every_example_query_runs_read_only_and_returns_rows(analysts_file):
    for question, sql in queries(README).items():
        rows = analysts_file.execute(sql).fetchall()
        assert rows, f"no answer to {question!r}"


def answer(con, question_starting: str) -> list[dict]:
    """The rows the README's query for that question returns, as dicts."""
    [sql] = [sql for question, sql in queries(README).items() if question.startswith(question_starting)]
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def test_the_largest_purchases_are_spending_at_merchants_with_readable_names(analysts_file):
    rows = answer(analysts_file, "Largest purchases this week")
    assert rows
    kinds = {row["name"]: row["kind"] for row in csv.DictReader((REFERENCE / "internal_categories.csv").open())}
    assert {kinds[r["category_name"]] for r in rows} == {"expense"}  # never a card payment (a transfer) or pay
    names = [r["merchant_name"] for r in rows]
    assert all(name and name != name.lower() for name in names), names  # as MX names them, not normalized text
    assert not any("Payment" in name or "Transfer" in name for name in names), names
    amounts = [r["amount"] for r in rows]
    assert all(a < 0 for a in amounts) and amounts == sorted(amounts)  # money out, the largest first


def test_last_months_spending_is_there_by_category(analysts_file):
    rows = answer(analysts_file, "Where did the money go last month")
    assert len(rows) >= 5 and all(r["spend"] > 0 for r in rows)
    categories = {r["category_name"] for r in rows}
    assert {"Groceries", "Rent & Mortgage"} <= categories, categories
    assert not categories & {"Credit Card Payment", "Account Transfer", "Salary & Wages"}


def test_the_connections_that_need_someone_include_the_challenged_member(analysts_file):
    rows = answer(analysts_file, "Which connections need someone")
    assert "CHALLENGED" in {r["connection_status"] for r in rows}
    assert all(r["route"] != "ready" or r["is_stale"] for r in rows if "is_stale" in r)


def test_the_demo_product_pins_the_warehouse_club_to_groceries_with_a_merchant_override(analysts_file):
    rows = analysts_file.execute(
        """
        select distinct category_id, category_source from marts.fct_transactions
        where merchant_name = 'Costwise Wholesale'
        """
    ).fetchall()
    assert rows == [("food.groceries", "merchant_override")]  # MX files it under Shopping


def test_a_category_mx_added_after_our_map_counts_under_its_top_levels_category_of_ours(analysts_file):
    # The sandbox files ReWear Exchange under "Secondhand & Resale", a Shopping subcategory our map does not name.
    rows = analysts_file.execute(
        """
        select distinct category_id, category_source from marts.fct_transactions
        where merchant_name = 'ReWear Exchange'
        """
    ).fetchall()
    assert rows == [("shopping.general", "mx_top_level")]  # counted as spending, never dropped, never an MX code
