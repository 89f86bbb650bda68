"""The terminal (issue 14 §4): the end-of-run table with its header, and the progress that
names the image and the elapsed time on a TTY."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from careen.cli.commands.run_cmd import print_summary
from careen.cli.output import SUMMARY_COLUMNS, ConsoleObserver, short_counts, summary_table
from tests.cli.conftest import SAMPLES, careen, harbor_env, sample_harbor
from tests.reports.sample import sample_result

__all__ = ["careen", "harbor_env", "sample_harbor"]  # the CLI tests' fixtures, used here


def test_the_end_of_a_run_prints_a_table_with_a_header() -> None:
    said: list[str] = []
    print_summary(sample_result(), said.append)
    header, *rows, last = said
    assert header.split() == list(SUMMARY_COLUMNS)
    assert len(rows) == 6 and last.startswith("run run-20171208-020001-abcd: 1 fixed")
    # Columns line up: "outcome" starts where each row's outcome starts.
    column = header.index("outcome")
    base = next(r for r in rows if r.startswith("library/base:1.0"))
    assert base[column:].startswith("fixed ")
    assert re.search(r"H2 M1 +L1 +passes the policy now \(high 2 -> 0\); CVEs: 2 fixed, "
                     r"0 remaining, 0 new$", base)
    jre = next(r for r in rows if r.startswith("library/jre:8u191"))
    assert jre[column:].startswith("rebuild did not help ")
    # Scanner and builder text cannot drive the terminal.
    assert not any("\x1b" in line or "\x07" in line for line in said)


def test_counts_in_short() -> None:
    rows = summary_table(sample_result())
    grafana = next(r for r in rows if r.startswith("apps/grafana:4.1.2"))
    assert " H6 " in grafana and grafana.split()[3] == "-"  # never rebuilt: no after
    assert short_counts(None) == "-"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tty_progress_names_the_image_and_the_elapsed_time() -> None:
    stream = _Tty()
    observer = ConsoleObserver(stream=stream)
    with observer:
        observer.progress("images", 3, None)   # judging the inventory: no total
        observer.processing("library/base:1.0")
        observer.progress("images", 0, 4)      # building: a new phase with a total
        assert observer._progress is not None
        tasks = observer._progress.tasks
        assert [t.description for t in tasks] == ["building"]
        assert tasks[0].fields["current"] == "library/base:1.0"
        observer.processing("library/jre:\x1b[31m8")
        assert tasks[0].fields["current"] == "library/jre:8"
        columns = [type(c).__name__ for c in observer._progress.columns]
        assert "TimeElapsedColumn" in columns
        observer.processing("folder [/] (dry run: would build app/[bold]1)")
        observer._progress.refresh()  # a name is text, never rich markup: no MarkupError
    assert "app/[bold]1" in stream.getvalue()


def test_the_tls_warning_comes_only_from_commands_contacting_that_service(
        careen: Any, harbor_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Harbor's TLS warning from 'careen images' (which reads Harbor), not from 'careen tree'
    (which reads a folder); the registry's from neither."""
    monkeypatch.setenv("CAREEN_HARBOR_VERIFY_TLS", "false")
    monkeypatch.setenv("CAREEN_REGISTRY_VERIFY_TLS", "false")
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", "registry.test")
    tree = careen("tree", "--root", str(SAMPLES / "tree"))
    assert tree.code == 0, tree.err
    assert "TLS" not in tree.err
    images = careen("images")
    assert images.code == 0, images.err
    assert "TLS certificates of Harbor are not verified" in images.err
    assert "TLS certificates of the registry" not in images.err


def test_reading_harbor_shows_progress_on_a_tty() -> None:
    """'careen images' and the inventory of 'careen run': the crawl's progress is a
    "reading Harbor" bar with the count and the elapsed time."""
    observer = ConsoleObserver(stream=_Tty())
    with observer:
        observer.progress("inventory", 100, None)
        assert observer._progress is not None
        (task,) = observer._progress.tasks
        assert task.description == "reading Harbor" and task.completed == 100
    plain = ConsoleObserver(stream=io.StringIO())  # a Jenkins log: no bar at all
    with plain:
        plain.progress("inventory", 100, None)
        assert plain._progress is None
