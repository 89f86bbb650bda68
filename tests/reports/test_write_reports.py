from __future__ import annotations

import json
from pathlib import Path

import pytest

from careen.errors import UsageError
from careen.reports import REPORT_FORMATS, ReportContext, report_format, write_reports
from tests.reports.sample import sample_result


def test_writes_every_format(tmp_path: Path) -> None:
    written = write_reports(sample_result(), ReportContext(), tmp_path / "reports")
    assert [p.name for p in written] == ["careen.json", "careen.xml", "careen.md",
                                         "careen.html"]
    assert json.loads(written[0].read_text())["run_id"] == "run-20171208-020001-abcd"


def test_writes_the_asked_formats(tmp_path: Path) -> None:
    written = write_reports(sample_result(), ReportContext(), tmp_path, formats=["JUnit"],
                            stem="nightly")
    assert [p.name for p in written] == ["nightly.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nightly.xml"]


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(UsageError) as caught:
        report_format("pdf")
    assert "'pdf'" in str(caught.value)
    assert caught.value.hint is not None
    assert all(name in caught.value.hint for name in REPORT_FORMATS)
