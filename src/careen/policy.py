"""The policy: which images break the rules and are to be rebuilt.

A :class:`Policy` is a rule (the language lives in :mod:`careen.rule`; its names are re-exported
here), the ``fixable_only`` switch, the ignore globs and what to do with unscanned images. It
judges one image at a time (:class:`Verdict`) and sorts a fleet (:class:`Selection`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from careen.errors import ConfigError
from careen.inventory import Image
from careen.rule import (
    ALIASES,
    DEFAULT_RULE,
    MAX_NESTING,
    MAX_RULE_LENGTH,
    NAMES,
    And,
    Comparison,
    Constant,
    Expr,
    Not,
    Or,
    Rule,
    parse_rule,
)
from careen.scan import ScanStatus, Severity, SeverityCounts

__all__ = [
    "ALIASES",
    "DEFAULT_RULE",
    "MAX_NESTING",
    "MAX_RULE_LENGTH",
    "NAMES",
    "UNSCANNED_KINDS",
    "And",
    "Comparison",
    "Constant",
    "Expr",
    "Judged",
    "Not",
    "Or",
    "Policy",
    "Rule",
    "Selection",
    "UnscannedAction",
    "Verdict",
    "VerdictKind",
    "parse_rule",
    "select_vulnerable",
]

class UnscannedAction(StrEnum):
    """What to do with an image that has no usable scan result (never scanned, scan failed or
    stopped, scan pending or running)."""

    #: Listed separately; not selected for a rebuild.
    REPORT = "report"
    #: Treated as breaking the policy: rebuilt (and so scanned afterwards).
    SELECT = "select"
    #: Not listed at all, only counted.
    IGNORE = "ignore"


class VerdictKind(StrEnum):
    VIOLATES = "violates"
    PASSES = "passes"
    IGNORED = "ignored"
    NOT_SCANNED = "not_scanned"
    SCAN_FAILED = "scan_failed"
    SCAN_IN_PROGRESS = "scan_in_progress"
    NEEDS_DETAILS = "needs_details"


#: Verdicts about an image without a usable scan; :class:`UnscannedAction` applies to them.
UNSCANNED_KINDS: Final = frozenset(
    {VerdictKind.NOT_SCANNED, VerdictKind.SCAN_FAILED, VerdictKind.SCAN_IN_PROGRESS}
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's judgement of one image. ``reason`` is for people (``"high 2 > 0"``,
    ``"never scanned"``); ``matched`` lists the comparisons that made the rule true."""

    kind: VerdictKind
    reason: str
    matched: tuple[str, ...] = ()
    unscanned: UnscannedAction = UnscannedAction.REPORT

    @property
    def selected(self) -> bool:
        """True if the image is to be rebuilt."""
        return self.kind is VerdictKind.VIOLATES or (
            self.kind in UNSCANNED_KINDS and self.unscanned is UnscannedAction.SELECT
        )

    @property
    def listed(self) -> bool:
        """False for an unscanned image the policy says not to list (only count)."""
        return not (self.kind in UNSCANNED_KINDS and self.unscanned is UnscannedAction.IGNORE)


