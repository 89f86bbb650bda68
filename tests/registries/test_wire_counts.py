"""The fast paths of ``careen.registries.wire`` agree with the model's own constructors."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from careen.registries.wire import MIME_V11, _severity_counts, summary_from_overview
from careen.scan import ScanStatus, SeverityCounts

WORDS = st.sampled_from(["Critical", "High", "Medium", "Low", "Unknown", "None", "Negligible",
                         "high", " High ", "CRITICAL", "Bogus", ""]) | st.text(max_size=8)


@given(st.dictionaries(WORDS, st.integers(min_value=0, max_value=10**6), max_size=8))
def test_severity_counts_are_from_mapping(counts: dict[str, int]) -> None:
    _severity_counts.cache_clear()
    assert _severity_counts(tuple(counts.items())) == SeverityCounts.from_mapping(counts)


def overview(per_severity: object) -> dict[str, object]:
    return {MIME_V11: {"scan_status": "Success", "summary": {"summary": per_severity,
                                                             "fixable": 1}}}


def test_a_count_that_is_not_a_whole_number_is_unreadable_never_zero() -> None:
    for bad in (True, 1.0, -1, "3", None, [1]):
        summary = summary_from_overview(overview({"High": 2, "Low": bad}))
        assert summary.status is ScanStatus.SUCCESS and summary.counts is None
        assert summary.unreadable_reason is not None and "Low" in summary.unreadable_reason
    readable = summary_from_overview(overview({"High": 2, "Low": 1, "Negligible": 4}))
    assert readable.counts == SeverityCounts(high=2, low=1, none=4)
    assert readable.fixable_total == 1
