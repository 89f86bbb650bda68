from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from careen.plan import Plan, PlanStep, StepReason
from careen.reports import ReportContext
from careen.reports.html import HtmlReport, render_html
from careen.results import Outcome, RunResult
from careen.scan import Severity
from tests.reports.sample import STARTED, ref, sample_result, sample_trend

VOID = {"meta", "br", "img", "hr", "input", "link", "area", "base", "col", "embed", "source",
        "track", "wbr"}


class TreeChecker(HTMLParser):
    """Checks that every tag is closed in order; records elements and their ancestors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None], tuple[str, ...]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), tuple(self.stack)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), tuple(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def page() -> str:
    return HtmlReport().render(sample_result(), ReportContext(trend=sample_trend()))


def parse(text: str) -> TreeChecker:
    checker = TreeChecker()
    checker.feed(text)
    checker.close()
    return checker


def test_well_formed(page: str) -> None:
    checker = parse(page)
    assert checker.errors == []
    assert checker.stack == []
    assert page.startswith("<!DOCTYPE html>")


def test_no_external_references_and_no_script(page: str) -> None:
    """Nothing is fetched: no src, no stylesheet, no url(); the only hrefs are a CVE's
    advisory links, plain http(s) anchors a person may click (a javascript: link from the
    scanner is dropped)."""
    assert not re.search(r"""src\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    anchors = [attrs for tag, attrs, _ in parse(page).elements if "href" in attrs]
    assert anchors and all(tag == "a" for tag, attrs, _ in parse(page).elements
                           if "href" in attrs)
    assert all((a["href"] or "").startswith("https://") for a in anchors)
    assert all(a.get("rel") == "noreferrer noopener" for a in anchors)
    assert "javascript:" not in page
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, re.I)
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    tags = {tag for tag, _, _ in parse(page).elements}
    assert "script" not in tags and "iframe" not in tags and "img" not in tags


def test_planted_script_comes_out_escaped_as_text(page: str) -> None:
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    text = "".join(parse(page).text)
    # In the note, the failed build's log tail, the skip reason, the unscanned reason, the
    # unreadable list line.
    assert text.count("<script>alert('x')</script>") >= 5
    assert "\x1b" not in page and "\x07" not in page and "\x00" not in page
    tags = {tag for tag, _, _ in parse(page).elements}
    assert "script" not in tags and "img" not in tags and "b" not in tags


def test_every_cve_field_is_escaped(page: str) -> None:
    """CVE id, package, versions, link and description from the scanner come out as text:
    the parsed page holds them verbatim (less control characters), no element came of them,
    and an attribute (the link, the description's title) is not broken out of."""
    checker = parse(page)
    assert checker.errors == []
    text = "".join(checker.text)
    assert 'CVE-2017-<script>"q"</script>' in text  # the colour escape, BEL and NUL stripped
    assert "<img src=x onerror=alert(1)>|pkg" in text
    assert "1'\"<b>" in text and "2&amp;<i>" in text
    hrefs = [a["href"] for tag, a, _ in checker.elements if tag == "a"]
    assert 'https://example.invalid/?a="><script>' in hrefs
    titles = [a.get("title") or "" for tag, a, _ in checker.elements if tag in ("a", "span")]
    assert any("<script>alert('x')</script>" in title for title in titles)
    assert not any(a.get("onerror") for _, a, _ in checker.elements)


def test_needs_attention_comes_first_with_next_steps(page: str) -> None:
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert headings[0] == "Needs attention (6)"
    rows = [a.get("data-kind") for tag, a, _ in parse(page).elements
            if tag == "tr" and a.get("class") == "attention"]
    # The producer's own item first, then one per image that needs a person (images of the
    # fleet without a scan are listed apart: they do not make a run exit 1).
    assert rows == ["unreadable_line", "improved", "unscanned_at_deadline", "not_helped",
                    "build_failed", "no_folder"]
    assert "1 image(s) without a usable scan" in page
    section = page.split('id="attention"', 1)[1].split("</section>", 1)[0]
    assert "add its folder to the tree" in section  # the no-folder item's next step
    assert "read the build log" in section and "/logs/tomcat.log" in section


def test_cves_fixed_and_remaining_fold_under_each_image(page: str) -> None:
    checker = parse(page)
    lists = [(a.get("data-list"), anc) for tag, a, anc in checker.elements
             if tag == "table" and a.get("class") == "cves"]
    assert all("details" in anc for _, anc in lists)  # collapsible
    names = [name for name, _ in lists]
    # base: 2 fixed; jre: 2 remaining, 1 new, 1 fixed; grafana (not rebuilt): its 1 found.
    assert names == ["fixed", "remaining", "new", "fixed", "found"]
    opened = ["open" in a for tag, a, _ in checker.elements
              if tag == "details" and a.get("class") == "cves"]
    assert opened == [False, True, False]  # what remains of jre (did not help) is shown
    summaries = re.findall(r"<summary>CVEs: ([^<]*)</summary>", page)
    assert summaries == ["2 fixed, 0 remaining, 0 new", "1 fixed, 2 remaining, 1 new",
                         "1 CVE"]


