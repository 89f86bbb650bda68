"""The HTML report: one self-contained file to open from Jenkins' artifacts or a mail.

No network (no font, image, stylesheet or script is fetched), no JavaScript (``<details>``
folds the long parts), inline CSS. Every piece of text goes through :func:`html.escape`:
image names, reasons, CVE text and build logs come from scanners and builders and are
untrusted; a CVE's link is kept only when it is an ``http(s)`` URL.

Sections, in the order a person acts on them:

1. the verdict and the counts (badges coloured by meaning: "0 still vulnerable" is good news);
2. **Needs attention**: every item of the exit-1 list with its next step;
3. the rebuilt images with their severity bars before and after, and per image the CVEs
   fixed, remaining and new (collapsible);
4. the images of the plan that were not rebuilt, with their real scans and CVEs;
5. the build order; a failed build's log tail (only for builds that failed);
6. the fleet in totals (judged, breaking, passing, unscanned, untagged) and its trend.

Long image names and reasons wrap inside fixed-width columns, so nothing runs off a 1280 px
screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from urllib.parse import urlsplit

from careen.attention import AttentionItem
from careen.details import Finding
from careen.plan import Plan
from careen.reference import ImageReference
from careen.reports.interface import ReportContext
from careen.reports.svg import DRAWN_SEVERITIES, SEVERITY_COLOURS, severity_bar, trend_chart
from careen.reports.wording import (
    ATTENTION_LABELS,
    GROUPS,
    OUTCOME_LABELS,
    attention_items,
    clean_text,
    compact_text,
    cve_counts_text,
    explanation_parts,
    group_counts,
    log_tail,
)
from careen.results import FLEET_KEYS, ImageResult, Outcome, RunResult, sort_results
from careen.scan import SeverityCounts

_OUTCOME_CLASS: dict[Outcome, str] = {
    Outcome.FIXED: "good", Outcome.REBUILT: "good", Outcome.PLANNED: "neutral",
    Outcome.SKIPPED: "neutral", Outcome.IMPROVED: "warn", Outcome.NOT_HELPED: "bad",
    Outcome.RESCAN_MISSING: "warn", Outcome.FAILED: "bad",
}
#: Groups whose count is bad news when not zero (and good news at zero).
_BAD_WHEN_ANY = frozenset({"still vulnerable", "failed", "unverified"})
#: CVE rows shown per list before "and N more".
CVE_ROWS = 200
#: Needs-attention items listed before the rest is folded.
ATTENTION_SHOWN = 50

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111827;max-width:78rem}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin-top:2rem;
border-bottom:1px solid #e5e7eb;padding-bottom:.2rem}
.meta{color:#4b5563;font-size:.9rem;overflow-wrap:anywhere}
.meta code{background:#f3f4f6;padding:0 .2rem}
.chips{display:flex;gap:.5rem;flex-wrap:wrap;margin:1rem 0}
.chip{border-radius:.4rem;padding:.3rem .7rem;font-weight:600;border:1px solid}
.chip.good{background:#dcfce7;border-color:#86efac}.chip.bad{background:#fee2e2;
border-color:#fca5a5}.chip.warn{background:#fef3c7;border-color:#fcd34d}
.chip.neutral{background:#f3f4f6;border-color:#d1d5db}
.good{color:#166534}.bad{color:#991b1b}.warn{color:#92400e}.neutral{color:#374151}
table{border-collapse:collapse;width:100%;font-size:.9rem;table-layout:fixed}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e5e7eb;vertical-align:top;
overflow-wrap:anywhere;word-break:break-word}
td code{overflow-wrap:anywhere;word-break:break-all}
col.image{width:24%}col.outcome{width:11%}col.bar{width:17%}col.why{width:31%}
col.kind{width:14%}col.subject{width:24%}col.reason{width:36%}col.next{width:26%}
.counts{color:#4b5563;font-size:.8rem;display:block}
svg.bar{width:100%;max-width:240px;height:14px}
ul.tree,ul.tree ul{list-style:none;padding-left:1.4rem;margin:0}
ul.tree{padding-left:0}ul.tree li{margin:.15rem 0;overflow-wrap:anywhere}
ul.tree ul{border-left:1px dashed #d1d5db}
.level{color:#6b7280;font-size:.8rem}
pre{background:#111827;color:#e5e7eb;padding:.6rem;overflow-x:auto;font-size:.8rem;
white-space:pre-wrap;word-break:break-all}
details{margin:.4rem 0}summary{cursor:pointer;font-weight:600}
table.cves{font-size:.8rem;margin:.2rem 0 .4rem;table-layout:auto;width:auto;
min-width:60%}table.cves th{background:#f9fafb}
table.cves td,table.cves th{word-break:normal;overflow-wrap:anywhere;padding:.2rem .6rem}
tr.cve-row td{border-bottom:1px solid #e5e7eb;padding-top:0}
tr:has(+ tr.cve-row) td{border-bottom:none}
.sev{font-weight:600}.sev-critical{color:#7f1d1d}.sev-high{color:#dc2626}
.sev-medium{color:#b45309}.sev-low{color:#854d0e}
.next{font-weight:600}
.legend span{display:inline-block;margin-right:.8rem;font-size:.8rem}
.legend i{display:inline-block;width:.7rem;height:.7rem;margin-right:.25rem}
dl.fleet{display:flex;gap:1.5rem;flex-wrap:wrap}dl.fleet div{min-width:6rem}
dl.fleet dt{color:#4b5563;font-size:.8rem}dl.fleet dd{margin:0;font-size:1.3rem;
font-weight:600}
"""


