"""What the CLI shows a person: the observer that prints progress on stderr, and error text.

Machine output (lists, JSON) goes to stdout and nothing else does; people read stderr. At the
default verbosity every image gets the seed's ``YYYY-MM-DD HH:MM:SS Processing IMAGE`` line,
which Jenkins logs keep; a rich progress bar is drawn only when stderr is a terminal.
"""

from __future__ import annotations

import sys
from datetime import datetime
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from careen.cli.context import unwrap
from careen.errors import CareenError
from careen.vulnlist import render_processing_line

__all__ = ["ConsoleObserver", "describe_error", "table_console", "unwrap"]


class ConsoleObserver:
    """Prints the core's events on stderr. ``verbosity``: -1 quiet, 0 default, 1+ verbose."""

    def __init__(self, verbosity: int = 0, stream: TextIO | None = None) -> None:
        self.verbosity = verbosity
        self.stream = stream if stream is not None else sys.stderr
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self.warnings = 0

    # -- Observer ------------------------------------------------------------------------------

    def processing(self, image: str) -> None:
        if self.verbosity >= 0:
            self._print(render_processing_line(image, datetime.now()))

    def progress(self, task: str, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        if task not in self._tasks:
            self._tasks[task] = self._progress.add_task(task, total=total)
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
