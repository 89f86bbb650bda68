"""Scan results survive the trip to JSON and back; malformed documents are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from careen.scan import ScanStatus, ScanSummary, SeverityCounts
from careen.state.codec import (
    counts_from_json,
    counts_to_json,
    scan_counts_from_json,
    scan_counts_to_json,
    summary_from_json,
    summary_to_json,
)

count = st.integers(min_value=0, max_value=10**9)
severity_counts = st.builds(SeverityCounts, critical=count, high=count, medium=count, low=count,
                            unknown=count, none=count)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
summaries = st.builds(
    ScanSummary,
    status=st.sampled_from(ScanStatus),
    counts=st.none() | severity_counts,
    fixable=st.none() | severity_counts,
    fixable_total=st.none() | count,
    scanner=st.none() | st.text(max_size=30),
    scanned_at=st.none() | times,
    counts_unit=st.sampled_from(["vulnerabilities", "packages"]),
    extra=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)


def _through_text(document: Any) -> Any:
    return json.loads(json.dumps(document))


@given(severity_counts)
def test_counts_round_trip(counts: SeverityCounts) -> None:
    assert counts_from_json(_through_text(counts_to_json(counts))) == counts


def test_counts_write_every_severity_worst_first() -> None:
    assert list(counts_to_json(SeverityCounts(high=2))) == [
        "critical", "high", "medium", "low", "unknown", "none",
    ]


@given(summaries)
def test_summary_round_trip(summary: ScanSummary) -> None:
    back = summary_from_json(_through_text(summary_to_json(summary)))
    assert back == summary
    assert back.extra == summary.extra  # not part of ==, kept all the same


@given(summaries)
def test_scans_column_round_trip_keeps_everything_but_extra(summary: ScanSummary) -> None:
    document = scan_counts_to_json(summary)
    back = scan_counts_from_json(
        _through_text(document), status=summary.status.value, scanner=summary.scanner,
        scanned_at=summary.scanned_at,
    )
    if summary.counts is None and summary.fixable is None and summary.fixable_total is None:
        assert document is None
        assert back.counts is None
        assert back.status is summary.status
    else:
        assert back == summary


def test_scans_column_shape() -> None:
    summary = ScanSummary(ScanStatus.SUCCESS, counts=SeverityCounts(high=2, medium=1),
                          fixable_total=1)
    assert scan_counts_to_json(summary) == {
        "critical": 0, "high": 2, "medium": 1, "low": 0, "unknown": 0, "none": 0,
        "fixable": None, "fixable_total": 1, "unit": "vulnerabilities",
    }


def test_missing_severities_read_as_zero() -> None:
    assert counts_from_json({"high": 3}) == SeverityCounts(high=3)


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ([1, 2], "expected a JSON object"),
        ({"high": -1}, "high must be a whole number"),
        ({"high": True}, "high must be a whole number"),
        ({"high": 1.5}, "high must be a whole number"),
        ({"severe": 1}, "unknown severity 'severe'"),
    ],
)
def test_bad_counts_are_refused(document: object, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        counts_from_json(document)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"status": "done"}, "scan status 'done'"),
        ({"unit": "bytes"}, "counts unit 'bytes'"),
        ({"fixable_total": -2}, "fixable_total"),
        ({"scanned_at": "yesterday"}, "not an ISO-8601 time"),
        ({"scanner": 5}, "scanner must be text"),
        ({"extra": {"a": 1}}, "extra must map text to text"),
    ],
)
def test_bad_summaries_are_refused(change: dict[str, Any], complaint: str) -> None:
    document = summary_to_json(ScanSummary(ScanStatus.SUCCESS, counts=SeverityCounts(low=1)))
    document.update(change)
    with pytest.raises(ValueError, match=complaint):
        summary_from_json(document)
