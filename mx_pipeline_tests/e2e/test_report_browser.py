"""``mx-pipeline report`` on marts the pipeline built from the sandbox, opened in headless Chromium with the
network cut: the charts render, with our category names, the marts' totals to the cent and member_health's
counts. The screenshot goes to ``data/artifacts/browser/report.png``."""

import csv
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import duckdb

from mx_pipeline import cli
from mx_pipeline.lifecycle.routes import Route
from mx_pipeline.report.charts import money
from mx_pipeline_tests.defs.conftest import pipeline  # noqa: F401  (connected sandbox members, a warehouse)

from .test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, _browser_or_skip

CATEGORIES = Path(__file__).resolve().parents[2] / "data" / "reference" / "internal_categories.csv"


def _truth(analytics: Path) -> tuple[dict[str, dict[str, Decimal]], dict[str, int]]:
    """month -> our parent category -> spend (USD), and members by route, straight from the marts."""
    with duckdb.connect(str(analytics), read_only=True) as con:
        spend = con.execute(
            "select strftime(month, '%Y-%m'), coalesce(parent_category_name, category_name), sum(spend)"
            " from marts.monthly_spend_by_category where currency_code = 'USD' group by all"
        ).fetchall()
        routes = dict(con.execute("select route, count(*) from marts.member_health group by route").fetchall())
    by_month: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for month, category, amount in spend:
        by_month[month][category] = amount
    return dict(sorted(by_month.items())[-12:]), routes


def test_the_report_renders_the_marts_in_chromium_offline(pipeline, tmp_path, monkeypatch, capsys):  # noqa: F811
    sync_playwright = _browser_or_skip()
    pipeline.admin(f"members/{pipeline.member_of['user-ok-2']}/connection_status", connection_status="DISABLED")
    pipeline.materialize()
    analytics, output = pipeline.warehouse.path.with_name("analytics.duckdb"), tmp_path / "out" / "report.html"
    monkeypatch.setenv("MX_PIPELINE_DATA_DIR", str(tmp_path))

    assert cli.main(["report", "--analytics", str(analytics), "--output", str(output)]) == 0
    assert f"report: wrote {output} from {analytics}" in capsys.readouterr().out
    spend, routes = _truth(analytics)
    ours = {row["name"] for row in csv.DictReader(CATEGORIES.open())}
    assert spend and {c for month in spend.values() for c in month} <= ours  # the chart has something to show

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        fetched = []
        page.route("**/*", lambda route: (fetched.append(route.request.url), route.continue_()))
        page.goto(output.as_uri())
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)

        assert fetched == [output.as_uri()]  # self-contained: nothing else was asked for
        chart = page.locator('svg[data-chart="monthly-spend-USD"]')
        assert chart.bounding_box()["width"] > 300
        bars = chart.locator("rect.bar")
        drawn = [(b.get_attribute("data-month"), b.get_attribute("data-category"), b.get_attribute("data-amount"))
                 for b in bars.all()]  # fmt: skip
        expected = [(m, c, a) for m, by_category in spend.items() for c, a in by_category.items() if a > 0]
        assert sorted((m, c, Decimal(a)) for m, c, a in drawn) == sorted(expected)
        assert all(bar.bounding_box()["height"] > 0 for bar in bars.all()[:5])
        totals = {t.get_attribute("data-month"): t.text_content() for t in chart.locator("text.total").all()}
        assert totals == {m: money(sum(by_category.values())) for m, by_category in spend.items()}
        assert set(page.locator('ul.legend[data-chart="monthly-spend-USD"] li').all_text_contents()) <= ours
        footer = page.locator('table.spend[data-chart="monthly-spend-USD"] tfoot td').all_text_contents()
        assert footer == list(totals.values())

        route_bars = page.locator('svg[data-chart="members-by-route"] rect.bar').all()
        counted = {b.get_attribute("data-key"): int(b.get_attribute("data-count")) for b in route_bars}
        assert counted == {r.value: routes.get(r.value, 0) for r in Route}
        assert (counted["ready"], counted["needs_mfa"], counted["needs_reconnect"], counted["degraded"]) == (1, 1, 1, 1)
        tiles = dict(
            zip(
                page.locator("#health-tiles li").evaluate_all("els => els.map(e => e.dataset.tile)"),
                page.locator("#health-tiles li b").all_text_contents(),
                strict=True,
            )
        )
        assert tiles["members"] == str(sum(routes.values())) == "4"
        assert page.locator("#attention tbody tr").count() >= 3  # MFA, DENIED and DISABLED wait on their user
        browser.close()