@dataclass(frozen=True, slots=True)
class Policy:
    rule: Rule = field(default_factory=lambda: Rule.parse(DEFAULT_RULE))
    #: Evaluate the rule over the counts of findings that have a fix, not all findings.
    fixable_only: bool = False
    #: fnmatch globs (``library/debug-*``, ``*:latest``) matched against ``repository:tag``,
    #: ``repository`` and both with the registry host in front.
    ignore: tuple[str, ...] = ()
    unscanned: UnscannedAction = UnscannedAction.REPORT
    #: The names the rule uses, in :data:`NAMES` order, each with where its value comes from
    #: (see :meth:`_value`): worked out once per policy instead of once per image.
    _sources: tuple[tuple[str, bool, str], ...] = field(
        init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        used = self.rule.names_used()
        sources = []
        for name in NAMES:
            if name not in used:
                continue
            from_fixable = self.fixable_only or name.startswith("fixable_")
            sources.append((name, from_fixable, name.removeprefix("fixable_")))
        object.__setattr__(self, "_sources", tuple(sources))

    @classmethod
    def from_settings(
        cls, rule: str | None = None, fixable_only: bool = False, ignore: Sequence[str] = (),
        unscanned: str | UnscannedAction = UnscannedAction.REPORT, *, source: str | None = None,
    ) -> Policy:
        """Build a policy from settings (config file, flags); ``rule=None`` means
        :data:`DEFAULT_RULE`. Raises :class:`PolicySyntaxError` for a bad rule and
        :class:`ConfigError` (naming ``source`` and the key) for other bad values."""
        parsed = Rule.parse(DEFAULT_RULE if rule is None else rule)
        if not isinstance(fixable_only, bool):
            raise ConfigError(
                f"expected true or false, got {fixable_only!r}", source=source,
                key="policy.fixable_only",
            )
        return cls(parsed, fixable_only, _check_ignore(ignore, source), _check_unscanned(
            unscanned, source
        ))

    def ignored_by(self, image: Image) -> str | None:
        """The first ``ignore`` pattern that matches the image, if any."""
        if not self.ignore:
            return None
        ref = image.reference
        candidates = [ref.short, ref.repository, ref.name, str(ref)]
        if ref.tag is not None:
            candidates.append(f"{ref.name}:{ref.tag}")
        for pattern in self.ignore:
            if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
                return pattern
        return None

    def evaluate(self, image: Image) -> Verdict:
        pattern = self.ignored_by(image)
        if pattern is not None:
            return Verdict(VerdictKind.IGNORED, f"ignored by policy.ignore {pattern!r}")
        scan = image.scan
        status = scan.status
        if status is ScanStatus.NOT_SCANNED:
            return self._unscanned(VerdictKind.NOT_SCANNED, "never scanned")
        if status in (ScanStatus.PENDING, ScanStatus.RUNNING):
            return self._unscanned(VerdictKind.SCAN_IN_PROGRESS, f"scan {status.value}")
        if status in (ScanStatus.ERROR, ScanStatus.STOPPED):
            return self._unscanned(VerdictKind.SCAN_FAILED, f"scan {status.value}")
        if scan.counts is None:
            return self._unscanned(
                VerdictKind.SCAN_FAILED, "scan reported success but no severity counts"
            )

        # Only the names the rule uses: the rule, the missing names and the "passes" text
        # read nothing else, and this runs once per image of the fleet.
        counts, fixable, fixable_total = scan.counts, scan.fixable, scan.fixable_total
        values = {name: _value(from_fixable, key, counts, fixable, fixable_total)
                  for name, from_fixable, key in self._sources}
        outcome, matched = self.rule.evaluate(values)
        suffix = " (fixable findings only)" if self.fixable_only else ""
        if outcome is None:
            missing = sorted(n for n in values if values[n] is None)
            return Verdict(
                VerdictKind.NEEDS_DETAILS,
                f"the scan summary lacks fixable counts for {', '.join(missing)}{suffix}; "
                "fetch the vulnerability list and evaluate again",
            )
        if outcome:
            return Verdict(VerdictKind.VIOLATES, "; ".join(matched) + suffix, matched)
        shown = ", ".join(f"{n} {v}" for n, v in values.items())
        return Verdict(VerdictKind.PASSES, f"passes ({shown or 'no counts used'}){suffix}")

    def _unscanned(self, kind: VerdictKind, reason: str) -> Verdict:
        return Verdict(kind, reason, unscanned=self.unscanned)

    def _values(
        self, counts: SeverityCounts, fixable: SeverityCounts | None, fixable_total: int | None,
    ) -> dict[str, int | None]:
        """Every name's value (the reference :meth:`evaluate`'s fast path is tested against)."""
        if fixable_total is None and fixable is not None:
            fixable_total = fixable.total
        fixable_values: dict[str, int | None] = {
            s.label: (fixable.get(s) if fixable is not None else None) for s in Severity
        }
        fixable_values["total"] = fixable_total
        values: dict[str, int | None] = {f"fixable_{k}": v for k, v in fixable_values.items()}
        if self.fixable_only:
            values.update(fixable_values)
        else:
            values.update({s.label: counts.get(s) for s in Severity})
            values["total"] = counts.total
        return values


def _value(from_fixable: bool, key: str, counts: SeverityCounts,
           fixable: SeverityCounts | None, fixable_total: int | None) -> int | None:
    """One name's value: ``key`` is a severity label or ``total``; ``from_fixable`` reads the
    fixable counts (unknown, ``None``, where the summary lacks them)."""
    if not from_fixable:
        return counts.total if key == "total" else int(getattr(counts, key))
    if key == "total":
        if fixable_total is None and fixable is not None:
            return fixable.total
        return fixable_total
    return int(getattr(fixable, key)) if fixable is not None else None


def _check_ignore(ignore: Sequence[str], source: str | None) -> tuple[str, ...]:
    if isinstance(ignore, str) or not isinstance(ignore, Sequence):
        raise ConfigError(
            f"expected a list of patterns, got {type(ignore).__name__}", source=source,
            key="policy.ignore", hint="write e.g. ignore = ['library/debug-*', '*:latest']",
        )
    patterns: list[str] = []
    for index, pattern in enumerate(ignore, start=1):
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(
                f"pattern {index} is empty or not text: {pattern!r}", source=source,
                key="policy.ignore",
            )
        if any(c.isspace() for c in pattern.strip()) or not pattern.isprintable():
            raise ConfigError(
                f"pattern {pattern!r} contains white space or control characters; image "
                "references never do", source=source, key="policy.ignore",
            )
        patterns.append(pattern.strip())
    return tuple(patterns)


def _check_unscanned(value: str | UnscannedAction, source: str | None) -> UnscannedAction:
    if isinstance(value, UnscannedAction):
        return value
    choices = ", ".join(a.value for a in UnscannedAction)
    if isinstance(value, str):
        try:
            return UnscannedAction(value.strip().lower())
        except ValueError:
            pass
    raise ConfigError(
        f"unknown value {value!r}; use one of {choices}", source=source, key="policy.unscanned"
    )


# -- selection -------------------------------------------------------------------------------


Judged = tuple[Image, Verdict]


@dataclass(slots=True)
class Selection:
    """Every image sorted by verdict. Images that pass are only counted, so a selection over a
    large registry holds just the images someone needs to look at."""

    selected: list[Judged] = field(default_factory=list)
    passed_count: int = 0
    not_scanned: list[Judged] = field(default_factory=list)
    scan_failed: list[Judged] = field(default_factory=list)
    scan_in_progress: list[Judged] = field(default_factory=list)
    ignored: list[Judged] = field(default_factory=list)
    #: Images whose verdict needs per-severity fixable counts: fetch them and evaluate again.
    needs_details: list[Judged] = field(default_factory=list)
    #: Unscanned images not listed: ``policy.unscanned`` is ``ignore``, or they are untagged.
    unlisted_unscanned_count: int = 0
    #: Untagged artifacts the policy selects: superseded digests Harbor keeps until tag
    #: retention or garbage collection removes them. No tag to rebuild: never selected.
    untagged: list[Judged] = field(default_factory=list)

    def add(self, image: Image, verdict: Verdict) -> None:
        kind = verdict.kind
        if verdict.selected and image.reference.tag is None:
            self.untagged.append((image, verdict))
        elif image.reference.tag is None and kind in UNSCANNED_KINDS:
            # An untagged artifact without a scan is no image to scan or rebuild either.
            self.unlisted_unscanned_count += 1
        elif verdict.selected:
            self.selected.append((image, verdict))
        elif kind is VerdictKind.PASSES:
            self.passed_count += 1
        elif not verdict.listed:
            self.unlisted_unscanned_count += 1
        elif kind is VerdictKind.IGNORED:
            self.ignored.append((image, verdict))
        elif kind is VerdictKind.NEEDS_DETAILS:
            self.needs_details.append((image, verdict))
        elif kind is VerdictKind.NOT_SCANNED:
            self.not_scanned.append((image, verdict))
        elif kind is VerdictKind.SCAN_FAILED:
            self.scan_failed.append((image, verdict))
        else:
            self.scan_in_progress.append((image, verdict))

    @property
    def total(self) -> int:
        """How many images were judged."""
        return (
            len(self.selected) + self.passed_count + len(self.not_scanned)
            + len(self.scan_failed) + len(self.scan_in_progress) + len(self.ignored)
            + len(self.needs_details) + self.unlisted_unscanned_count + len(self.untagged)
        )


def select_vulnerable(images: Iterable[Image], policy: Policy) -> Selection:
    """Judge every image (the input may be a generator; it is read once)."""
    selection = Selection()
    for image in images:
        selection.add(image, policy.evaluate(image))
    return selection
