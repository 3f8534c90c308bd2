"""Two inline SVG charts, written by hand: stacked bars (money per month and category) and labelled count bars.

Every label is text the report computed (money formatted from ``Decimal``, never through a float); floats are
used only for pixel geometry. Each bar carries ``data-*`` attributes and a ``<title>`` (a tooltip, and what
a screen reader says), so a browser test can read back exactly what was drawn.
"""

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from html import escape

# Colour-blind-safe, distinguishable on white (Tableau 10, then two more).
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#17becf", "#8c564b",
)  # fmt: skip
CENT = Decimal("0.01")


def money(amount: Decimal) -> str:
    """``1234.5`` -> ``1,234.50``: exact, rounded half up to the cent."""
    cents = Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)
    return f"{cents.copy_abs() if cents == 0 else cents:,.2f}"  # never "-0.00"


def axis_top(highest: Decimal, ticks: int) -> Decimal:
    """The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten, per tick) >= ``highest``."""
    step = max(highest, Decimal(1)) / ticks
    for mantissa in ("1", "1.5", "2", "2.5", "3", "4", "5", "6", "8", "10"):
        candidate = Decimal(mantissa).scaleb(step.adjusted())
        if candidate >= step:
            return candidate * ticks
    raise AssertionError("unreachable: 10 times the leading power of ten is always enough")


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def stacked_bars(chart_id: str, months: list[str], series: Mapping[str, Mapping[str, Decimal]], currency: str) -> str:
    """One bar per month, one segment per category (``series``: category -> month -> amount), total on top.

    A category whose refunds outweigh its spending in a month (a negative amount) has no segment that month;
    the total above the bar and the table below still count it.
    """
    width, height, left, right, top, bottom = 760, 340, 80, 16, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = {m: sum((s.get(m, Decimal(0)) for s in series.values()), Decimal(0)) for m in months}
    stacked = {m: sum((max(s.get(m, Decimal(0)), Decimal(0)) for s in series.values()), Decimal(0)) for m in months}
    ticks = 4
    scale_max = axis_top(max(stacked.values(), default=Decimal(0)), ticks)
    slot = plot_w / max(len(months), 1)
    bar_w = min(56.0, slot * 0.7)

    def y(value: Decimal) -> float:
        return top + plot_h - float(value / scale_max) * plot_h

    parts = [
        f'<svg class="chart" data-chart="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Monthly spend by category in {escape(currency)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(ticks + 1):  # gridlines with their (round) amounts
        value = scale_max * i / ticks
        shown = f"{value:,.0f}" if value == value.to_integral_value() else money(value)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{shown}</text>'
        )
    for i, month in enumerate(months):
        x = left + slot * i + (slot - bar_w) / 2
        base = Decimal(0)
        for c, (category, by_month) in enumerate(series.items()):
            amount = by_month.get(month, Decimal(0))
            if amount <= 0:
                continue
            y0, y1 = y(base), y(base + amount)
            base += amount
            label = f"{category}, {month}: {money(amount)} {currency}"
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y1:.1f}" width="{bar_w:.1f}" height="{max(y0 - y1, 0.5):.1f}" '
                f'fill="{colour(c)}" data-month="{escape(month)}" data-category="{escape(category)}" '
                f'data-amount="{amount}"><title>{escape(label)}</title></rect>'
            )
        parts.append(
            f'<text class="total" x="{x + bar_w / 2:.1f}" y="{y(stacked[month]) - 6:.1f}" text-anchor="middle" '
            f'data-month="{escape(month)}">{money(totals[month])}</text>'
            f'<text class="month" x="{x + bar_w / 2:.1f}" y="{height - bottom + 18}" text-anchor="middle">'
            f"{escape(month)}</text>"
        )
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{colour(c)}"></span>{escape(category)}</li>'
        for c, category in enumerate(series)
    )
    return "".join(parts) + f'<ul class="legend" data-chart="{escape(chart_id)}">{legend}</ul>'


def count_bars(chart_id: str, counts: Mapping[str, int], *, label: str) -> str:
    """One horizontal bar per key (in the order given, zeros too), its count written beside it."""
    row, left, right, width = 26, 150, 56, 520
    height = row * len(counts) + 8
    most = max([*counts.values(), 1])
    parts = [
        f'<svg class="chart" data-chart="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (key, n) in enumerate(counts.items()):
        y = 4 + i * row
        bar = (width - left - right) * n / most
        parts.append(
            f'<text class="axis" x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(key)}</text>'
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{bar:.1f}" height="{row - 8}" fill="{colour(0)}" '
            f'data-key="{escape(key)}" data-count="{n}"><title>{escape(f"{key}: {n}")}</title></rect>'
            f'<text class="count" x="{left + bar + 6:.1f}" y="{y + 16}">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
