"""The Markdown report: plain Markdown (no HTML, no entities), every plan image in a table,
then the needs-attention list."""

from __future__ import annotations

import re

from careen.reports import ReportContext
from careen.reports.markdown import MarkdownReport, escape_markdown, render_markdown, summary_line
from careen.results import RunResult
from tests.reports.sample import sample_result

ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-f]+|[a-z]+);", re.I)


def test_counts_fixed_still_vulnerable_failed_skipped() -> None:
    assert summary_line(sample_result()) == (
        "1 fixed, 2 still vulnerable, 1 failed, 1 unverified, 1 skipped")


def table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")][2:]
    # Split on "|" not preceded by a backslash (an escaped pipe stays in its cell).
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_table_lists_every_plan_image() -> None:
    text = MarkdownReport().render(sample_result(), ReportContext(title="Nightly"))
    rows = table_rows(text)
    assert [row[0] for row in rows] == [
        "library/base:1.0", "library/httpd:2.4", "library/nginx:1.13", "library/jre:8u191",
        "library/tomcat:8.5", "apps/grafana:4.1.2"]
    assert all(len(row) == 6 for row in rows)  # the planted '|' did not add a cell
    base = rows[0]
    assert base[1:5] == ["fixed", "high 2, medium 1", "low 1", "2 fixed, 0 remaining, 0 new"]
    assert text.startswith("### Nightly `run-20171208-020001-abcd`: needs attention")
    assert "Fleet: 42 judged, 6 breaking, 34 passing, 1 unscanned, 0 untagged, 1 ignored." \
        in text


def test_plain_markdown_without_entities() -> None:
    """A policy reason reads 'high 2 > 0', not 'high 2 &gt; 0' (issue 14)."""
    text = render_markdown(sample_result())
    assert ENTITY.search(text) is None
    assert "high 2 > 0" in text and "medium 5 >= 3" in text


def test_untrusted_text_cannot_break_the_table_or_inject_markup() -> None:
    text = render_markdown(sample_result())
    # No tag can open: every '<' before a letter or '/' is backslash-escaped.
    assert re.search(r"(?<!\\)<[A-Za-z/!]", text) is None
    assert "\\<script>alert('x')\\</script>" in text
    jre = next(row for row in table_rows(text) if row[0] == "library/jre:8u191")
    assert "\\| pipe" in jre[5]
    assert escape_markdown("a\nb <!channel> [x](javascript:y) a&amp;b `c`") == (
        "a b \\<!channel> \\[x\\](javascript:y) a\\&amp;b \\`c\\`")
    assert escape_markdown("low 1 > 0 & more") == "low 1 > 0 & more"
    assert "\x1b" not in text and "\x07" not in text


def test_needs_attention_list_with_next_steps() -> None:
    text = render_markdown(sample_result())
    section = text.split("#### Needs attention (6)", 1)[1]
    items = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(items) == 6
    assert items[0].startswith("- **unreadable list line** `vulnerable.list:7`: not an image")
    no_folder = next(item for item in items if "no Dockerfile folder**" in item)
    assert "Next: add its folder to the tree" in no_folder
    failed = next(item for item in items if item.startswith("- **build failed**"))
    assert failed.endswith("Next: read the build log (`/logs/tomcat.log`)")


def test_long_tables_are_cut() -> None:
    text = render_markdown(sample_result(), limit=2, attention_limit=3)
    assert "…and 4 more images" in text
    assert "- …and 3 more (see the full report)" in text


def test_a_clean_run_says_ok_and_lists_its_images() -> None:
    """A good run's Markdown names what was fixed (no longer 152 bytes of '**5 fixed**')."""
    result = sample_result()
    clean = RunResult(result.run_id, result.started_at, result.finished_at, result.policy,
                      result.images[:1])
    text = render_markdown(clean)
    assert ": ok" in text.splitlines()[0]
    assert "**1 fixed**" in text
    assert [row[0] for row in table_rows(text)] == ["library/base:1.0"]
    assert "Needs attention" not in text
