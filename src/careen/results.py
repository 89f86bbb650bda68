"""What a run did, image by image: the model every report (JSON, JUnit, Markdown, HTML) reads.

A run compares each rebuilt image's scan before and after (Harbor rescans the pushed digest)
and says in one word what happened — fixed, improved, did not help, failed, skipped — with
the reason a person needs: "rebuild did not help: no fix available upstream (fixable 0);
bump the base version".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from careen.attention import AttentionItem, AttentionKind, attention_to_dicts
from careen.details import CveDiff, Finding, diff_findings, findings_to_dicts
from careen.inventory import Image
from careen.policy import Policy, Selection, VerdictKind
from careen.reference import ImageReference
from careen.scan import ScanSummary, SeverityCounts

#: Version of :meth:`RunResult.to_dict`'s document (``docs/schemas/run-result.schema.json``).
#: Version 2 (issue 14) adds each image's CVE lists (``cves_before``, ``cves_after``,
#: ``cve_changes``), the needs-attention list, the fleet's totals and ``details_note``.
RESULT_SCHEMA_VERSION = 2


class Outcome(StrEnum):
    #: Rebuilt, rescanned, and passes the policy now.
    FIXED = "fixed"
    #: Rebuilt and rescanned with fewer findings, but still breaks the policy.
    IMPROVED = "improved"
    #: Rebuilt and rescanned; the counts did not go down.
    NOT_HELPED = "not_helped"
    #: Rebuilt (a cascade child that passed before and still passes, or counts unknown).
    REBUILT = "rebuilt"
    #: Pushed, but Harbor's rescan did not finish in time (or failed).
    RESCAN_MISSING = "rescan_missing"
    #: The build or the push failed.
    FAILED = "failed"
    #: Not rebuilt: no folder, ignored, immutable, a parent failed...
    SKIPPED = "skipped"
    #: ``--dry-run``: would have been rebuilt.
    PLANNED = "planned"


#: Outcomes that make a run exit 1 (and a JUnit test case fail).
FAILING_OUTCOMES = frozenset({Outcome.FAILED, Outcome.IMPROVED, Outcome.NOT_HELPED,
                              Outcome.RESCAN_MISSING})


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One image of a run. ``reason`` says why it was in the plan (the policy's verdict or
    "child of ...") or why it was skipped; ``note`` explains the outcome."""

    image: ImageReference
    outcome: Outcome
    reason: str
    note: str = ""
    level: int | None = None
    parents: tuple[ImageReference, ...] = ()
    selected: bool = True
    before: ScanSummary | None = None
    before_digest: str | None = None
    after: ScanSummary | None = None
    after_digest: str | None = None
    duration: float | None = None
    log_path: str | None = None
    log_tail: tuple[str, ...] = ()
    #: Harbor's findings for the image before its rebuild, and for the rebuilt digest after
    #: its rescan; ``None`` when not read (Harbor 1.x with no details, no right, no rebuild).
    cves_before: tuple[Finding, ...] | None = None
    cves_after: tuple[Finding, ...] | None = None

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING_OUTCOMES

    @property
    def cve_changes(self) -> CveDiff | None:
        """Fixed, remaining and new CVEs when both lists are known."""
        if self.cves_before is None or self.cves_after is None:
            return None
        return diff_findings(self.cves_before, self.cves_after)

    @property
    def current_cves(self) -> tuple[Finding, ...] | None:
        """What the image carries now: after its rebuild if rescanned, else before."""
        return self.cves_after if self.cves_after is not None else self.cves_before


@dataclass(frozen=True)
class RunResult:
    run_id: str
    started_at: datetime
    finished_at: datetime
    policy: str
    images: tuple[ImageResult, ...]
    plan_id: str | None = None
    tree_commit: str | None = None
    harbor: str | None = None
    registry: str | None = None
    #: Images of the inventory with no usable scan (never scanned, failed, running).
    unscanned: tuple[tuple[str, str], ...] = ()
    judged: int = 0
    dry_run: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: Untagged artifacts the policy selects (superseded digests awaiting Harbor's tag
    #: retention or GC), as (``repository@digest``, reason): counted, never rebuilt.
    untagged: tuple[tuple[str, str], ...] = ()
    #: What a person must act on (:mod:`careen.attention`); any item makes the run exit 1.
    attention: tuple[AttentionItem, ...] = ()
    #: The fleet in totals: judged, breaking, passing, unscanned, untagged, ignored.
    fleet: Mapping[str, int] = field(default_factory=dict)
    #: Why the reports show counts only (Harbor refused the details), when they do.
    details_note: str = ""

    @property
    def counts(self) -> dict[str, int]:
        tally = Counter(result.outcome.value for result in self.images)
        return {outcome.value: tally.get(outcome.value, 0) for outcome in Outcome}

    @property
    def failed(self) -> bool:
        return any(result.failing for result in self.images)

    @property
    def needs_attention(self) -> bool:
        """Exit 1: a failing image, or anything else a person must act on."""
        return self.failed or bool(self.attention)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RESULT_SCHEMA_VERSION,
            "run_id": self.run_id,
            "plan_id": self.plan_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "policy": self.policy,
            "tree_commit": self.tree_commit,
            "harbor": self.harbor,
            "registry": self.registry,
            "dry_run": self.dry_run,
            "judged": self.judged,
            "counts": self.counts,
            "images": [_image_dict(result) for result in self.images],
            "unscanned": [{"image": image, "reason": reason} for image, reason in self.unscanned],
            "untagged": [{"image": image, "reason": reason} for image, reason in self.untagged],
            "attention": attention_to_dicts(self.attention),
            "fleet": dict(self.fleet),
            "details_note": self.details_note,
        }


