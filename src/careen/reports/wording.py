"""Words and numbers every report shares, so that JUnit, Markdown and HTML say the same thing.

Outcomes are grouped as a person reads a night's run: fixed, still vulnerable (rebuilt but
still breaking the policy), failed (build or push), unverified (pushed, no rescan), rebuilt
(passed before and after), skipped, planned (dry run).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from careen.attention import AttentionItem, AttentionKind
from careen.details import Finding
from careen.plan import SkipReason
from careen.results import ImageResult, Outcome, RunResult, sort_results
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


def compact_text(summary: ScanSummary | None) -> str:
    """``high 1, medium 4``: the non-zero severities only; ``clean`` when there are none."""
    if summary is None or summary.counts is None:
        return summary_text(summary)
    return ", ".join(f"{severity.label} {n}" for severity, n in summary.counts.items()
                     if n) or "clean"


def before_after_text(image: ImageResult) -> str:
    """``before: high 6, medium 3; after: high 6, medium 3``."""
    return f"before: {summary_text(image.before)}; after: {summary_text(image.after)}"


def explanation(image: ImageResult) -> str:
    """The reason it was in the plan (or skipped) and the note on its outcome, in one line.
    A skipped image's note that is only its skip code (``no_folder``) adds nothing to the
    reason (which says it in words) and is left out."""
    return "; ".join(explanation_parts(image))


def explanation_parts(image: ImageResult) -> list[str]:
    """:func:`explanation`'s parts: the reason, the note (each when there is one)."""
    note = image.note
    if image.outcome is Outcome.SKIPPED and _skip_code(note) in _SKIP_CODES:
        note = ""
    return [part for part in (image.reason, note) if part]


_SKIP_CODES = frozenset(reason.value for reason in SkipReason)


def _skip_code(note: str) -> str:
    return note.removeprefix("not rebuilt (").rstrip(")")


def clean_text(text: str) -> str:
    """``text`` without terminal escapes and control characters (tab and newline stay)."""
    return _CONTROL.sub("", _ANSI.sub("", text))


def log_tail(image: ImageResult, lines: int) -> list[str]:
    """The last ``lines`` lines of the image's build log, cleaned."""
    if lines <= 0:
        return []
    tail: Sequence[str] = image.log_tail[-lines:]
    return [clean_text(line.rstrip("\r\n")) for line in tail]


# -- needs attention ---------------------------------------------------------------------------

#: An image's outcome (or the skip reason in its note) -> the attention kind it stands for.
_KIND_OF_OUTCOME: dict[Outcome, AttentionKind] = {
    Outcome.FAILED: AttentionKind.BUILD_FAILED,
    Outcome.NOT_HELPED: AttentionKind.NOT_HELPED,
    Outcome.IMPROVED: AttentionKind.IMPROVED,
    Outcome.RESCAN_MISSING: AttentionKind.UNSCANNED_AT_DEADLINE,
}
_KIND_OF_SKIP: dict[str, AttentionKind] = {
    "no_folder": AttentionKind.NO_FOLDER,
    "cycle": AttentionKind.CYCLE,
}

ATTENTION_LABELS: dict[AttentionKind, str] = {
    AttentionKind.NO_FOLDER: "no Dockerfile folder",
    AttentionKind.UNREADABLE_LINE: "unreadable list line",
    AttentionKind.NOT_HELPED: "rebuild did not help",
    AttentionKind.IMPROVED: "improved, still vulnerable",
    AttentionKind.UNSCANNED_AT_DEADLINE: "rescan missing",
    AttentionKind.UNSCANNED: "not scanned",
    AttentionKind.CYCLE: "FROM cycle",
    AttentionKind.UNMAPPED_DOCKERFILE: "unmapped Dockerfile",
    AttentionKind.MISSING_PARENT: "missing parent",
    AttentionKind.PROVENANCE_REFUSED: "provenance refused",
    AttentionKind.BUILD_FAILED: "build failed",
    AttentionKind.PARENT_FAILED: "parent failed",
    AttentionKind.HELD: "held",
}


def attention_items(result: RunResult) -> tuple[AttentionItem, ...]:
    """The run's needs-attention list: the items its producers added
    (:attr:`RunResult.attention`), then one for each failing or unplannable image they did
    not name (a result written before the producers existed). Images of the fleet without a
    usable scan are listed apart (:attr:`RunResult.unscanned`): they do not make a run exit 1."""
    items = list(result.attention)
    named = {item.subject for item in items}
    for image in sort_results(result.images):
        subject = image.image.short
        if subject in named:
            continue
        kind = _KIND_OF_OUTCOME.get(image.outcome)
        if kind is None and image.outcome is Outcome.SKIPPED:
            kind = _KIND_OF_SKIP.get(_skip_code(image.note))
            if kind is None and image.note.startswith("parent "):
                kind = AttentionKind.PARENT_FAILED
        if kind is None:
            continue
        reason = image.note if kind is not AttentionKind.NO_FOLDER else image.reason
        if kind is AttentionKind.NO_FOLDER and image.before is not None:
            reason += f" ({summary_text(image.before)})"
        items.append(AttentionItem(kind, subject, reason or OUTCOME_LABELS[image.outcome],
                                   path=image.log_path if kind is AttentionKind.BUILD_FAILED
                                   else None))
        named.add(subject)
    return tuple(items)


# -- CVE text ----------------------------------------------------------------------------------


def finding_text(finding: Finding) -> str:
    """``CVE-2024-1 openssl 3.0.1 -> 3.0.2`` (``no fix`` when none): one line, cleaned."""
    fix = f"-> {finding.fix_version}" if finding.fix_version else "(no fix)"
    return " ".join(clean_text(f"{finding.id} {finding.package} {finding.version} {fix}")
                    .split())


def findings_line(findings: Sequence[Finding], limit: int = 5) -> str:
    """The first ``limit`` findings as :func:`finding_text`, then ``and N more``."""
    shown = [finding_text(f) for f in findings[:limit]]
    if len(findings) > limit:
        shown.append(f"and {len(findings) - limit} more")
    return ", ".join(shown)


def cve_counts_text(image: ImageResult) -> str:
    """``12 fixed, 3 remaining, 0 new`` when both lists are known; ``7 CVEs`` with one;
    ``""`` with none."""
    changes = image.cve_changes
    if changes is not None:
        return (f"{len(changes.fixed)} fixed, {len(changes.remaining)} remaining, "
                f"{len(changes.new)} new")
    current = image.current_cves
    if current is not None:
        return f"{len(current)} CVE{'' if len(current) == 1 else 's'}"
    return ""