class HtmlReport:
    name = "html"
    suffix = ".html"

    def render(self, result: RunResult, context: ReportContext) -> str:
        return render_html(result, context)


def render_html(result: RunResult, context: ReportContext | None = None) -> str:
    context = context or ReportContext()
    images = sort_results(result.images)
    items = attention_items(result)
    rebuilt = [i for i in images if i.outcome not in (Outcome.SKIPPED, Outcome.PLANNED)]
    planned = [i for i in images if i.outcome is Outcome.PLANNED]
    others = [i for i in images if i.outcome is Outcome.SKIPPED]
    scale = max((summary.counts.total for image in images
                 for summary in (image.before, image.after)
                 if summary is not None and summary.counts is not None), default=1)
    sections = [
        _header(result, context.title, items),
        _attention_section(items),
        _images_section("Rebuilt images", rebuilt, scale, result.details_note,
                        empty="No image was rebuilt.") if rebuilt or not planned else "",
        _images_section("Would be rebuilt (dry run)", planned, scale, "", empty="")
        if planned else "",
        _images_section("Not rebuilt", others, scale, "", empty="") if others else "",
        _tree_section(images, context.plan),
        _failures_section(images, context.log_tail_lines),
        _fleet_section(result, context),
        _unscanned_section(result.unscanned),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(context.title)} {_e(result.run_id)}</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(s for s in sections if s) + "\n</body>\n</html>\n")


def _e(text: str) -> str:
    return escape(clean_text(text), quote=True)


def _header(result: RunResult, title: str, items: Sequence[AttentionItem]) -> str:
    counts = group_counts(result)
    chips = [f'<span class="chip {_group_class(name, counts[name])}">{counts[name]} '
             f"{_e(name)}</span>"
             for name, _ in GROUPS if counts[name] or name in ("fixed", "still vulnerable",
                                                                "failed")]
    chips.insert(0, f'<span class="chip {"bad" if items else "good"}">{len(items)} '
                 "need attention</span>")
    facts = [("run", result.run_id), ("plan", result.plan_id), ("policy", result.policy),
             ("tree commit", result.tree_commit), ("Harbor", result.harbor),
             ("registry", result.registry),
             ("started", result.started_at.isoformat(timespec="seconds")),
             ("finished", result.finished_at.isoformat(timespec="seconds"))]
    meta = " · ".join(f"{_e(name)} <code>{_e(value)}</code>" for name, value in facts
                      if value is not None)
    verdict = ('<span class="bad">needs attention</span>' if result.failed or items
               else '<span class="good">ok</span>')
    dry = " (dry run)" if result.dry_run else ""
    return (f"<header><h1>{_e(title)}: {verdict}{dry}</h1>"
            f'<p class="meta">{meta}</p><div class="chips">{"".join(chips)}</div></header>')


