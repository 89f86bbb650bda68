"""Scan results: severities, counts per severity, and one artifact's scan summary.

Severities are numbered as the seed's Clair-era Harbor numbered them (1 none, 2 unknown,
3 low, 4 medium, 5 high), with 6 added for critical, which Trivy reports above high.
The numbers are what vulnerable.list writes (``5=6,`` is "6 at severity 5, high").
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import IntEnum, StrEnum


class Severity(IntEnum):
    NONE = 1
    UNKNOWN = 2
    LOW = 3
    MEDIUM = 4
    HIGH = 5
    CRITICAL = 6

    @classmethod
    def from_name(cls, name: str) -> Severity:
        """Map a scanner's severity word (Harbor v2: ``None``, ``Unknown``, ``Negligible``,
        ``Low``, ``Medium``, ``High``, ``Critical``) to a severity. ``Negligible`` is counted as
        none, as Harbor 1.x did with Clair's negligible findings; an unrecognised word is
        ``UNKNOWN``, never dropped."""
        key = name.strip().lower()
        if key == "negligible":
            return cls.NONE
        try:
            return cls[key.upper()]
        except KeyError:
            return cls.UNKNOWN

    @property
    def label(self) -> str:
        return self.name.lower()


class ScanStatus(StrEnum):
    NOT_SCANNED = "not_scanned"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    STOPPED = "stopped"

    @classmethod
    def from_harbor(cls, value: str | None) -> ScanStatus:
        """Map Harbor's ``scan_status`` (v2: ``Pending``, ``Running``, ``Stopped``, ``Error``,
        ``Success``, ``Scheduled``; v1: lower-case ``pending``, ``running``, ``finished``,
        ``error``, ``stopped``, ``retrying``, ``scheduled``, ``canceled``). Harbor shows an
        unknown status as Error, and so does Careen."""
        if value is None:
            return cls.NOT_SCANNED
        key = value.strip().lower()
        mapping = {
            "pending": cls.PENDING, "scheduled": cls.PENDING, "retrying": cls.PENDING,
            "running": cls.RUNNING,
            "success": cls.SUCCESS, "finished": cls.SUCCESS,
            "error": cls.ERROR,
            "stopped": cls.STOPPED, "canceled": cls.STOPPED, "cancelled": cls.STOPPED,
        }
        return mapping.get(key, cls.ERROR)

    @property
    def is_final(self) -> bool:
        return self in (ScanStatus.SUCCESS, ScanStatus.ERROR, ScanStatus.STOPPED)


@dataclass(frozen=True, slots=True)
class SeverityCounts:
    """How many findings at each severity. Missing severities are zero."""

    critical: int = 0
    high: int = 0
    medium: int = 0
    low: int = 0
    unknown: int = 0
    none: int = 0

    def __post_init__(self) -> None:
        # Built once per image of a 100,000-image inventory: a plain loop over the names.
        for name in _COUNT_NAMES:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"severity count {name} must be a whole number >= 0")

    @classmethod
    def from_mapping(cls, counts: dict[str, int]) -> SeverityCounts:
        """From Harbor's ``summary.summary`` map (``{"High": 3, "Medium": 1}``): keys are
        scanner severity words, only non-zero ones present. Words that map to the same
        severity (``None`` and ``Negligible``) add up."""
        totals: dict[Severity, int] = {}
        for word, count in counts.items():
            severity = Severity.from_name(word)
            totals[severity] = totals.get(severity, 0) + int(count)
        return cls.of(totals)

    @classmethod
    def of(cls, counts: dict[Severity, int]) -> SeverityCounts:
        return cls(**{severity.label: n for severity, n in counts.items()})

    def get(self, severity: Severity) -> int:
        value: int = getattr(self, severity.label)
        return value

    def items(self) -> list[tuple[Severity, int]]:
        """(severity, count) from critical down to none."""
        return [(severity, getattr(self, name)) for severity, name in _WORST_FIRST]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.items())

    @property
    def highest(self) -> Severity | None:
        """The highest severity with a non-zero count (``NONE`` counts too), or ``None``."""
        for severity, count in self.items():
            if count:
                return severity
        return None

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for _, name in _WORST_FIRST}

    def __add__(self, other: SeverityCounts) -> SeverityCounts:
        return SeverityCounts(*(getattr(self, name) + getattr(other, name)
                                for name in _COUNT_NAMES))


def read_count(value: object) -> int | None:
    """A severity count from a registry's JSON: a whole number >= 0, else ``None``
    (``"7"``, ``null``, ``1.5``, ``NaN``, ``true``, ``[]``, ``{}`` and ``-3`` are unreadable,
    never zero)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


#: What :attr:`ScanSummary.extra` holds, under this key, when the counts were unreadable.
UNREADABLE_KEY = "unreadable_counts"


#: The count fields, in declaration order (the constructor's positional order).
_COUNT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(SeverityCounts))
#: (severity, field name) from critical down to none.
_WORST_FIRST: tuple[tuple[Severity, str], ...] = tuple(
    (severity, severity.label) for severity in sorted(Severity, reverse=True))


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """One artifact's latest scan, as the registry reports it.

    ``counts`` is ``None`` unless the scan succeeded. ``fixable`` holds per-severity counts of
    findings with a fixed version, where known (Harbor's overview gives only ``fixable_total``;
    per-severity fixable counts come from the vulnerability list). ``counts_unit`` is
    ``"vulnerabilities"`` for Harbor v2 and ``"packages"`` for Harbor 1.x with Clair, which
    counted each package once under its worst finding.
    """

    status: ScanStatus
    counts: SeverityCounts | None = None
    fixable: SeverityCounts | None = None
    fixable_total: int | None = None
    scanner: str | None = None
    scanned_at: datetime | None = None
    counts_unit: str = "vulnerabilities"
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def not_scanned(cls) -> ScanSummary:
        return cls(status=ScanStatus.NOT_SCANNED)

    @classmethod
    def unreadable(cls, reason: str, extra: dict[str, str] | None = None, *,
                   counts_unit: str = "vulnerabilities") -> ScanSummary:
        """A scan the registry calls successful whose counts cannot be read (``reason``
        says which). It has no counts, so the policy judges it as it judges a failed scan:
        reported, never clean (issue 18 rows 2 and 3)."""
        return cls(status=ScanStatus.SUCCESS, counts_unit=counts_unit,
                   extra={**(extra or {}), UNREADABLE_KEY: reason})

    @property
    def unreadable_reason(self) -> str | None:
        """Why the counts of a successful scan could not be read, if they could not."""
        return self.extra.get(UNREADABLE_KEY)

    @property
    def succeeded(self) -> bool:
        return self.status is ScanStatus.SUCCESS and self.counts is not None

    @property
    def highest(self) -> Severity | None:
        return self.counts.highest if self.counts is not None else None

    def with_fixable(self, fixable: SeverityCounts) -> ScanSummary:
        return replace(self, fixable=fixable, fixable_total=fixable.total)
