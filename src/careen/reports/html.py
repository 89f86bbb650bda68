"""The HTML report: one self-contained file to open from Jenkins' artifacts or a mail.

No network (no font, image, stylesheet or script is fetched), no JavaScript (``<details>``
folds the long parts), inline CSS. Every piece of text goes through :func:`html.escape`:
image names, reasons, CVE text and build logs come from scanners and builders and are
untrusted.

Sections: the counts; every image with its severity bars before and after the rebuild; the
build order as an indented tree (each image under the plan images it is built on); failures
with the tail of their build log; the fleet's trend over past runs as an SVG chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from careen.plan import Plan
from careen.reference import ImageReference
from careen.reports.interface import ReportContext
from careen.reports.svg import DRAWN_SEVERITIES, SEVERITY_COLOURS, severity_bar, trend_chart
from careen.reports.wording import (
    GROUPS,
    OUTCOME_LABELS,
    clean_text,
    group_counts,
    log_tail,
    summary_text,
)
from careen.results import ImageResult, Outcome, RunResult, sort_results
from careen.scan import SeverityCounts

_OUTCOME_CLASS: dict[Outcome, str] = {
    Outcome.FIXED: "good", Outcome.REBUILT: "good", Outcome.PLANNED: "neutral",
    Outcome.SKIPPED: "neutral", Outcome.IMPROVED: "warn", Outcome.NOT_HELPED: "bad",
    Outcome.RESCAN_MISSING: "warn", Outcome.FAILED: "bad",
}

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111827;max-width:80rem}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin-top:2rem;
border-bottom:1px solid #e5e7eb;padding-bottom:.2rem}
.meta{color:#4b5563;font-size:.9rem}.meta code{background:#f3f4f6;padding:0 .2rem}
.chips{display:flex;gap:.5rem;flex-wrap:wrap;margin:1rem 0}
.chip{border-radius:.4rem;padding:.3rem .7rem;background:#f3f4f6;font-weight:600}
.good{color:#166534}.bad{color:#991b1b}.warn{color:#92400e}.neutral{color:#374151}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e5e7eb;vertical-align:top}
td.why{max-width:28rem}.counts{color:#4b5563;font-size:.8rem;display:block}
ul.tree,ul.tree ul{list-style:none;padding-left:1.4rem;margin:0}
ul.tree{padding-left:0}ul.tree li{margin:.15rem 0}
ul.tree ul{border-left:1px dashed #d1d5db}
.level{color:#6b7280;font-size:.8rem}
pre{background:#111827;color:#e5e7eb;padding:.6rem;overflow-x:auto;font-size:.8rem;
white-space:pre-wrap;word-break:break-all}
details{margin:.6rem 0}summary{cursor:pointer;font-weight:600}
.legend span{display:inline-block;margin-right:.8rem;font-size:.8rem}
.legend i{display:inline-block;width:.7rem;height:.7rem;margin-right:.25rem}
"""


class HtmlReport:
    name = "html"
    suffix = ".html"

    def render(self, result: RunResult, context: ReportContext) -> str:
        return render_html(result, context)


def render_html(result: RunResult, context: ReportContext | None = None) -> str:
    context = context or ReportContext()
    images = sort_results(result.images)
    sections = [
        _header(result, context.title),
        _images_section(images),
        _tree_section(images, context.plan),
        _failures_section(images, context.log_tail_lines),
        _trend_section(context),
        _unscanned_section(result.unscanned),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_e(context.title)} {_e(result.run_id)}</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(sections)
            + "\n</body>\n</html>\n")


def _e(text: str) -> str:
    return escape(clean_text(text), quote=True)


def _header(result: RunResult, title: str) -> str:
    counts = group_counts(result)
    chips = "".join(
        f'<span class="chip {_group_class(name)}">{counts[name]} {_e(name)}</span>'
        for name, _ in GROUPS if counts[name] or name in ("fixed", "still vulnerable", "failed"))
    facts = [("run", result.run_id), ("plan", result.plan_id), ("policy", result.policy),
             ("tree commit", result.tree_commit), ("Harbor", result.harbor),
             ("registry", result.registry),
             ("started", result.started_at.isoformat(timespec="seconds")),
             ("finished", result.finished_at.isoformat(timespec="seconds"))]
    meta = " · ".join(f"{_e(name)} <code>{_e(value)}</code>" for name, value in facts
                      if value is not None)
    verdict = ('<span class="bad">needs attention</span>' if result.failed
               else '<span class="good">ok</span>')
    dry = " (dry run)" if result.dry_run else ""
    return (f"<header><h1>{_e(title)}: {verdict}{dry}</h1>"
            f'<p class="meta">{meta}</p><div class="chips">{chips}</div></header>')


def _group_class(name: str) -> str:
    return {"fixed": "good", "rebuilt": "good", "still vulnerable": "bad", "failed": "bad",
            "unverified": "warn"}.get(name, "neutral")


def _legend() -> str:
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{SEVERITY_COLOURS[s]}"></i>{_e(s.label)}</span>'
        for s in DRAWN_SEVERITIES) + "</p>"


