"""The report page: one self-contained HTML file (inline CSS and SVG, no script, nothing fetched)."""

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from html import escape
from itertools import groupby

from mx_pipeline.report.charts import count_bars, money, stacked_bars
from mx_pipeline.report.marts import Health, Marts, Spend

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 24px auto;
       max-width: 960px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; } h3 { font-size: 15px; }
.meta, .note { color: #59636e; } .empty { padding: 24px; background: #f6f8fa; border-radius: 6px; }
.chart { width: 100%; height: auto; } .chart text { font-size: 12px; fill: #1f2328; }
.chart .grid { stroke: #d1d9e0; } .chart .total { font-weight: 600; }
.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; vertical-align: -1px; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; padding: 0; list-style: none; }
.tiles li { border: 1px solid #d1d9e0; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.tiles b { display: block; font-size: 22px; }
.scroll { overflow-x: auto; } table { border-collapse: collapse; margin: 8px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #d1d9e0; text-align: left; white-space: nowrap; }
td.money, th.money { text-align: right; font-variant-numeric: tabular-nums; }
.columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0 24px; }
"""


def render(marts: Marts, *, now: dt.datetime) -> str:
    """The whole page."""
    if marts.is_empty:
        body = (
            '<p class="empty" id="no-data">No data yet: the marts in this file are empty. Run <code>make demo</code>, '
            "or materialize the assets in Dagster, then run <code>mx-pipeline report</code> again.</p>"
        )
    else:
        body = _spend_section(marts.spend) + _health_section(marts.health)
    built = f", marts built {marts.built_at:%Y-%m-%d %H:%M} UTC" if marts.built_at else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>mx_pipeline report</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>Spending and connection health</h1>"
        f'<p class="meta">From <code>{escape(str(marts.source))}</code>{built}; report written '
        f"{now:%Y-%m-%d %H:%M} UTC.</p>"
        f"{body}</body></html>\n"
    )


def _spend_section(spend: list[Spend]) -> str:
    if not spend:
        return '<h2>Monthly spend by category</h2><p class="empty" id="no-spend">No spending yet.</p>'
    parts = [
        "<h2>Monthly spend by category</h2>",
        '<p class="note">Money out minus refunds, per parent category of ours, from '
        "<code>marts.monthly_spend_by_category</code> (all users).</p>",
    ]
    for currency, rows in groupby(sorted(spend, key=lambda s: s.currency), key=lambda s: s.currency):
        rows = list(rows)
        months = sorted({_month(s) for s in rows})
        by_category: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for s in rows:
            by_category[s.category][_month(s)] = s.amount
        # The biggest spenders first: they sit at the bottom of each bar and top of the legend.
        series = dict(sorted(by_category.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])))
        chart_id = f"monthly-spend-{currency}"
        parts.append(f"<h3>{escape(currency)}</h3>{stacked_bars(chart_id, months, series, currency)}")
        parts.append(_spend_table(chart_id, months, series, currency))
    return "".join(parts)


def _spend_table(chart_id: str, months: list[str], series: dict[str, dict[str, Decimal]], currency: str) -> str:
    head = "".join(f'<th class="money">{escape(m)}</th>' for m in months)
    lines = [
        f"<tr><th>{escape(category)}</th>"
        + "".join(f'<td class="money">{money(by_month[m]) if m in by_month else ""}</td>' for m in months)
        + "</tr>"
        for category, by_month in series.items()
    ]
    totals = "".join(
        f'<td class="money" data-month="{escape(m)}">'
        f"{money(sum((s.get(m, Decimal(0)) for s in series.values()), Decimal(0)))}</td>"
        for m in months
    )
    return (
        f'<div class="scroll"><table class="spend" data-chart="{escape(chart_id)}">'
        f"<thead><tr><th>{escape(currency)}</th>{head}</tr></thead><tbody>{''.join(lines)}</tbody>"
        f'<tfoot><tr class="total"><th>Total</th>{totals}</tr></tfoot></table></div>'
    )


def _health_section(health: Health | None) -> str:
    if health is None:
        return '<h2>Connection health</h2><p class="empty" id="no-members">No members yet.</p>'
    tiles = {
        "members": health.members,
        "ready": health.by_route.get("ready", 0),
        "stale": health.stale,
        "last sync failed": health.failed_syncs,
        "user told, still open": health.open_notifications,
        "retired": health.retired,
    }
    return (
        "<h2>Connection health</h2>"
        '<p class="note">From <code>marts.member_health</code>: one row per member (a user\'s bank connection).</p>'
        '<ul class="tiles" id="health-tiles">'
        + "".join(f'<li data-tile="{escape(k)}"><b>{n}</b>{escape(k)}</li>' for k, n in tiles.items())
        + '</ul><div class="columns"><div><h3>Members by route</h3>'
        + count_bars("members-by-route", health.by_route, label="Members by route")
        + "</div><div><h3>Members by MX connection status</h3>"
        + count_bars("members-by-status", health.by_status, label="Members by connection status")
        + "</div><div><h3>Latest reconnect notification</h3>"
        + count_bars("notifications", health.by_notification, label="Members by latest notification state")
        + "</div></div>"
        + _attention_table(health)
    )


def _attention_table(health: Health) -> str:
    if not health.attention:
        return '<p id="no-attention">No member is stale, failing or waiting on its user.</p>'
    head = (
        "".join(f"<th>{h}</th>" for h in ("user", "institution", "status", "route", "hours since success", "last sync"))
        + "<th>notification</th>"
    )
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{escape(str(v))}</td>" for v in (m.user_id, m.institution, m.connection_status, m.route))
        + f'<td class="money">{"" if m.hours_since_success is None else f"{m.hours_since_success:.1f}"}</td>'
        + f"<td>{escape(m.last_sync_outcome)}</td><td>{escape(m.notification_state)}</td></tr>"
        for m in health.attention
    )
    return (
        "<h3>Members to look at</h3>"
        '<p class="note">Stale, last sync failed, or waiting on their user (worst first).</p>'
        f'<div class="scroll"><table id="attention"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'
    )


def _month(spend: Spend) -> str:
    return f"{spend.month:%Y-%m}"
