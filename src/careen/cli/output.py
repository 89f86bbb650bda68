"""What the CLI shows a person: the observer that prints progress on stderr, and error text.

Machine output (lists, JSON) goes to stdout and nothing else does; people read stderr. At the
default verbosity every image gets the seed's ``YYYY-MM-DD HH:MM:SS Processing IMAGE`` line,
which Jenkins logs keep; a rich progress bar is drawn only when stderr is a terminal.
"""

from __future__ import annotations

import sys
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from careen.cli.context import unwrap
from careen.errors import CareenError

if TYPE_CHECKING:
    from careen.results import RunResult
    from careen.scan import ScanSummary
# careen.reports and careen.vulnlist are imported where used: every command's module imports
# this one, and 'careen COMMAND --help' should not pay for the reports and the core.

#: What a progress task is called on the terminal, by (task, total unknown).
PHASE_LABELS: dict[tuple[str, bool], str] = {
    ("inventory", True): "reading Harbor", ("inventory", False): "reading Harbor",
    ("images", True): "judging images", ("images", False): "building",
    ("scans", False): "waiting for scans",
}

__all__ = ["PHASE_LABELS", "SUMMARY_COLUMNS", "ConsoleObserver", "describe_error", "short_counts",
           "summary_table", "table_console", "unwrap"]


class ConsoleObserver:
    """Prints the core's events on stderr. ``verbosity``: -1 quiet, 0 default, 1+ verbose."""

    def __init__(self, verbosity: int = 0, stream: TextIO | None = None) -> None:
        self.verbosity = verbosity
        self.stream = stream if stream is not None else sys.stderr
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._totals: dict[str, int | None] = {}
        #: The image last started (named beside the bar).
        self._current = ""
        self.warnings = 0

    # -- Observer ------------------------------------------------------------------------------

    def processing(self, image: str) -> None:
        from careen.reports.wording import clean_text
        from careen.vulnlist import render_processing_line

        if self.verbosity >= 0:
            self._print(render_processing_line(image, datetime.now()))
        self._current = " ".join(clean_text(image).split())
        if self._progress is not None:
            for task in self._tasks.values():
                self._progress.update(task, current=self._current)

    def progress(self, task: str, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        if task in self._tasks and self._totals.get(task) is None and total is not None \
                and task == "images":
            # The same task name counts judged images (no total), then builds (a total): a
            # new phase, with its own bar and clock.
            self._progress.remove_task(self._tasks.pop(task))
        if task not in self._tasks:
            label = PHASE_LABELS.get((task, total is None), task)
            self._tasks[task] = self._progress.add_task(label, total=total,
                                                        current=self._current)
        self._totals[task] = total
        self._progress.update(self._tasks[task], completed=done, total=total)

    def info(self, message: str) -> None:
        if self.verbosity >= 0:
            self._print(message)

    def warning(self, message: str) -> None:
        self.warnings += 1
        if self.verbosity >= -1:
            self._print(f"warning: {message}")

    def debug(self, message: str) -> None:
        if self.verbosity >= 1:
            self._print(message)

    # -- progress bar lifetime -----------------------------------------------------------------

    def __enter__(self) -> ConsoleObserver:
        if self.stream.isatty() and self.verbosity >= 0:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.fields[current]}", markup=False),
                console=self.console, transient=True,
            )
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()
            self._totals.clear()

    def _print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)


#: Width of tables written to a file or a pipe (a Jenkins log): wide enough that image names
#: are never folded across lines.
PIPE_WIDTH = 240


def table_console(*, stderr: bool = False) -> Console:
    """A console for tables: the terminal's width on a terminal, :data:`PIPE_WIDTH` else."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, highlight=False, soft_wrap=False,
                   width=None if stream.isatty() else PIPE_WIDTH)


def describe_error(error: CareenError) -> str:
    """The diagnosis printed instead of a traceback: ``careen: error: ...`` plus a hint."""
    text = f"careen: error: {error}"
    if error.hint:
        text += f"\n  hint: {error.hint}"
    return text


# -- the table at the end of a run -------------------------------------------------------------

#: The end-of-run table's columns.
SUMMARY_COLUMNS = ("image", "outcome", "before", "after", "why")


def summary_table(result: RunResult) -> list[str]:
    """The before/after table people read at the end of a Jenkins log: a header, then one
    line per image (``C1 H6 M3`` counts, ``clean``, ``-`` when unknown), columns aligned,
    the reason last so it may run long. Scanner and builder text is stripped of terminal
    control characters."""
    from careen.reports.wording import OUTCOME_LABELS, cve_counts_text

    rows = [SUMMARY_COLUMNS]
    for item in result.images:
        why = "; ".join(part for part in (item.note or item.reason,
                                          _cves(cve_counts_text(item))) if part)
        rows.append((_flat(item.image.short), OUTCOME_LABELS[item.outcome],
                     short_counts(item.before), short_counts(item.after) if item.after
                     is not None else "-", _flat(why)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(SUMMARY_COLUMNS) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)),
                       row[-1]]).rstrip() for row in rows]


def short_counts(summary: ScanSummary | None) -> str:
    """``C1 H6 M3 L1``: the non-zero severities by initial; ``clean``; ``-`` unknown."""
    counts = summary.counts if summary is not None else None
    if counts is None:
        return "-" if summary is None else summary.status.value
    return " ".join(f"{severity.label[0].upper()}{n}" for severity, n in counts.items()
                    if n) or "clean"


def _cves(text: str) -> str:
    return f"CVEs: {text}" if text else ""


def _flat(text: str) -> str:
    from careen.reports.wording import clean_text

    return " ".join(clean_text(text).split())
