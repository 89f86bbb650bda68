"""``careen history`` and ``careen show``: what earlier runs did, from the state database."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from careen import assemble
from careen.cli.common import StateOption, emit, load, open_state
from careen.cli.context import globals_of
from careen.cli.output import table_console
from careen.errors import ExitCode, UsageError
from careen.state.store import BuildRecord, RunRecord

FormatOption = Annotated[Literal["table", "json"], typer.Option(
    "--format", "-f", help="table for people, json for machines.")]


def history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Runs to list.")] = 20,
    output_format: FormatOption = "table",
    state: StateOption = None,
) -> int:
    """List the latest runs, newest first: status, exit code, plan, and what they did.

    Example:

        careen history -n 7          # the last week of nights
        careen show latest           # the newest one in detail
    """
    observer = globals_of(ctx).observer()
    config = load(ctx, {"state.path": state}, observer)
    with open_state(assemble.state_path(config)) as store:
        store.mark_interrupted_runs()
        runs = store.runs(limit)
    if output_format == "json":
        emit(json.dumps([_run_dict(run) for run in runs], indent=2))
        return int(ExitCode.OK)
    table = Table(title=f"{len(runs)} latest runs", title_justify="left")
    for column in ("run", "kind", "status", "exit", "started", "plan", "outcome"):
        table.add_column(column, overflow="fold")
    for run in runs:
        table.add_row(run.id, run.kind.value, run.status.value,
                      "" if run.exit_code is None else str(run.exit_code),
                      f"{run.started_at:%Y-%m-%d %H:%M}", run.plan_id or "-", _outcome(run))
    table_console().print(table)
    return int(ExitCode.OK)


def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="A run id, or 'latest'.")],
    output_format: FormatOption = "table",
    state: StateOption = None,
) -> int:
    """Show one run: its options, every build (status, duration, digest, log) and outcome.

    Example:

        careen show run-20261127-010003-4f2a
    """
    observer = globals_of(ctx).observer()
    config = load(ctx, {"state.path": state}, observer)
    with open_state(assemble.state_path(config)) as store:
        store.mark_interrupted_runs()
        if run_id == "latest":
            last = store.last_run()
            if last is None:
                raise UsageError(f"no run recorded in {store.path}", hint="run 'careen run'")
            run_id = last.id
        detail = store.run(run_id)
    if output_format == "json":
        emit(json.dumps({
            **_run_dict(detail.run),
            "builds": [_build_dict(build) for build in detail.builds],
            "scans": len(detail.scans), "verdicts": len(detail.verdicts),
            "summary": detail.run.summary,
        }, indent=2))
        return int(ExitCode.OK)
    run = detail.run
    console = table_console()
    console.print(f"run {run.id} ({run.kind.value}): {run.status.value}, exit "
                  f"{run.exit_code}, started {run.started_at:%Y-%m-%d %H:%M:%S}"
                  + (f", resumed from {run.resumed_from}" if run.resumed_from else ""),
                  markup=False)
    console.print(f"plan {run.plan_id or '-'}, tree commit {run.tree_commit or '-'}; "
                  f"{len(detail.verdicts)} images judged", markup=False)
    table = Table(title="builds", title_justify="left")
    for column in ("step", "image", "status", "seconds", "digest", "error / log"):
        table.add_column(column, overflow="fold")
    for build in detail.builds:
        table.add_row(str(build.step), build.image, build.status.value,
                      "" if build.duration is None else f"{build.duration:.1f}",
                      (build.digest or "")[:19], build.error or build.log_path or "")
    console.print(table)
    result = (run.summary or {}).get("result")
    if isinstance(result, dict):
        for item in result.get("images", []):
            console.print(f"{item['outcome']:>14}  {item['image']}  {item['note']}",
                          markup=False)
    return int(ExitCode.OK)


def _outcome(run: RunRecord) -> str:
    summary = run.summary or {}
    result = summary.get("result")
    if isinstance(result, dict):
        counts = result.get("counts", {})
        return ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "nothing to do"
    return str(summary.get("error", ""))


def _run_dict(run: RunRecord) -> dict[str, Any]:
    result = (run.summary or {}).get("result")
    return {
        "id": run.id, "kind": run.kind.value, "status": run.status.value,
        "exit_code": run.exit_code, "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "plan_id": run.plan_id, "tree_commit": run.tree_commit,
        "resumed_from": run.resumed_from,
        "counts": result.get("counts") if isinstance(result, dict) else None,
    }


def _build_dict(build: BuildRecord) -> dict[str, Any]:
    return {
        "image": build.image, "step": build.step, "attempt": build.attempt,
        "status": build.status.value, "duration": build.duration, "digest": build.digest,
        "log_path": build.log_path, "error": build.error,
        "started_at": build.started_at.isoformat() if build.started_at else None,
        "finished_at": build.finished_at.isoformat() if build.finished_at else None,
    }
