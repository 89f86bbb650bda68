from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from careen.reports.svg import severity_bar, trend_chart
from careen.scan import SeverityCounts
from tests.reports.sample import sample_trend

SVG = "{http://www.w3.org/2000/svg}"


def widths(svg: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'class="sev-(\w+)" x="[0-9.]+" y="0" width="([0-9.]+)"', svg)}


def test_bar_segments_are_proportional_on_a_shared_scale() -> None:
    bar = severity_bar(SeverityCounts(high=2, medium=1), scale=10, width=200)
    assert widths(bar) == {"high": 40.0, "medium": 20.0}
    ET.fromstring(bar.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))  # well-formed XML  # noqa: S314 - our own output


def test_bar_without_a_scan_is_an_empty_frame() -> None:
    bar = severity_bar(None, scale=10, label="after")
    assert "no scan" in bar and "sev-" not in bar


def test_trend_points_are_placed_by_value() -> None:
    points = sample_trend(3)
    chart = trend_chart(points, width=720, height=260)
    root = ET.fromstring(chart.replace("<svg ", f'<svg xmlns="{SVG[1:-1]}" ', 1))  # noqa: S314 - our own output
    series = {g.get("data-severity"): g for g in root.iter(f"{SVG}g")}
    low = series["low"].find(f"{SVG}polyline")
    assert low is not None
    ys = {float(pair.split(",")[1]) for pair in (low.get("points") or "").split()}
    assert ys == {12.0}  # low is 50 every night: the peak, the top of the plot
    assert len(series) == 6


def test_one_point_and_no_point() -> None:
    assert "no earlier runs recorded" in trend_chart([])
    assert 'class="series"' in trend_chart(sample_trend(1))
