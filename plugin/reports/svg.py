"""Charts as inline SVG, rendered on the server: no JavaScript, no CDN, printable.

Two shapes cover the reports: stacked horizontal bars (categories) and stacked columns (months).
Every label is escaped; sizes are in SVG user units and the charts scale with the page (viewBox).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

#: (name, colour) of each stacked series, in stacking order.
Series = Sequence[tuple[str, str]]
#: (label, one value per series).
Rows = Sequence[tuple[str, Sequence[float]]]

_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _number(value: float) -> str:
    return f"{value:,.0f}".replace(",", "\u202f") if abs(value) >= 100 or value == int(value) else f"{value:.2g}"


def _legend(series: Series, x: float, y: float) -> list[str]:
    parts = []
    for name, colour in series:
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{escape(colour)}"/>')
        parts.append(f'<text x="{x + 14:.1f}" y="{y:.1f}" {_FONT}>{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return parts


def hbars(
    rows: Rows,
    series: Series,
    *,
    title: str,
    width: int = 720,
    label_width: int = 240,
    bar_height: int = 18,
    value_format: Callable[[float], str] = _number,
    total: Callable[[Sequence[float]], float] = sum,
    scale_max: float | None = None,
    legend: bool = True,
) -> Markup:
    """Horizontal bars, one per row, each stacked from the row's values; the total is printed after it."""
    top, gap = (40 if legend else 8), 6
    limit = 34 if label_width >= 240 else max(8, label_width // 7)  # characters of a label that fit
    height = top + len(rows) * (bar_height + gap) + 10
    plot = width - label_width - 70
    biggest = scale_max if scale_max is not None else max((total(v) for _, v in rows), default=0.0)
    unit = plot / biggest if biggest > 0 else 0.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        *(_legend(series, 10, 16) if legend else []),
    ]
    for i, (label, values) in enumerate(rows):
        y = top + i * (bar_height + gap)
        shown = label if len(label) <= limit else label[: limit - 1] + "…"
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar_height - 5}" text-anchor="end" {_FONT}>'
            f"<title>{escape(label)}</title>{escape(shown)}</text>"
        )
        x = float(label_width)
        for (name, colour), value in zip(series, values, strict=True):
            w = max(value, 0.0) * unit
            if w > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_height}" fill="{escape(colour)}">'
                    f"<title>{escape(label)}: {escape(name)} {escape(value_format(value))}</title></rect>"
                )
            x += w
        shown_total = escape(value_format(total(values)))
        parts.append(f'<text x="{x + 4:.1f}" y="{y + bar_height - 5}" {_FONT}>{shown_total}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text put into the parts above is escaped


def columns(
    rows: Rows,
    series: Series,
    *,
    title: str,
    width: int = 720,
    height: int = 260,
    value_format: Callable[[float], str] = _number,
    legend: bool = True,
) -> Markup:
    """Vertical columns, one per row (e.g. a month), stacked from the row's values."""
    left, top, bottom = 50, 30, 40
    plot_h = height - top - bottom
    n = max(len(rows), 1)
    step = (width - left - 10) / n
    bar_w = max(step * 0.7, 2.0)
    biggest = max((sum(v) for _, v in rows), default=0.0)
    unit = plot_h / biggest if biggest > 0 else 0.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        *(_legend(series, left, 16) if legend else []),
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#888"/>',
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" {_FONT}>{escape(value_format(biggest))}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" {_FONT}>0</text>',
    ]
    every = max(1, round(n / 12))  # at most about twelve axis labels
    for i, (label, values) in enumerate(rows):
        x = left + i * step + (step - bar_w) / 2
        y = float(top + plot_h)
        for (name, colour), value in zip(series, values, strict=True):
            h = max(value, 0.0) * unit
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{escape(colour)}">'
                    f"<title>{escape(label)}: {escape(name)} {escape(value_format(value))}</title></rect>"
                )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 16}" text-anchor="middle" {_FONT}>'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text put into the parts above is escaped
