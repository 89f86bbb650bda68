"""JUnit XML for Jenkins' ``junit`` step: one test case per image.

* ``classname`` is the Harbor project and ``name`` the repository below it with the tag
  (``library`` / ``grafana:4.1.2``), so Jenkins groups the images by project;
* a ``<failure>`` when the outcome is one of :data:`~careen.results.FAILING_OUTCOMES` (the
  build or push failed, the image still breaks the policy after the rescan, the rescan never
  came): its ``message`` holds the counts before and after, the CVEs that remain (the first
  few; all of them in the failure's text) and the reason;
* ``<skipped>`` for an image that was not rebuilt (the reason as message) or only planned;
* the tail of the build log in ``<system-out>``.

The element and attribute set is the one Jenkins' JUnit plugin reads (``testsuites`` /
``testsuite`` / ``testcase`` / ``failure`` / ``skipped`` / ``system-out`` / ``properties``).
Scanner and builder text is untrusted: ElementTree escapes markup, and characters XML 1.0
cannot hold (terminal escapes in build logs) are removed first.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from careen.details import Finding, sort_findings
from careen.reports.interface import ReportContext
from careen.reports.wording import (
    OUTCOME_LABELS,
    before_after_text,
    clean_text,
    explanation,
    finding_text,
    findings_line,
    log_tail,
)
from careen.results import ImageResult, Outcome, RunResult, sort_results


class JunitReport:
    name = "junit"
    suffix = ".xml"

    def render(self, result: RunResult, context: ReportContext) -> str:
        return render_junit(result, log_tail_lines=context.log_tail_lines)


def render_junit(result: RunResult, *, log_tail_lines: int = 40) -> str:
    images = sort_results(result.images)
    failures = sum(1 for image in images if image.failing)
    skipped = sum(1 for image in images if _is_skipped(image))
    elapsed = max(0.0, (result.finished_at - result.started_at).total_seconds())
    totals = {"tests": str(len(images)), "failures": str(failures), "errors": "0",
              "skipped": str(skipped), "time": _seconds(elapsed)}
    suites = ET.Element("testsuites", {"name": "careen", **totals})
    suite = ET.SubElement(suites, "testsuite", {
        "name": _attr(f"careen {result.run_id}"), **totals,
        "timestamp": result.started_at.replace(microsecond=0).isoformat(),
    })
    properties = ET.SubElement(suite, "properties")
    for key, value in (("run_id", result.run_id), ("plan_id", result.plan_id),
                       ("policy", result.policy), ("tree_commit", result.tree_commit),
                       ("harbor", result.harbor), ("registry", result.registry),
                       ("dry_run", str(result.dry_run).lower())):
        if value is not None:
            ET.SubElement(properties, "property", {"name": key, "value": _attr(value)})
    for image in images:
        suite.append(_testcase(image, log_tail_lines))
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _testcase(image: ImageResult, log_tail_lines: int) -> ET.Element:
    reference = image.image
    tag = reference.tag if reference.tag is not None else reference.digest or ""
    case = ET.Element("testcase", {
        "classname": _attr(reference.project or reference.repository),
        "name": _attr(f"{reference.name_in_project}:{tag}"),
        "time": _seconds(image.duration or 0.0),
    })
    label = OUTCOME_LABELS[image.outcome]
    why = clean_text(explanation(image))
    if image.failing:
        left = _remaining(image)
        named = f"; remaining CVEs: {findings_line(left)}" if left else ""
        failure = ET.SubElement(case, "failure", {
            "type": image.outcome.value,
            "message": _attr(f"{label}: {before_after_text(image)}{named}; {why}"),
        })
        lines = [f"{reference.short}: {label}", f"reason: {clean_text(image.reason)}"]
        if image.note:
            lines.append(f"note: {clean_text(image.note)}")
        lines.append(before_after_text(image))
        if left:
            lines.append(f"remaining CVEs ({len(left)}):")
            lines += [f"  {finding_text(f)} [{f.severity.label}]" for f in left]
        if image.log_path:
            lines.append(f"build log: {clean_text(image.log_path)}")
        failure.text = "\n".join(lines)
    elif _is_skipped(image):
        message = why if image.outcome is Outcome.SKIPPED else f"{label}: {why}"
        ET.SubElement(case, "skipped", {"message": _attr(message)})
    tail = log_tail(image, log_tail_lines)
    if tail:
        ET.SubElement(case, "system-out").text = "\n".join(tail)
    return case


def _remaining(image: ImageResult) -> tuple[Finding, ...]:
    """What the image still carries: remaining and new after a rescan, else its list."""
    changes = image.cve_changes
    if changes is not None:
        return sort_findings((*changes.remaining, *changes.new))
    return image.current_cves or ()


def _is_skipped(image: ImageResult) -> bool:
    return image.outcome in (Outcome.SKIPPED, Outcome.PLANNED)


def _attr(text: str) -> str:
    # Attribute values are one line: ElementTree would keep a newline as "&#10;", which
    # Jenkins shows verbatim in the test's title.
    return " ".join(clean_text(text).split())


def _seconds(value: float) -> str:
    return f"{value:.3f}"
