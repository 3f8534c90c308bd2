"""The report without a browser: exact money, an empty warehouse, a self-contained file, the CLI's defaults.

The marts here are written by hand with the columns the report reads; the browser test
(``e2e/test_report_browser.py``) runs it on marts the pipeline built.
"""

import datetime as dt
import re
from decimal import Decimal

import duckdb
import pytest

from mx_pipeline import cli
from mx_pipeline.report import read_marts, write_report
from mx_pipeline.report.charts import axis_top, money

NOW = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
SPEND_COLUMNS = "month date, user_guid varchar, currency_code varchar, parent_category_name varchar, " \
    "category_name varchar, spend decimal(38, 4)"  # fmt: skip
HEALTH_COLUMNS = (
    "member_guid varchar, user_guid varchar, user_id varchar, institution_code varchar, connection_status varchar, "
    "route varchar, retired_at timestamptz, is_stale boolean, hours_since_success double, "
    "last_sync_outcome varchar, open_notification_at timestamptz, notification_state varchar, built_at timestamptz"
)


def analytics_file(path, spend=(), health=()):
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        con.execute(f"create table marts.monthly_spend_by_category ({SPEND_COLUMNS})")
        con.execute(f"create table marts.member_health ({HEALTH_COLUMNS})")
        if spend:
            con.executemany("insert into marts.monthly_spend_by_category values (?, ?, ?, ?, ?, ?)", spend)
        if health:
            con.executemany(f"insert into marts.member_health values ({', '.join('?' * 13)})", health)
    return path


def month_totals(html: str) -> dict[str, str]:
    return dict(re.findall(r'<text class="total"[^>]*data-month="([^"]+)">([^<]+)</text>', html))


def test_money_is_exact_to_the_cent_in_every_label(tmp_path):
    cents = [("2026-10-01", f"u{i}", "USD", "Food & Drink", "Groceries", Decimal("0.10")) for i in range(3)]
    spend = [
        *cents,  # 0.10 three times: 0.30, where floats say 0.30000000000000004
        ("2026-10-01", "u1", "USD", "Housing", "Rent", Decimal("1234567.885")),  # half a cent: rounds up
        ("2026-11-01", "u1", "USD", "Housing", "Rent", Decimal("1000.00")),
        ("2026-11-01", "u1", "USD", "Shopping", "Clothing", Decimal("-25.50")),  # refunds beat spending
    ]
    write_report(analytics_file(tmp_path / "a.duckdb", spend), tmp_path / "r.html", now=NOW)
    html = (tmp_path / "r.html").read_text()
    assert month_totals(html) == {"2026-10": "1,234,568.19", "2026-11": "974.50"}
    assert 'data-category="Food &amp; Drink" data-amount="0.3000"><title>Food &amp; Drink, 2026-10: 0.30 USD' in html
    assert 'data-month="2026-11" data-category="Shopping"' not in html  # a negative month draws no segment
    assert '<td class="money">-25.50</td>' in html  # but the table says it
    assert money(Decimal("0.005")) == "0.01" and money(Decimal("-0.004")) == "0.00"


def test_the_axis_goes_up_in_round_steps():
    assert [axis_top(Decimal(v), 4) for v in ("5011.76", "0", "99.99", "12345")] == [6000, 1, 100, 16000]


def test_a_report_is_one_self_contained_file_with_nothing_to_fetch(tmp_path):
    health = [("m1", "g1", "ada", "mxbank", "CHALLENGED", "needs_mfa", None, True, None, "skipped", NOW, "logged", NOW)]
    spend = [("2026-11-01", "g1", "USD", "Housing", "Rent", Decimal("900"))]
    write_report(analytics_file(tmp_path / "a.duckdb", spend, health), tmp_path / "r.html", now=NOW)
    html = (tmp_path / "r.html").read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r'(src|href)="', html)
    assert '<li data-tile="members"><b>1</b>' in html and "<td>ada</td>" in html


@pytest.mark.parametrize("state", ["no file", "empty marts", "no marts schema"])
def test_an_empty_warehouse_gives_a_report_that_says_there_is_no_data_yet(tmp_path, state):
    analytics = tmp_path / "analytics.duckdb"
    if state == "empty marts":
        analytics_file(analytics)
    elif state == "no marts schema":
        duckdb.connect(str(analytics)).close()
    write_report(analytics, tmp_path / "report.html", now=NOW)
    html = (tmp_path / "report.html").read_text()
    assert 'id="no-data"' in html and "No data yet" in html and "<svg" not in html
    assert read_marts(analytics).is_empty


def test_the_command_writes_under_the_data_dir_by_default_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))
    analytics_file(tmp_path / "analytics.duckdb", [("2026-11-01", "g1", "USD", "Housing", "Rent", Decimal("9"))])
    assert cli.main(["report"]) == 0
    out = capsys.readouterr().out
    assert out == f"report: wrote {tmp_path / 'report.html'} from {tmp_path / 'analytics.duckdb'}\n"
    assert month_totals((tmp_path / "report.html").read_text()) == {"2026-11": "9.00"}
    assert cli.main(["report", "--analytics", str(tmp_path / "none.duckdb"), "--output", str(tmp_path / "x.html")]) == 0
    assert "no data yet" in capsys.readouterr().out and (tmp_path / "x.html").exists()
