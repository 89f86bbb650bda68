"""A Markdown summary of a run, for a Jenkins build description or a merge-request comment.

The verdict and the counts; the fleet in totals; a table of every plan image with its outcome,
its counts before and after, its CVEs and the reason; then the needs-attention list, each
item with its next step.

Plain Markdown, readable as text too: no HTML and no entities (a policy reason reads
``low 1 > 0``, not ``low 1 &gt; 0``). Cell text comes from scanners and builders, so it is
made harmless without entities: control characters are stripped, each cell is one line,
``|`` is escaped (it would end the cell), and a backslash goes before the few characters that
would start markup — ``<`` opening a tag, an autolink or a Slack mention (``<!channel>``),
``&`` opening an entity, ``[`` ``]`` a link, a backtick a code span.
"""

from __future__ import annotations

import re

from careen.reports.interface import ReportContext
from careen.reports.wording import (
    ATTENTION_LABELS,
    GROUPS,
    OUTCOME_LABELS,
    attention_items,
    clean_text,
    compact_text,
    cve_counts_text,
    explanation,
    group_counts,
)
from careen.results import FLEET_KEYS, RunResult, sort_results

#: Rows of the image table; the rest is counted in one line.
DEFAULT_TABLE_LIMIT = 200
#: Needs-attention items listed; the rest is counted in one line.
DEFAULT_ATTENTION_LIMIT = 50

# "<" before a letter, "/", "!", "?" or "@" (a tag, a comment, an autolink, a mention) and
# "&" before what would make an entity; "[", "]", "`" and "|" always; a backslash before any
# of them is doubled first.
_MARKUP = re.compile(r"""\\(?=[<&\[\]`|])|<(?=[A-Za-z/!?@#])|&(?=#?\w+;)|[\[\]`|]""")


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
                    limit: int = DEFAULT_TABLE_LIMIT,
                    attention_limit: int = DEFAULT_ATTENTION_LIMIT) -> str:
    items = attention_items(result)
    verdict = "needs attention" if result.failed or items else "ok"
    lines = [
        f"### {escape_markdown(title)} `{_code(result.run_id)}`: {verdict}",
        "",
        f"**{summary_line(result)}** (policy `{_code(result.policy)}`"
        + (f", plan `{_code(result.plan_id)}`" if result.plan_id else "")
        + (", dry run" if result.dry_run else "") + ")",
    ]
    if result.fleet:
        lines += ["", "Fleet: " + ", ".join(f"{result.fleet[key]} {key}" for key in FLEET_KEYS
                                             if key in result.fleet) + "."]
    if result.unscanned:
        lines += ["", f"{len(result.unscanned)} image(s) of the fleet had no usable scan "
                  "(listed in the HTML and JSON reports)."]
    if result.details_note:
        lines += ["", escape_markdown(result.details_note) + "."]
    images = sort_results(result.images)
    if images:
        lines += ["", "| image | outcome | before | after | CVEs | why |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for image in images[:limit]:
            lines.append("| " + " | ".join(escape_markdown(cell) for cell in (
                image.image.short, OUTCOME_LABELS[image.outcome], compact_text(image.before),
                compact_text(image.after), cve_counts_text(image) or "-", explanation(image),
            )) + " |")
        if len(images) > limit:
            lines += ["", f"…and {len(images) - limit} more images (see the full report)."]
    if items:
        lines += ["", f"#### Needs attention ({len(items)})", ""]
        for item in items[:attention_limit]:
            kind = ATTENTION_LABELS.get(item.kind, item.kind.value)
            where = f" (`{_code(item.path)}`)" if item.path else ""
            lines.append(f"- **{escape_markdown(kind)}** `{_code(item.subject)}`: "
                         f"{escape_markdown(item.reason)}. Next: "
                         f"{escape_markdown(item.advice)}{where}")
        if len(items) > attention_limit:
            lines.append(f"- …and {len(items) - attention_limit} more (see the full report)")
    return "\n".join(lines) + "\n"


def escape_markdown(text: str) -> str:
    """One table cell / line of untrusted text: one line, no markup, no entities."""
    flat = " ".join(clean_text(text).split())
    return _MARKUP.sub(lambda m: "\\" + m.group(0), flat)


def _code(text: str) -> str:
    # Inside a code span nothing is interpreted, so only the backtick needs care.
    return " ".join(clean_text(text).split()).replace("`", "'")