def _summary_dict(summary: ScanSummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {
        "status": summary.status.value,
        "counts": summary.counts.as_dict() if summary.counts is not None else None,
        "fixable": summary.fixable_total,
        "scanner": summary.scanner,
        "scanned_at": summary.scanned_at.isoformat() if summary.scanned_at else None,
    }


def _image_dict(result: ImageResult) -> dict[str, Any]:
    return {
        "image": result.image.short,
        "outcome": result.outcome.value,
        "reason": result.reason,
        "note": result.note,
        "selected": result.selected,
        "level": result.level,
        "parents": [p.short for p in result.parents],
        "before": _summary_dict(result.before),
        "before_digest": result.before_digest,
        "after": _summary_dict(result.after),
        "after_digest": result.after_digest,
        "duration": result.duration,
        "log_path": result.log_path,
        "log_tail": list(result.log_tail),
        "cves_before": _findings(result.cves_before),
        "cves_after": _findings(result.cves_after),
        "cve_changes": (None if (changes := result.cve_changes) is None
                        else changes.to_dict()),
    }


def _findings(findings: tuple[Finding, ...] | None) -> list[dict[str, Any]] | None:
    return None if findings is None else findings_to_dicts(findings)


def judge_rebuild(policy: Policy, image: ImageReference, before: ScanSummary | None,
                  after: ScanSummary | None, *, before_digest: str | None,
                  after_digest: str | None) -> tuple[Outcome, str]:
    """Compare an image's scan before and after its rebuild: the outcome and a note saying
    what a person should do about it."""
    if after is None or not after.succeeded or after.counts is None:
        state = "no result" if after is None else after.status.value
        return Outcome.RESCAN_MISSING, (
            f"pushed, but Harbor's rescan gave {state}; check it with 'careen scan "
            f"{image.short} --wait'")
    verdict = policy.evaluate(Image(image, after_digest, after))
    passes = verdict.kind is VerdictKind.PASSES
    if before is None or before.counts is None:
        return (Outcome.FIXED if passes else Outcome.NOT_HELPED,
                "passes the policy now" if passes
                else f"still breaks the policy ({verdict.reason}); no earlier scan to compare")
    lower = _lower(after.counts, before.counts)
    if passes:
        if lower:
            return Outcome.FIXED, f"passes the policy now ({_delta(before.counts, after.counts)})"
        return Outcome.REBUILT, "passes the policy, as before"
    if lower:
        return Outcome.IMPROVED, (f"fewer findings ({_delta(before.counts, after.counts)}) but "
                                  f"still breaks the policy: {verdict.reason}")
    return Outcome.NOT_HELPED, "rebuild did not help: " + _likely_cause(
        before, before_digest, after_digest)


def verdict_attention(results: Iterable[ImageResult]) -> tuple[AttentionItem, ...]:
    """The rebuilds a person must look at: not helped, improved but still breaking the
    policy, or pushed with no rescan result by the deadline."""
    items: list[AttentionItem] = []
    for result in results:
        image = result.image.short
        if result.outcome is Outcome.NOT_HELPED:
            items.append(AttentionItem(AttentionKind.NOT_HELPED, image, result.note))
        elif result.outcome is Outcome.IMPROVED:
            items.append(AttentionItem(AttentionKind.IMPROVED, image, result.note))
        elif result.outcome is Outcome.RESCAN_MISSING:
            state = "no result" if result.after is None else result.after.status.value
            items.append(AttentionItem(
                AttentionKind.UNSCANNED_AT_DEADLINE, image,
                f"pushed, but Harbor's rescan gave {state} by the deadline",
                next_step=f"check the scan in Harbor, or run 'careen scan {image} --wait'"))
    return tuple(items)


def _lower(after: SeverityCounts, before: SeverityCounts) -> bool:
    """Fewer findings where it matters: the worst severities first."""
    for (_, a), (_, b) in zip(after.items(), before.items(), strict=True):
        if a != b:
            return a < b
    return False


def _delta(before: SeverityCounts, after: SeverityCounts) -> str:
    parts = [f"{severity.label} {b} -> {a}"
             for (severity, b), (_, a) in zip(before.items(), after.items(), strict=True)
             if a != b]
    return ", ".join(parts) or "no change"


def _likely_cause(before: ScanSummary, before_digest: str | None,
                  after_digest: str | None) -> str:
    if before_digest is not None and before_digest == after_digest:
        return ("the rebuilt image is identical to the old one (same digest): the base image "
                "has not changed; bump the base version in the Dockerfile")
    if before.fixable_total == 0:
        return ("no fix available upstream (fixable count was 0): bump the base version or "
                "replace the package rather than wait for the next night")
    return ("the findings come with the base image or pinned packages; bump the base version "
            "in the Dockerfile")


def sort_results(results: Sequence[ImageResult]) -> tuple[ImageResult, ...]:
    """Plan order first (level, name), skipped images after."""
    return tuple(sorted(results, key=lambda r: (r.level is None, r.level or 0, r.image.short)))


#: The fleet's totals a report shows, in order.
FLEET_KEYS = ("judged", "breaking", "passing", "unscanned", "untagged", "ignored")


def fleet_totals(selection: Selection, judged: int) -> dict[str, int]:
    """The fleet in totals from one read of Harbor: judged, tagged images breaking the
    policy, passing, without a usable scan, untagged artifacts breaking it (superseded
    digests: counted, never rebuilt), ignored."""
    unscanned = (len(selection.not_scanned) + len(selection.scan_failed)
                 + len(selection.scan_in_progress) + selection.unlisted_unscanned_count)
    return {"judged": judged, "breaking": len(selection.selected),
            "passing": selection.passed_count, "unscanned": unscanned,
            "untagged": len(selection.untagged), "ignored": len(selection.ignored)}