def _images_section(images: Sequence[ImageResult]) -> str:
    if not images:
        return "<section><h2>Images</h2><p>No image was in the plan.</p></section>"
    scale = max((summary.counts.total for image in images
                 for summary in (image.before, image.after)
                 if summary is not None and summary.counts is not None), default=1)
    rows = []
    for image in images:
        label = OUTCOME_LABELS[image.outcome]
        why = "<br>".join(_e(part) for part in (image.reason, image.note) if part)
        rows.append(
            f'<tr id="{_anchor(image.image)}"><td><code>{_e(image.image.short)}</code></td>'
            f'<td class="{_OUTCOME_CLASS[image.outcome]}">{_e(label)}</td>'
            f"<td>{severity_bar(_counts(image, 'before'), scale=scale, label='before')}"
            f'<span class="counts">{_e(summary_text(image.before))}</span></td>'
            f"<td>{severity_bar(_counts(image, 'after'), scale=scale, label='after')}"
            f'<span class="counts">{_e(summary_text(image.after))}</span></td>'
            f'<td class="why">{why}</td></tr>')
    return ("<section><h2>Images</h2>" + _legend()
            + "<table><thead><tr><th>image</th><th>outcome</th><th>before</th><th>after</th>"
            "<th>why</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>")


def _counts(image: ImageResult, which: str) -> SeverityCounts | None:
    summary = image.before if which == "before" else image.after
    return None if summary is None else summary.counts


def _anchor(reference: ImageReference) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in reference.short)
    return f"image-{safe}"


def _tree_section(images: Sequence[ImageResult], plan: Plan | None) -> str:
    """Each image under the plan images it is built on; an image with two parents in the
    plan shows under both. Images without a level (skipped before planning) are left out."""
    outcome = {image.image.short: image.outcome for image in images}
    if plan is not None:
        nodes = [(s.image.short, s.level, tuple(p.short for p in s.parents)) for s in plan.steps]
    else:
        nodes = [(i.image.short, i.level, tuple(p.short for p in i.parents))
                 for i in images if i.level is not None]
    if not nodes:
        return "<section><h2>Build order</h2><p>Nothing to build.</p></section>"
    known = {name for name, _, _ in nodes}
    level_of = {name: level for name, level, _ in nodes}
    children: dict[str, list[str]] = {}
    roots: list[str] = []
    for name, _, parents in sorted(nodes, key=lambda n: (n[1] or 0, n[0])):
        in_plan = [p for p in parents if p in known]
        if not in_plan:
            roots.append(name)
        for parent in in_plan:
            children.setdefault(parent, []).append(name)

    def item(name: str, trail: frozenset[str]) -> str:
        state = outcome.get(name)
        badge = (f' <span class="{_OUTCOME_CLASS[state]}">{_e(OUTCOME_LABELS[state])}</span>'
                 if state is not None else "")
        text = (f'<code>{_e(name)}</code> <span class="level">level {level_of[name]}</span>'
                + badge)
        below = [c for c in children.get(name, []) if c not in trail]  # a cycle never loops
        if below:
            inner = "".join(item(c, trail | {c}) for c in below)
            text += f"<ul>{inner}</ul>"
        return f"<li>{text}</li>"

    tree = "".join(item(name, frozenset({name})) for name in roots)
    return f'<section><h2>Build order</h2><ul class="tree">{tree}</ul></section>'


def _failures_section(images: Sequence[ImageResult], lines: int) -> str:
    failing = [image for image in images if image.failing]
    if not failing:
        return "<section><h2>Failures</h2><p>None.</p></section>"
    blocks = []
    for image in failing:
        tail = log_tail(image, lines)
        log = f"<pre>{_e(chr(10).join(tail))}</pre>" if tail else "<p>No build log.</p>"
        where = (f'<p class="meta">full log: <code>{_e(image.log_path)}</code></p>'
                 if image.log_path else "")
        blocks.append(
            f"<details open><summary><code>{_e(image.image.short)}</code>: "
            f"{_e(OUTCOME_LABELS[image.outcome])}</summary>"
            f"<p>{_e(image.reason)}</p><p>{_e(image.note)}</p>"
            f"<p class=\"meta\">before: {_e(summary_text(image.before))}; after: "
            f"{_e(summary_text(image.after))}</p>{where}{log}</details>")
    return "<section><h2>Failures</h2>" + "".join(blocks) + "</section>"


def _trend_section(context: ReportContext) -> str:
    note = (f"<p class=\"meta\">{len(context.trend)} run(s), findings summed over the fleet "
            "before each run rebuilt anything.</p>")
    return ("<section><h2>Fleet trend</h2>" + note + trend_chart(context.trend)
            + "</section>")


def _unscanned_section(unscanned: Sequence[tuple[str, str]]) -> str:
    pairs = list(unscanned)
    if not pairs:
        return ""
    rows = "".join(f"<tr><td><code>{_e(image)}</code></td><td>{_e(reason)}</td></tr>"
                   for image, reason in pairs)
    return ("<section><details><summary>" + f"{len(pairs)} image(s) without a usable scan"
            + "</summary><table><tbody>" + rows + "</tbody></table></details></section>")
