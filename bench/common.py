"""What every benchmark shares: the machine description, medians, the command-line options
every benchmark takes (``--repeat``, ``--quick``, ``--json``, ``--markdown``) and writing its
report as a table (stdout), JSON and Markdown.

Standard library only at the top: client processes of some benchmarks import this module.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.inventory import machine

__all__ = [
    "Report",
    "add_common_options",
    "machine",
    "markdown_table",
    "median",
    "print_table",
    "report_head",
    "say",
    "write_outputs",
]

Report = dict[str, Any]


def report_head(benchmark: str, install: str, started: float) -> Report:
    """The fields every benchmark's report starts with; ``started`` is a ``time.time()``."""
    return {"benchmark": benchmark, "install": install,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "duration_seconds": time.time() - started, "machine": machine()}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def say(text: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def add_common_options(parser: argparse.ArgumentParser, *, default_repeat: int) -> None:
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"runs per figure; the median is reported (default "
                             f"{default_repeat}, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write JSON here")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write the tables as Markdown here")


def repeat_of(args: argparse.Namespace, default: int) -> int:
    repeat = args.repeat if args.repeat is not None else 1 if args.quick else default
    if repeat < 1:
        raise SystemExit("--repeat: must be at least 1")
    return int(repeat)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def targets_rows(report: Report) -> list[tuple[str, ...]]:
    return [(t["target"], t["value"], t["baseline"], t["threshold"],
             "met" if t["met"] else "**not met**", t.get("note", ""))
            for t in report["targets"]]


TARGET_COLUMNS = ("Target", "Value", "Baseline", "Threshold", "Met", "Note")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if report.get("targets"):
        checks = Table(title="Targets")
        for column in TARGET_COLUMNS:
            checks.add_column(column)
        for row in targets_rows(report):
            checks.add_row(*(cell.replace("**", "") for cell in row))
        console.print(checks)
    m = report["machine"]
    console.print(f"{m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, "
                  f"Python {m['python']}; {report['duration_seconds']:.0f} s in all")


def write_outputs(args: argparse.Namespace, report: Report, columns: Sequence[str],
                  rows: Sequence[Sequence[str]]) -> None:
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        text = markdown_table(columns, rows)
        if report.get("targets"):
            text += "\n" + markdown_table(TARGET_COLUMNS, targets_rows(report))
        args.markdown.write_text(text, encoding="utf-8")
