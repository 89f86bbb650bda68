from __future__ import annotations

from careen.reports import ReportContext
from careen.reports.markdown import MarkdownReport, escape_markdown, render_markdown, summary_line
from careen.results import RunResult
from tests.reports.sample import sample_result


def test_counts_fixed_still_vulnerable_failed_skipped() -> None:
    assert summary_line(sample_result()) == (
        "1 fixed, 2 still vulnerable, 1 failed, 1 unverified, 1 skipped")


def test_table_lists_the_images_that_need_a_person() -> None:
    text = MarkdownReport().render(sample_result(), ReportContext(title="Nightly"))
    rows = [line for line in text.splitlines() if line.startswith("| ")][2:]
    images = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    assert images == ["library/httpd:2.4", "library/nginx:1.13", "library/jre:8u191",
                      "library/tomcat:8.5", "apps/grafana:4.1.2"]
    assert "| library/base:1.0 |" not in text  # fixed: counted, not listed
    assert text.startswith("### Nightly `run-20171208-020001-abcd`: needs attention")


def test_untrusted_text_cannot_break_the_table_or_inject_markup() -> None:
    text = render_markdown(sample_result())
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    jre_row = next(line for line in text.splitlines() if line.startswith("| library/jre"))
    assert jre_row.count(" | ") == 4  # five cells: the planted '|' is escaped
    assert "\\| pipe" in jre_row
    assert escape_markdown("a\nb <!channel>") == "a b &lt;!channel&gt;"


def test_long_tables_are_cut() -> None:
    text = render_markdown(sample_result(), limit=2)
    assert "…and 3 more" in text


def test_a_clean_run_says_ok_with_no_table() -> None:
    result = sample_result()
    clean = RunResult(result.run_id, result.started_at, result.finished_at, result.policy,
                      result.images[:1])
    text = render_markdown(clean)
    assert ": ok" in text.splitlines()[0]
    assert "| image |" not in text
    assert "**1 fixed**" in text
