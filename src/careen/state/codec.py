"""JSON forms of scan results, for the state database (and anything else that stores them).

Two shapes:

* :func:`counts_to_json` / :func:`counts_from_json`: a :class:`SeverityCounts` as
  ``{"critical": 0, "high": 2, "medium": 1, "low": 0, "unknown": 0, "none": 0}`` — every
  severity written, so a reader (``json_extract`` in ``sqlite3``, a report) never guesses.
* :func:`summary_to_json` / :func:`summary_from_json`: a whole :class:`ScanSummary`.

The ``scans`` table keeps status, scanner and scan time in their own columns and only the
numbers in its ``counts`` column: :func:`scan_counts_to_json` / :func:`scan_counts_from_json`
write and read that column's document (the counts above at the top level, plus ``fixable``,
``fixable_total`` and ``unit``).

Decoding is strict: a document that does not have the expected shape raises ``ValueError``
naming the field, rather than producing wrong counts in a trend report.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts

#: Severity names in the order they are written, worst first.
SEVERITY_KEYS: tuple[str, ...] = tuple(s.label for s in sorted(Severity, reverse=True))
_UNITS = frozenset({"vulnerabilities", "packages"})
_STATUSES = frozenset(s.value for s in ScanStatus)


def counts_to_json(counts: SeverityCounts) -> dict[str, int]:
    return counts.as_dict()


def counts_from_json(document: object, *, what: str = "severity counts") -> SeverityCounts:
    """Read counts written by :func:`counts_to_json`. Missing severities are zero (a document
    written before a severity existed still reads); unknown keys are an error."""
    mapping = _mapping(document, what)
    unknown = sorted(set(mapping) - set(SEVERITY_KEYS))
    if unknown:
        raise ValueError(f"{what}: unknown severity {unknown[0]!r}")
    values: dict[str, int] = {}
    for key, value in mapping.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{what}: {key} must be a whole number >= 0, not {value!r}")
        values[key] = value
    return SeverityCounts(**values)


def summary_to_json(summary: ScanSummary) -> dict[str, Any]:
    return {
        "status": summary.status.value,
        "counts": counts_to_json(summary.counts) if summary.counts is not None else None,
        "fixable": counts_to_json(summary.fixable) if summary.fixable is not None else None,
        "fixable_total": summary.fixable_total,
        "scanner": summary.scanner,
        "scanned_at": _time_to_json(summary.scanned_at),
        "unit": summary.counts_unit,
        "extra": dict(summary.extra),
    }


def summary_from_json(document: object) -> ScanSummary:
    mapping = _mapping(document, "scan summary")
    status = _status(mapping.get("status"))
    extra = mapping.get("extra") or {}
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
    ):
        raise ValueError("scan summary: extra must map text to text")
    return ScanSummary(
        status=status,
        counts=_optional_counts(mapping.get("counts"), "scan summary counts"),
        fixable=_optional_counts(mapping.get("fixable"), "scan summary fixable"),
        fixable_total=_optional_count(mapping.get("fixable_total"), "fixable_total"),
        scanner=_optional_text(mapping.get("scanner"), "scanner"),
        scanned_at=_time_from_json(mapping.get("scanned_at")),
        counts_unit=_unit(mapping.get("unit", "vulnerabilities")),
        extra=dict(extra),
    )


def scan_counts_to_json(summary: ScanSummary) -> dict[str, Any] | None:
    """The ``scans.counts`` document, or ``None`` when the scan has no numbers at all."""
    if summary.counts is None and summary.fixable is None and summary.fixable_total is None:
        return None
    document: dict[str, Any] = (
        counts_to_json(summary.counts) if summary.counts is not None else {}
    )
    document["fixable"] = (
        counts_to_json(summary.fixable) if summary.fixable is not None else None
    )
    document["fixable_total"] = summary.fixable_total
    document["unit"] = summary.counts_unit
    return document


def scan_counts_from_json(document: object | None, *, status: str, scanner: str | None,
                          scanned_at: datetime | None) -> ScanSummary:
    """Rebuild the :class:`ScanSummary` a ``scans`` row was written from."""
    if document is None:
        return ScanSummary(status=_status(status), scanner=scanner, scanned_at=scanned_at)
    mapping = dict(_mapping(document, "scan counts"))
    fixable = _optional_counts(mapping.pop("fixable", None), "scan counts fixable")
    fixable_total = _optional_count(mapping.pop("fixable_total", None), "fixable_total")
    unit = _unit(mapping.pop("unit", "vulnerabilities"))
    counts = counts_from_json(mapping, what="scan counts") if mapping else None
    return ScanSummary(
        status=_status(status), counts=counts, fixable=fixable, fixable_total=fixable_total,
        scanner=scanner, scanned_at=scanned_at, counts_unit=unit,
    )


# -- helpers ---------------------------------------------------------------------------------


def _mapping(document: object, what: str) -> Mapping[str, Any]:
    if not isinstance(document, Mapping):
        raise ValueError(f"{what}: expected a JSON object, not {type(document).__name__}")
    return document


def _optional_counts(value: object, what: str) -> SeverityCounts | None:
    return None if value is None else counts_from_json(value, what=what)


def _optional_count(value: object, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what} must be a whole number >= 0 or null, not {value!r}")
    return value


def _optional_text(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{what} must be text or null, not {value!r}")


def _status(value: object) -> ScanStatus:
    if isinstance(value, str) and value in _STATUSES:
        return ScanStatus(value)
    known = ", ".join(s.value for s in ScanStatus)
    raise ValueError(f"scan status {value!r} is not one of {known}")


def _unit(value: object) -> str:
    if not isinstance(value, str) or value not in _UNITS:
        raise ValueError(f"counts unit {value!r} is not one of {', '.join(sorted(_UNITS))}")
    return value


def _time_to_json(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time_from_json(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"scanned_at must be ISO-8601 text or null, not {value!r}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"scanned_at {value!r} is not an ISO-8601 time") from None
