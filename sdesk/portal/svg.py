"""Charts drawn on the server as inline SVG: no script, no external asset, readable without
colour (each bar and point carries its value as text and a <title>). Every label is escaped."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 640


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def hbars(rows: Sequence[tuple[str, float, str]], *, title: str, maximum: float | None = None,
          target: float | None = None, unit: str = "") -> Markup:
    """Horizontal bars, one per (label, value, shown text); `target`: a dashed line at that value."""
    if not rows:
        return Markup(f'<p class="muted">{escape(title)}: nothing yet.</p>')
    top = maximum if maximum is not None else max(v for _, v, _ in rows) or 1
    row_h, label_w, text_w = 24, 180, 70
    bar_w = WIDTH - label_w - text_w
    height = row_h * len(rows) + 8
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (label, value, shown) in enumerate(rows):
        y = 4 + i * row_h
        w = max(0.0, min(1.0, value / top)) * bar_w
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="lbl">{escape(label[:28])}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{_n(w)}" height="{row_h - 8}" class="bar">'
                     f'<title>{escape(label)}: {escape(shown)}</title></rect>'
                     f'<text x="{_n(label_w + w)}" y="{y + 16}" dx="6" class="val">{escape(shown)}{escape(unit)}</text>')
    if target is not None and top:
        x = label_w + min(1.0, target / top) * bar_w
        parts.append(f'<line x1="{_n(x)}" x2="{_n(x)}" y1="0" y2="{height}" class="target">'
                     f'<title>target {escape(_n(target))}{escape(unit)}</title></line>')
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str) -> Markup:
    """A line per (name, values) over `labels` (weeks), with a legend and the last values."""
    if not labels:
        return Markup(f'<p class="muted">{escape(title)}: nothing yet.</p>')
    height, left, right, top_pad, bottom = 220, 40, 20, 24, 30
    plot_w, plot_h = WIDTH - left - right, height - top_pad - bottom
    top = max([v for _, values in series for v in values] + [1])
    step = plot_w / max(1, len(labels) - 1)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="100%" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
             f'<line x1="{left}" x2="{WIDTH - right}" y1="{top_pad + plot_h}" y2="{top_pad + plot_h}" class="axis"/>',
             f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end" class="lbl">{escape(_n(top))}</text>',
             f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end" class="lbl">0</text>']
    for k, (name, values) in enumerate(series):
        points = " ".join(f"{_n(left + i * step)},{_n(top_pad + plot_h - (v / top) * plot_h)}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" class="s{k}" fill="none"><title>{escape(name)}</title></polyline>')
        for i, v in enumerate(values):
            parts.append(f'<circle cx="{_n(left + i * step)}" cy="{_n(top_pad + plot_h - (v / top) * plot_h)}" r="3" '
                         f'class="s{k}"><title>{escape(name)} {escape(labels[i])}: {escape(_n(v))}</title></circle>')
        parts.append(f'<text x="{left + 10 + 150 * k}" y="14" class="legend s{k}">■ {escape(name)}</text>')
    for i in range(0, len(labels), max(1, len(labels) // 6)):
        parts.append(f'<text x="{_n(left + i * step)}" y="{height - 10}" text-anchor="middle" class="lbl">'
                     f'{escape(labels[i][5:])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
