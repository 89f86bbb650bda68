"""A Markdown summary of a run, short enough for a chat message, a PR comment or a ticket.

Counts first (fixed, still vulnerable, failed, skipped...), then a table of the images that
need a person (everything not fixed and not merely rebuilt), at most ``limit`` rows.

Cell text comes from scanners and builders: ``|`` would break the table and ``<`` ``>`` ``&``
are markup both for GitHub (HTML) and for Slack (``<!channel>`` pings everyone), so they are
written as entities, which both render as the plain character.
"""

from __future__ import annotations

from careen.reports.interface import ReportContext
from careen.reports.wording import (
    GROUPS,
    OUTCOME_LABELS,
    clean_text,
    explanation,
    group_counts,
    summary_text,
)
from careen.results import Outcome, RunResult, sort_results

#: Rows of the "needs attention" table; the rest is counted in one line.
DEFAULT_TABLE_LIMIT = 20
#: Outcomes listed in the table (the ones a person acts on).
ATTENTION = frozenset({Outcome.IMPROVED, Outcome.NOT_HELPED, Outcome.FAILED,
                       Outcome.RESCAN_MISSING, Outcome.SKIPPED})


class MarkdownReport:
    name = "markdown"
    suffix = ".md"

    def render(self, result: RunResult, context: ReportContext) -> str:
        return render_markdown(result, title=context.title)


def summary_line(result: RunResult) -> str:
    """``3 fixed, 1 still vulnerable, 1 failed, 2 skipped`` (non-zero groups only)."""
    counts = group_counts(result)
    parts = [f"{counts[name]} {name}" for name, _ in GROUPS if counts[name]]
    return ", ".join(parts) if parts else "nothing to rebuild"


def render_markdown(result: RunResult, *, title: str = "Careen run",
                    limit: int = DEFAULT_TABLE_LIMIT) -> str:
    verdict = "needs attention" if result.failed else "ok"
    lines = [
        f"### {escape_markdown(title)} `{_code(result.run_id)}`: {verdict}",
        "",
        f"**{summary_line(result)}** (policy `{_code(result.policy)}`"
        + (f", plan `{_code(result.plan_id)}`" if result.plan_id else "")
        + (", dry run" if result.dry_run else "") + ")",
    ]
    if result.unscanned:
        lines.append(f"{len(result.unscanned)} image(s) had no usable scan.")
    attention = [image for image in sort_results(result.images) if image.outcome in ATTENTION]
    if attention:
        lines += ["", "| image | outcome | before | after | why |",
                  "| --- | --- | --- | --- | --- |"]
        for image in attention[:limit]:
            lines.append("| " + " | ".join(escape_markdown(cell) for cell in (
                image.image.short, OUTCOME_LABELS[image.outcome], summary_text(image.before),
                summary_text(image.after), explanation(image),
            )) + " |")
        if len(attention) > limit:
            lines.append(f"\n…and {len(attention) - limit} more (see the full report).")
    return "\n".join(lines) + "\n"


def escape_markdown(text: str) -> str:
    """One table cell / line of untrusted text: one line, no table or HTML markup."""
    flat = " ".join(clean_text(text).split())
    return (flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("`", "'"))


def _code(text: str) -> str:
    # Inside a code span entities are not decoded, so only the backtick needs care.
    return " ".join(clean_text(text).split()).replace("`", "'")
