"""What every report format is: a name, a file suffix, and a pure ``render``.

A report is text made from a :class:`~careen.results.RunResult` (live at the end of a run, or
rebuilt later from state by ``careen report RUN``) and a :class:`ReportContext` holding what
the result alone does not know: the fleet's trend over past nights, the plan's build order.
Rendering never touches the network, the terminal or the clock, so the same inputs always
give the same text (and tests compare it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from careen.plan import Plan
from careen.results import RunResult
from careen.state.store import TrendPoint

#: Lines of a failed build's log shown in a report (the result may carry more).
DEFAULT_LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class ReportContext:
    """What a report shows beside the run itself.

    ``trend`` is :meth:`careen.state.store.StateStore.trend` (oldest first); ``plan`` the plan
    the run executed, when known (the HTML report draws its build order from it, else from the
    results' levels and parents); ``title`` heads the HTML and Markdown reports.
    """

    trend: Sequence[TrendPoint] = ()
    plan: Plan | None = None
    title: str = "Careen run"
    log_tail_lines: int = DEFAULT_LOG_TAIL_LINES

    def __post_init__(self) -> None:
        if self.log_tail_lines < 0:
            raise ValueError("log_tail_lines must be >= 0")


class ReportFormat(Protocol):
    """One kind of report. ``name`` is what ``--report`` takes (``junit``), ``suffix`` the
    file name's ending (``.xml``)."""

    @property
    def name(self) -> str: ...

    @property
    def suffix(self) -> str: ...

    def render(self, result: RunResult, context: ReportContext) -> str: ...
