"""``careen run``: the nightly job, start to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from careen.cli.commands.plan_cmd import print_attention, print_plan
from careen.cli.common import (
    NoHoldOption,
    RebuildOption,
    StateOption,
    load,
    run_async,
    telling_interruption,
)
from careen.cli.context import globals_of
from careen.cli.output import summary_table, table_console

if TYPE_CHECKING:
    from careen.results import RunResult


def run(
    ctx: typer.Context,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Finish the last interrupted run: its plan, without building or "
        "pushing again what it already pushed.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Read Harbor and plan (the plan is stored); build nothing.")] = False,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", "-j", help="Builds at once (default: \\[build] jobs).", min=1)] = None,
    cascade: Annotated[bool, typer.Option(
        "--cascade/--no-cascade", help="Also rebuild the children of rebuilt base images.")
    ] = True,
    reports_dir: Annotated[Path | None, typer.Option(
        "--reports-dir", help="Where reports and build logs go (default: \\[output] "
        "reports_dir).")] = None,
    rescan: Annotated[bool | None, typer.Option(
        "--rescan/--no-rescan", help="Ask Harbor to rescan pushed images and compare "
        "(default: \\[run] rescan).", show_default=False)] = None,
    root: Annotated[Path | None, typer.Option(
        "--root", "-r", help="The Dockerfile tree (default: \\[tree] root).")] = None,
    allow_dirty: Annotated[bool, typer.Option(
        "--allow-dirty", help="Build from a git tree with uncommitted changes.")] = False,
    state: StateOption = None,
    rebuild: RebuildOption = None,
    no_hold: NoHoldOption = False,
) -> int:
    """The nightly job: Harbor -> vulnerable.list -> plan -> rebuild -> push -> rescan -> report.

    1. brings the Dockerfile tree up to date (\\[tree] git) and records its commit;
    2. reads every image's scan summary from Harbor and writes vulnerable.list;
    3. plans: the images that break the policy and the children of rebuilt bases, parents
       first (stored: see 'careen history' and 'careen show');
    4. rebuilds each without cache from a fresh base and pushes it, logged in to \\[registry]
       server with a private, temporary login; a failed image never stops the others;
    5. asks Harbor to rescan each pushed digest, waits, and compares before and after: fixed,
       improved, or "rebuild did not help" with the likely reason;
    6. writes the reports (JSON, JUnit, Markdown, HTML) and calls the \\[notify] webhook.

    Example (the Jenkins shell step):

        careen run --reports-dir reports

    A run killed half-way is finished by 'careen run --resume'. Exit code 0 when every
    image that broke the policy passes it now (or was never Careen's to fix), 1 when
    something needs attention (a build failed, a rebuild did not help, a rescan missed its
    deadline, an image has no folder or sits in a FROM cycle: each named on stderr with its
    next step), 2 for bad settings or input, 3 when Harbor, the registry or the builder
    cannot be reached or Harbor does not accept the credentials, 130 when interrupted.
    """
    # The core: imported when the command runs, not for 'careen run --help'.
    from careen import assemble, nightly
    from careen.hold import HoldSettings
    from careen.state.store import RunKind, StateStore

    observer = globals_of(ctx).observer()
    config = load(ctx, {"tree.root": root, "build.jobs": jobs,
                        "output.reports_dir": reports_dir, "run.rescan": rescan,
                        "state.path": state}, observer)
    options = nightly.NightlyOptions(
        jobs=config.build.jobs, cascade=cascade, dry_run=dry_run, allow_dirty=allow_dirty,
        resume=resume, reports_dir=config.output.reports_dir,
        report_formats=config.run.reports, rescan=config.run.rescan,
        rescan_timeout=config.run.rescan_timeout, rescan_interval=config.run.rescan_interval,
        hold=HoldSettings(enabled=config.run.hold and not no_hold, rebuild=tuple(rebuild or ())),
    )
    with StateStore.open(assemble.state_path(config)) as store, observer:
        parts = assemble.job_parts(config, observer=observer)
        with telling_interruption(store, RunKind.RUN, lambda _: "careen run --resume"):
            outcome = run_async(nightly.run_nightly(parts, options, store=store,
                                                    observer=observer))
    if dry_run:
        print_plan(outcome.plan.to_dict(), table_console(stderr=True))
        observer.info(f"dry run: plan {outcome.plan.id} stored; run it with "
                      f"'careen update --plan {outcome.plan.id}'")
    else:
        print_summary(outcome.result, observer.info)
    print_attention(outcome.result.attention)
    return int(outcome.exit_code)


def print_summary(result: RunResult, say: Callable[[str], None]) -> None:
    """The before/after table people read at the end of a Jenkins log, with its header."""
    if result.images:
        for line in summary_table(result):
            say(line)
    counts = ", ".join(f"{n} {name}" for name, n in result.counts.items() if n)
    say(f"run {result.run_id}: {counts or 'nothing to do'}")