def _group_class(name: str, count: int) -> str:
    if name in _BAD_WHEN_ANY:
        return ("warn" if name == "unverified" else "bad") if count else "good"
    return {"fixed": "good", "rebuilt": "good"}.get(name, "neutral")


def _attention_section(items: Sequence[AttentionItem]) -> str:
    if not items:
        return ('<section id="attention"><h2>Needs attention</h2>'
                '<p class="good">Nothing: every image that broke the policy passes it '
                "now.</p></section>")

    def row(item: AttentionItem) -> str:
        where = (f'<span class="counts">open <code>{_e(item.path)}</code></span>'
                 if item.path else "")
        return (f'<tr class="attention" data-kind="{_e(item.kind.value)}">'
                f'<td>{_e(ATTENTION_LABELS.get(item.kind, item.kind.value))}</td>'
                f"<td><code>{_e(item.subject)}</code></td><td>{_e(item.reason)}</td>"
                f'<td class="next">{_e(item.advice)}{where}</td></tr>')

    head = ('<table><colgroup><col class="kind"><col class="subject"><col class="reason">'
            '<col class="next"></colgroup><thead><tr><th>what</th><th>image</th><th>why</th>'
            "<th>next step</th></tr></thead><tbody>")
    shown = "".join(row(item) for item in items[:ATTENTION_SHOWN])
    rest = items[ATTENTION_SHOWN:]
    more = ""
    if rest:
        more = (f"<details><summary>{len(rest)} more</summary>{head}"
                + "".join(row(item) for item in rest) + "</tbody></table></details>")
    return (f'<section id="attention"><h2>Needs attention ({len(items)})</h2>{head}{shown}'
            f"</tbody></table>{more}</section>")


def _legend() -> str:
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{SEVERITY_COLOURS[s]}"></i>{_e(s.label)}</span>'
        for s in DRAWN_SEVERITIES) + "</p>"


def _images_section(title: str, images: Sequence[ImageResult], scale: int, note: str, *,
                    empty: str) -> str:
    if not images:
        return f"<section><h2>{_e(title)}</h2><p>{_e(empty)}</p></section>"
    rows = []
    for image in images:
        label = OUTCOME_LABELS[image.outcome]
        why = "<br>".join(_e(part) for part in explanation_parts(image))
        rows.append(
            f'<tr id="{_anchor(image.image)}"><td><code>{_e(image.image.short)}</code></td>'
            f'<td class="{_OUTCOME_CLASS[image.outcome]}">{_e(label)}</td>'
            f"<td>{severity_bar(_counts(image, 'before'), scale=scale, label='before')}"
            f'<span class="counts">{_e(compact_text(image.before))}</span></td>'
            f"<td>{severity_bar(_counts(image, 'after'), scale=scale, label='after')}"
            f'<span class="counts">{_e(compact_text(image.after))}</span></td>'
            f'<td class="why">{why}</td></tr>')
        cves = _cve_details(image)
        if cves:  # below the image, the page's full width: the CVE table has six columns
            rows.append(f'<tr class="cve-row"><td colspan="5">{cves}</td></tr>')
    notice = f'<p class="meta warn">{_e(note)}</p>' if note else ""
    return (f"<section><h2>{_e(title)} ({len(images)})</h2>" + notice + _legend()
            + '<table><colgroup><col class="image"><col class="outcome"><col class="bar">'
            '<col class="bar"><col class="why"></colgroup>'
            "<thead><tr><th>image</th><th>outcome</th><th>before</th><th>after</th>"
            "<th>why</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>")


def _cve_details(image: ImageResult) -> str:
    """The image's CVEs, folded: fixed / remaining / new when both lists are known, else
    the list it has (before for an image not rebuilt)."""
    changes = image.cve_changes
    parts: list[str] = []
    if changes is not None:
        for name, found in (("remaining", changes.remaining), ("new", changes.new),
                            ("fixed", changes.fixed)):
            if found:
                parts.append(_cve_table(name, found))
    else:
        current = image.current_cves
        if current:
            parts.append(_cve_table("found" if image.cves_after is None else "after", current))
    if not parts:
        return ""
    # Open for an image still breaking the policy: what remains is what a person acts on.
    state = " open" if image.outcome in (Outcome.NOT_HELPED, Outcome.IMPROVED) else ""
    return (f'<details class="cves"{state}><summary>CVEs: {_e(cve_counts_text(image))}'
            "</summary>"
            + "".join(parts) + "</details>")


