"""``careen report``: the reports of a past run, from state, or of CI shards merged."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from careen import assemble
from careen.assemble import state_path
from careen.cli.common import StateOption, emit, load, open_state
from careen.cli.context import globals_of
from careen.config import Config
from careen.errors import InputFileError, UsageError
from careen.plan import Plan
from careen.reports import (
    REPORT_FORMATS,
    ReportContext,
    read_result,
    report_format,
    write_reports,
)
from careen.reports.from_state import context_of_run, plan_of_run, result_of_run
from careen.results import RunResult
from careen.shard import merge_results
from careen.state.store import (
    StateStore,
    UnknownPlanError,
    UnknownRunError,
)

#: What RUN (and ``--plan``) take for the newest one.
LATEST = "latest"



def report(
    ctx: typer.Context,
    targets: Annotated[list[str] | None, typer.Argument(
        metavar="RUN | FILE...", help="The run's id, or 'latest' (careen history lists "
        "them); with --merge, the shards' JSON results.", show_default=False)] = None,
    formats: Annotated[list[str] | None, typer.Option(
        "--format", "-f", metavar="FORMAT", help="json, junit, markdown or html (repeatable, "
        "or comma-separated). Default: \\[run] reports, else all; with -o -, json.",
        show_default=False)] = None,
    output_dir: Annotated[str | None, typer.Option(
        "--output-dir", "-o", metavar="DIR", help="Folder to write careen.json, careen.xml, "
        "careen.md, careen.html into ('-': one report on stdout). Default: \\[output] "
        "reports_dir.", show_default=False)] = None,
    merge: Annotated[bool, typer.Option(
        "--merge", help="Merge the JSON results (FILE...) of the CI shards of one plan into "
        "one run's reports.")] = False,
    state: StateOption = None,
) -> int:
    """Write the reports of a past run: JSON, JUnit XML, Markdown and HTML.

    A run that finished stored its whole result, which is what its reports show. An
    interrupted run (killed, rebooted) is rebuilt from what the state recorded: its
    unfinished builds show as failed, the images it had not reached as skipped, and a note
    on stderr says so. The HTML report draws the fleet's trend up to that run.

    With --merge, the JSON results of the shards of one plan (careen update --plan ID
    --shard K/N, each with its own reports) become one run's reports; an image reported by
    two shards is an error.

    Examples:

        careen report latest -o reports
        careen report run-20171208-020001-abcd --format markdown -o -
        careen report --merge shard-*/careen.json -o reports

    Exit code 0 when the reports are written (whatever the run's outcome), 2 for an unknown
    run or an unreadable result file.
    """
    observer = globals_of(ctx).observer()
    config = load(ctx, {"state.path": state}, observer)
    chosen = _formats(formats, config, to_stdout=output_dir == "-")
    given = list(targets or ())
    if merge:
        if not given:
            raise UsageError("--merge needs the shards' JSON results: --merge FILE...")
        result = merge_results([_read_result_file(Path(name)) for name in given])
        context = _merge_context(result, state_path(config), title=config.notify.title)
    elif len(given) == 1:
        with open_state(state_path(config)) as store:
            detail = store.run(_run_id(store, given[0]))
            plan = plan_of_run(store, detail)
            result = result_of_run(detail, plan=plan, policy=assemble.policy(config),
                                   store=store)
            context = context_of_run(store, detail, plan, title=config.notify.title)
    elif given:
        raise UsageError(f"one run at a time, not {len(given)}",
                         hint="to merge the JSON results of shards, add --merge")
    else:
        raise UsageError("which run? give RUN (an id, or 'latest') or --merge FILE...",
                         hint="careen history lists the runs")
    for note in result.extra.get("notes", ()):
        observer.info(f"run {result.run_id}: {note}")
    for warning in result.extra.get("warnings", ()):
        observer.warning(f"run {result.run_id}: {warning}")
    if output_dir == "-":
        emit(report_format(chosen[0]).render(result, context))
        return 0
    folder = Path(output_dir) if output_dir is not None else config.output.reports_dir
    for path in write_reports(result, context, folder, formats=chosen):
        observer.info(f"wrote {path}")
    return 0


def _formats(given: Sequence[str] | None, config: Config, *, to_stdout: bool) -> list[str]:
    names = [name.strip() for item in given or () for name in item.split(",") if name.strip()]
    if not names:
        names = ["json"] if to_stdout else list(config.run.reports or REPORT_FORMATS)
    chosen = list(dict.fromkeys(report_format(name).name for name in names))
    if to_stdout and len(chosen) > 1:
        raise UsageError(f"-o - writes one report on stdout, not {len(chosen)}",
                         hint="give one --format, or a folder to -o")
    return chosen


def _run_id(store: StateStore, run: str) -> str:
    if run != LATEST:
        return run
    last = store.last_run()
    if last is None:
        raise UnknownRunError(store.path, run, [])
    return last.id


def _read_result_file(path: Path) -> RunResult:
    if str(path) == "-":
        return read_result(sys.stdin.read(), source="stdin")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(str(path), "no such file; give the careen.json a shard wrote "
                             "(careen update --plan ID --shard K/N)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputFileError(str(path), f"cannot read it ({error})") from None
    return read_result(text, source=str(path))


def _merge_context(result: RunResult, path: Path, *, title: str) -> ReportContext:
    """The trend and the plan from the state when this machine has one (a CI node that only
    collected the shards' files may not): the merged reports are complete without them."""
    if not path.is_file():
        return ReportContext(title=title)
    with open_state(path) as store:
        plan: Plan | None = None
        if result.plan_id is not None:
            with contextlib.suppress(UnknownPlanError):
                plan = Plan.from_dict(store.load_plan(result.plan_id).body,
                                      plan_id=result.plan_id)
        return ReportContext(trend=store.trend(), plan=plan, title=title)
