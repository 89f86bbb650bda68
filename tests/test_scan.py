"""Severities keep the seed's numbering; summaries never lose a count."""

from __future__ import annotations

import pytest

from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts


def test_seed_numbering_with_critical_added() -> None:
    assert [int(s) for s in (Severity.NONE, Severity.UNKNOWN, Severity.LOW, Severity.MEDIUM,
                             Severity.HIGH, Severity.CRITICAL)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("word", "severity"),
    [("Critical", Severity.CRITICAL), ("High", Severity.HIGH), ("medium", Severity.MEDIUM),
     ("Low", Severity.LOW), ("Unknown", Severity.UNKNOWN), ("None", Severity.NONE),
     ("Negligible", Severity.NONE), ("Catastrophic", Severity.UNKNOWN)],
)
def test_scanner_words_map_to_severities(word: str, severity: Severity) -> None:
    assert Severity.from_name(word) is severity


def test_counts_from_harbor_summary_map_only_non_zero_keys() -> None:
    counts = SeverityCounts.from_mapping({"High": 1, "Medium": 3, "Low": 5, "Negligible": 2,
                                          "None": 1})
    assert counts.as_dict() == {"critical": 0, "high": 1, "medium": 3, "low": 5, "unknown": 0,
                                "none": 3}
    assert counts.total == 12
    assert counts.highest is Severity.HIGH
    assert SeverityCounts().highest is None
    assert SeverityCounts(none=4).highest is Severity.NONE


def test_counts_refuse_negative_numbers() -> None:
    with pytest.raises(ValueError, match="high"):
        SeverityCounts(high=-1)


def test_counts_add_up() -> None:
    assert (SeverityCounts(high=1) + SeverityCounts(high=2, low=1)) == SeverityCounts(high=3, low=1)


@pytest.mark.parametrize(
    ("value", "status"),
    [(None, ScanStatus.NOT_SCANNED), ("Success", ScanStatus.SUCCESS),
     ("finished", ScanStatus.SUCCESS), ("Scheduled", ScanStatus.PENDING),
     ("Running", ScanStatus.RUNNING), ("Stopped", ScanStatus.STOPPED),
     ("Error", ScanStatus.ERROR), ("weird", ScanStatus.ERROR)],
)
def test_harbor_statuses_map_and_unknown_means_error(value: str | None,
                                                     status: ScanStatus) -> None:
    assert ScanStatus.from_harbor(value) is status


def test_summary_only_succeeds_with_counts() -> None:
    assert not ScanSummary.not_scanned().succeeded
    assert not ScanSummary(status=ScanStatus.SUCCESS).succeeded
    done = ScanSummary(status=ScanStatus.SUCCESS, counts=SeverityCounts(medium=3))
    assert done.succeeded and done.highest is Severity.MEDIUM
    enriched = done.with_fixable(SeverityCounts(medium=2))
    assert enriched.fixable_total == 2 and enriched.counts == done.counts
