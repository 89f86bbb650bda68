"""Words and numbers every report shares, so that JUnit, Markdown and HTML say the same thing.

Outcomes are grouped as a person reads a night's run: fixed, still vulnerable (rebuilt but
still breaking the policy), failed (build or push), unverified (pushed, no rescan), rebuilt
(passed before and after), skipped, planned (dry run).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from careen.results import ImageResult, Outcome, RunResult
from careen.scan import ScanSummary, SeverityCounts

#: Report groups, in the order reports list them, with the outcomes each holds.
GROUPS: tuple[tuple[str, frozenset[Outcome]], ...] = (
    ("fixed", frozenset({Outcome.FIXED})),
    ("still vulnerable", frozenset({Outcome.IMPROVED, Outcome.NOT_HELPED})),
    ("failed", frozenset({Outcome.FAILED})),
    ("unverified", frozenset({Outcome.RESCAN_MISSING})),
    ("rebuilt", frozenset({Outcome.REBUILT})),
    ("skipped", frozenset({Outcome.SKIPPED})),
    ("planned", frozenset({Outcome.PLANNED})),
)

OUTCOME_LABELS: dict[Outcome, str] = {
    Outcome.FIXED: "fixed",
    Outcome.IMPROVED: "improved, still vulnerable",
    Outcome.NOT_HELPED: "rebuild did not help",
    Outcome.REBUILT: "rebuilt",
    Outcome.RESCAN_MISSING: "pushed, rescan missing",
    Outcome.FAILED: "failed",
    Outcome.SKIPPED: "skipped",
    Outcome.PLANNED: "planned (dry run)",
}

# C0 controls but tab/newline, DEL, C1 controls, and ANSI colour sequences as builders print
# them: none belongs in a report (XML 1.0 forbids most outright).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def group_counts(result: RunResult) -> dict[str, int]:
    """How many images fall in each group (every group present, possibly 0)."""
    return {name: sum(1 for image in result.images if image.outcome in outcomes)
            for name, outcomes in GROUPS}


def counts_text(counts: SeverityCounts | None) -> str:
    """``critical 0, high 6, medium 3, low 1``: the severities a person weighs; unknown and
    none are added only when non-zero."""
    if counts is None:
        return "unknown"
    parts = [f"{severity.label} {count}" for severity, count in counts.items()
             if count or severity.label in ("critical", "high", "medium", "low")]
    return ", ".join(parts)


def summary_text(summary: ScanSummary | None) -> str:
    if summary is None:
        return "no scan"
    if summary.counts is None:
        return f"scan {summary.status.value}"
    return counts_text(summary.counts)


def before_after_text(image: ImageResult) -> str:
    """``before: high 6, medium 3; after: high 6, medium 3``."""
    return f"before: {summary_text(image.before)}; after: {summary_text(image.after)}"


def explanation(image: ImageResult) -> str:
    """The reason it was in the plan (or skipped) and the note on its outcome, in one line."""
    return "; ".join(part for part in (image.reason, image.note) if part)


def clean_text(text: str) -> str:
    """``text`` without terminal escapes and control characters (tab and newline stay)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def log_tail(image: ImageResult, lines: int) -> list[str]:
    """The last ``lines`` lines of the image's build log, cleaned."""
    if lines <= 0:
        return []
    tail: Sequence[str] = image.log_tail[-lines:]
    return [clean_text(line.rstrip("\r\n")) for line in tail]