def _cve_table(name: str, findings: Sequence[Finding]) -> str:
    rows = "".join(
        f'<tr class="cve"><td>{_cve_id(f)}</td>'
        f'<td class="sev sev-{f.severity.label}">{_e(f.severity.label)}</td>'
        f"<td>{'' if f.cvss is None else f'{f.cvss:.1f}'}</td><td>{_e(f.package)}</td>"
        f"<td>{_e(f.version)}</td><td>{_e(f.fix_version or 'no fix')}</td></tr>"
        for f in findings[:CVE_ROWS])
    more = (f'<tr><td colspan="6">and {len(findings) - CVE_ROWS} more (see the JSON '
            "report)</td></tr>" if len(findings) > CVE_ROWS else "")
    return (f'<p class="counts">{_e(name)} ({len(findings)})</p>'
            f'<table class="cves" data-list="{_e(name)}"><thead><tr><th>CVE</th>'
            "<th>severity</th><th>CVSS</th><th>package</th><th>installed</th><th>fixed in</th>"
            f"</tr></thead><tbody>{rows}{more}</tbody></table>")


def _cve_id(finding: Finding) -> str:
    link = next((u for u in finding.links if urlsplit(u).scheme in ("http", "https")), None)
    title = f' title="{_e(finding.description[:300])}"' if finding.description else ""
    if link is None:
        return f"<span{title}>{_e(finding.id)}</span>"
    return f'<a href="{_e(link)}" rel="noreferrer noopener"{title}>{_e(finding.id)}</a>'


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
    return (f'<section><details><summary>Build order ({len(nodes)})</summary>'
            f'<ul class="tree">{tree}</ul></details></section>')


def _failures_section(images: Sequence[ImageResult], lines: int) -> str:
    """The log tail of each build that failed; nothing when none did (a rebuild that did
    not help is explained by its CVEs, not by its build log)."""
    failing = [image for image in images if image.outcome is Outcome.FAILED]
    if not failing:
        return ""
    blocks = []
    for image in failing:
        tail = log_tail(image, lines)
        log = f"<pre>{_e(chr(10).join(tail))}</pre>" if tail else "<p>No build log.</p>"
        where = (f'<p class="meta">full log: <code>{_e(image.log_path)}</code></p>'
                 if image.log_path else "")
        blocks.append(
            f"<details open><summary><code>{_e(image.image.short)}</code>: "
            f"{_e(OUTCOME_LABELS[image.outcome])}</summary>"
            f"<p>{_e(image.note)}</p>{where}{log}</details>")
    return "<section><h2>Failed builds</h2>" + "".join(blocks) + "</section>"


def _fleet_section(result: RunResult, context: ReportContext) -> str:
    totals = ""
    if result.fleet:
        cells = "".join(f"<div><dt>{_e(key)}</dt><dd>{int(result.fleet[key])}</dd></div>"
                        for key in FLEET_KEYS if key in result.fleet)
        totals = f'<dl class="fleet">{cells}</dl>'
    elif result.judged:
        totals = (f'<dl class="fleet"><div><dt>judged</dt><dd>{result.judged}</dd></div>'
                  f"<div><dt>unscanned</dt><dd>{len(result.unscanned)}</dd></div></dl>")
    note = (f"<p class=\"meta\">{len(context.trend)} run(s), findings summed over the fleet "
            "before each run rebuilt anything.</p>")
    return ("<section><h2>Fleet</h2>" + totals + note + trend_chart(context.trend)
            + "</section>")


def _unscanned_section(unscanned: Sequence[tuple[str, str]]) -> str:
    pairs = list(unscanned)
    if not pairs:
        return ""
    rows = "".join(f"<tr><td><code>{_e(image)}</code></td><td>{_e(reason)}</td></tr>"
                   for image, reason in pairs)
    return ("<section><details><summary>" + f"{len(pairs)} image(s) without a usable scan"
            + "</summary><table><tbody>" + rows + "</tbody></table></details></section>")