def test_badges_follow_meaning() -> None:
    """0 still vulnerable and 0 failed are good news, not red."""
    result = sample_result()
    clean = RunResult(result.run_id, result.started_at, result.finished_at, result.policy,
                      result.images[:1])
    page = render_html(clean)
    chips = {m.group(2): m.group(1) for m in re.finditer(
        r'<span class="chip (\w+)">\d+ ([^<]+)</span>', page)}
    assert chips == {"need attention": "good", "fixed": "good", "still vulnerable": "good",
                     "failed": "good"}
    assert "Failed builds" not in page


def test_skipped_images_show_their_real_scans(page: str) -> None:
    row = page.split('id="image-apps-grafana-4-1-2"', 1)[1].split("</tr>", 1)[0]
    assert "high 6" in row and "no scan" in row  # before: Harbor's scan; after: none
    assert "Not rebuilt (1)" in page


def test_trend_chart_has_one_series_per_severity(page: str) -> None:
    series = [attrs.get("data-severity") for tag, attrs, _ in parse(page).elements
              if tag == "g" and attrs.get("class") == "series"]
    assert series == [s.label for s in sorted(Severity, reverse=True)]
    lines = [attrs for tag, attrs, _ in parse(page).elements if tag == "polyline"]
    assert all(len((a.get("points") or "").split()) == 5 for a in lines)


def test_before_and_after_bars_per_image(page: str) -> None:
    rows = [a.get("id") for tag, a, _ in parse(page).elements
            if tag == "tr" and (a.get("id") or "").startswith("image-")]
    assert len(rows) == 6
    bars = [a for tag, a, ancestors in parse(page).elements
            if tag == "svg" and a.get("class") == "bar"]
    assert len(bars) == 12
    high = [a for tag, a, _ in parse(page).elements if tag == "rect"
            and a.get("class") == "sev-high"]
    assert high  # a coloured segment for the high findings


def test_build_order_tree_nests_children_under_parents() -> None:
    depth_of: dict[str, int] = {}
    # Each <code> inside ul.tree: its depth is the number of nested <ul> around it.
    page = render_html(sample_result())
    tree = page.split('<ul class="tree">', 1)[1].split("</section>", 1)[0]
    depth = 0
    for token in re.finditer(r"<ul>|</ul>|<code>([^<]*)</code>", tree):
        if token.group(0) == "<ul>":
            depth += 1
        elif token.group(0) == "</ul>":
            depth -= 1
        else:
            depth_of[token.group(1)] = depth
    assert depth_of == {"library/base:1.0": 0, "library/httpd:2.4": 0,
                        "library/nginx:1.13": 0, "library/jre:8u191": 1,
                        "library/tomcat:8.5": 2}


def test_build_order_from_the_plan_when_given() -> None:
    base, app = ref("library/base:1.0"), ref("library/app:2")
    plan = Plan(steps=(
        PlanStep(base, 0, StepReason.SELECTED, "", (), "base/1.0", "base/1.0/Dockerfile"),
        PlanStep(app, 1, StepReason.CASCADE, "", (base,), "app/2", "app/2/Dockerfile"),
    ), skipped=(), tree_root="/tree", created_at=STARTED)
    page = render_html(sample_result(), ReportContext(plan=plan))
    tree = page.split('<ul class="tree">', 1)[1].split("</section>", 1)[0]
    assert re.search(r"library/base:1\.0</code>.*<ul><li><code>library/app:2</code>", tree)
    assert "library/jre" not in tree


def test_only_failed_builds_show_their_log_tail(page: str) -> None:
    failures = page.split("<h2>Failed builds</h2>", 1)[1].split("</section>", 1)[0]
    assert failures.count("<details open>") == 1  # tomcat; not jre, which did not help
    assert "ERROR: failed to solve: bad byte" in failures
    assert "full log: <code>/logs/tomcat.log</code>" in failures


def test_no_trend_says_so() -> None:
    page = render_html(sample_result())
    assert "no earlier runs recorded" in page
    assert parse(page).errors == []


def test_a_dry_run_lists_what_would_be_rebuilt() -> None:
    result = sample_result()
    planned = tuple(replace(image, outcome=Outcome.PLANNED, note="dry run", after=None)
                    for image in result.images[:2])
    page = render_html(replace(result, images=planned, dry_run=True))
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert "Would be rebuilt (dry run) (2)" in headings
    assert not any(h.startswith("Rebuilt images") for h in headings)
