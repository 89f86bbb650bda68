"""Reports of a run: JSON (versioned schema), JUnit XML, Markdown, HTML; and the webhook.

:func:`write_reports` writes each format to ``<folder>/<stem><suffix>`` (``careen run
--reports-dir reports`` gives ``reports/careen.json``, ``careen.xml``, ``careen.md``,
``careen.html``), atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from careen.errors import UsageError
from careen.fileio import write_atomically
from careen.reports.html import HtmlReport, render_html
from careen.reports.interface import ReportContext, ReportFormat
from careen.reports.json_report import JsonReport, read_result, render_json, result_from_dict
from careen.reports.junit import JunitReport, render_junit
from careen.reports.markdown import MarkdownReport, render_markdown, summary_line
from careen.results import RunResult

#: Every format, by the name ``--report`` takes.
REPORT_FORMATS: Mapping[str, ReportFormat] = {
    report.name: report
    for report in (JsonReport(), JunitReport(), MarkdownReport(), HtmlReport())
}
DEFAULT_REPORT_STEM = "careen"


def report_format(name: str) -> ReportFormat:
    """The format called ``name``, or a :class:`UsageError` listing the known ones."""
    try:
        return REPORT_FORMATS[name.strip().lower()]
    except KeyError:
        raise UsageError(f"unknown report format {name!r}",
                         hint=f"choose among {', '.join(REPORT_FORMATS)}") from None


def write_reports(result: RunResult, context: ReportContext, folder: Path, *,
                  formats: Iterable[str] | None = None,
                  stem: str = DEFAULT_REPORT_STEM) -> list[Path]:
    """Render ``formats`` (default: all) into ``folder`` (created if needed); return the
    paths written, in the order of ``formats``."""
    chosen = [report_format(name) for name in (formats or REPORT_FORMATS)]
    if not stem or "/" in stem or stem.startswith("."):
        raise UsageError(f"report file name {stem!r} must be a plain name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"reports folder {folder}: cannot create it ({error.strerror})",
                         hint="give another --reports-dir") from None
    written = []
    for report in chosen:
        path = folder / f"{stem}{report.suffix}"
        write_atomically(path, report.render(result, context))
        written.append(path)
    return written


__all__ = [
    "REPORT_FORMATS", "HtmlReport", "JsonReport", "JunitReport", "MarkdownReport",
    "ReportContext", "ReportFormat", "read_result", "render_html", "render_json",
    "render_junit", "render_markdown", "report_format", "result_from_dict", "summary_line",
    "write_reports",
]
