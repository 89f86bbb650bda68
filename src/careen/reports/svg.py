"""Inline SVG for the HTML report: severity bars and the fleet's trend chart.

Plain SVG text (no script, no external reference), every text node and attribute value
escaped, sizes in user units so the browser scales them. Colours follow the usual scanner
palette (critical dark red ... none grey) and are repeated in a legend, with ``<title>``
tooltips carrying the exact numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from careen.scan import Severity, SeverityCounts
from careen.state.store import TrendPoint

#: Severities drawn, worst first.
DRAWN_SEVERITIES: tuple[Severity, ...] = tuple(sorted(Severity, reverse=True))

SEVERITY_COLOURS: dict[Severity, str] = {
    Severity.CRITICAL: "#7f1d1d",
    Severity.HIGH: "#dc2626",
    Severity.MEDIUM: "#f59e0b",
    Severity.LOW: "#facc15",
    Severity.UNKNOWN: "#a78bfa",
    Severity.NONE: "#9ca3af",
}


def severity_bar(counts: SeverityCounts | None, *, scale: int, width: int = 240,
                 height: int = 14, label: str = "") -> str:
    """A stacked horizontal bar of ``counts`` (worst severity on the left), ``scale``
    findings filling ``width``: bars drawn with one scale compare across images. No counts
    (no scan) draws an empty, dashed frame."""
    title = escape(f"{label}: " if label else "")
    if counts is None:
        return (f'<svg class="bar" role="img" width="{width}" height="{height}" '
                f'viewBox="0 0 {width} {height}"><title>{title}no scan</title>'
                f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="none" '
                'stroke="#9ca3af" stroke-dasharray="3 2"/></svg>')
    unit = width / max(scale, counts.total, 1)
    parts: list[str] = []
    x = 0.0
    for severity, count in counts.items():
        if not count:
            continue
        w = count * unit
        parts.append(
            f'<rect class="sev-{severity.label}" x="{x:.2f}" y="0" width="{w:.2f}" '
            f'height="{height}" fill="{SEVERITY_COLOURS[severity]}">'
            f"<title>{escape(severity.label)} {count}</title></rect>")
        x += w
    summary = ", ".join(f"{s.label} {n}" for s, n in counts.items() if n) or "no findings"
    return (f'<svg class="bar" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><title>{title}{escape(summary)}</title>'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f3f4f6"/>'
            + "".join(parts) + "</svg>")


def trend_chart(points: Sequence[TrendPoint], *, width: int = 720,
                height: int = 260) -> str:
    """Findings per severity per run (oldest on the left) as lines, one series per
    severity (``<g class="series" data-severity="high">``), with a legend and date labels.
    No points draws a frame saying so."""
    left, right, top, bottom = 48, 120, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    head = (f'<svg class="trend" role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">'
            "<title>Findings per severity per run</title>")
    frame = (f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
             'stroke="#d1d5db"/>')
    if not points:
        return (head + frame + f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" '
                'text-anchor="middle" fill="#6b7280">no earlier runs recorded</text></svg>')
    peak = max((p.counts.get(s) for p in points for s in DRAWN_SEVERITIES), default=0)
    peak = max(peak, 1)

    def x_of(index: int) -> float:
        if len(points) == 1:
            return left + plot_w / 2
        return left + plot_w * index / (len(points) - 1)

    def y_of(value: int) -> float:
        return top + plot_h - plot_h * value / peak

    parts = [head, frame]
    for fraction in (0.0, 0.5, 1.0):  # y axis: 0, half, peak
        value = round(peak * fraction)
        y = y_of(value)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.2f}" y2="{y:.2f}" '
                     'stroke="#e5e7eb"/>'
                     f'<text x="{left - 6}" y="{y + 4:.2f}" text-anchor="end">{value}</text>')
    step = max(1, len(points) // 8)  # at most about 8 date labels
    for index in range(0, len(points), step):
        parts.append(f'<text x="{x_of(index):.2f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{escape(points[index].date.isoformat())}</text>')
    for rank, severity in enumerate(DRAWN_SEVERITIES):
        colour = SEVERITY_COLOURS[severity]
        coordinates = " ".join(f"{x_of(i):.2f},{y_of(p.counts.get(severity)):.2f}"
                               for i, p in enumerate(points))
        dots = "".join(
            f'<circle cx="{x_of(i):.2f}" cy="{y_of(p.counts.get(severity)):.2f}" r="2.5" '
            f'fill="{colour}"><title>{escape(p.date.isoformat())} {escape(p.run_id)}: '
            f"{escape(severity.label)} {p.counts.get(severity)}</title></circle>"
            for i, p in enumerate(points))
        legend_y = top + 14 * rank + 8
        parts.append(
            f'<g class="series" data-severity="{severity.label}">'
            f'<polyline points="{coordinates}" fill="none" stroke="{colour}" '
            f'stroke-width="2"/>{dots}'
            f'<rect x="{left + plot_w + 12}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + plot_w + 26}" y="{legend_y + 1}">'
            f"{escape(severity.label)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)
