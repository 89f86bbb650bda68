"""``careen update`` (the seed's ``update-images``): rebuild and push listed or planned images."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from careen import assemble, nightly
from careen.cli.commands.plan_cmd import print_attention
from careen.cli.commands.run_cmd import print_summary
from careen.cli.common import StateOption, load, run_async, telling_interruption
from careen.cli.context import globals_of
from careen.errors import ExitCode, UsageError
from careen.listsource import read_list
from careen.plan import Plan
from careen.reference import ImageReference
from careen.shard import at_level, only_images, parse_shard, shard
from careen.state.store import RunKind, StateStore


def update(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--from", help="vulnerable.list to read: a path, '-' for stdin, or an http(s):// URL. "
        "Default: \\[output] vulnerable_list.", show_default=False)] = None,
    plan_id: Annotated[str | None, typer.Option(
        "--plan", help="Run this stored plan (from 'careen plan'; 'latest' for the newest), "
        "or a plan file written by 'careen plan -f json' on another machine, instead of "
        "reading a list.", show_default=False)] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", metavar="IMAGE", help="Only this image of the plan (repeatable); its "
        "parents are taken as pushed by an earlier stage.", show_default=False)] = None,
    shard_spec: Annotated[str | None, typer.Option(
        "--shard", metavar="K/N", help="Only the K-th of N shares of each level of the plan "
        "(for a CI matrix; run the levels in order).", show_default=False)] = None,
    level: Annotated[int | None, typer.Option(
        "--level", min=0, help="Only this level of the plan (0: the bases); with --shard, "
        "a CI matrix per level.", show_default=False)] = None,
    root: Annotated[Path | None, typer.Option(
        "--root", "-r", help="The Dockerfile tree (default: \\[tree] root).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1,
                                             help="Builds at once.")] = None,
    cascade: Annotated[bool, typer.Option(
        "--cascade/--no-cascade", help="Also rebuild the children of rebuilt base images.")
    ] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; build nothing.")
                       ] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="A malformed line of the list fails the run (default: reported, "
        "skipped).")] = False,
    allow_dirty: Annotated[bool, typer.Option(
        "--allow-dirty", help="Build from a git tree with uncommitted changes.")] = False,
    reports_dir: Annotated[Path | None, typer.Option(
        "--reports-dir", help="Where reports and build logs go (default: \\[output] "
        "reports_dir).")] = None,
    state: StateOption = None,
) -> int:
    """Rebuild and push every image of vulnerable.list (or of a stored plan), as the old
    update-images did.

    Each image is mapped to its Dockerfile folder (library/mysql:5.7.18 -> mysql/5.7.18),
    rebuilt without cache from a freshly pulled base, and pushed to \\[registry] server with
    the registry user's credentials (a private, temporary login; the password goes to the
    builder on stdin). Parents are built before their children, and children of a rebuilt
    base are rebuilt too (--no-cascade to turn off). A failed image never stops the others;
    its children are skipped. Images an earlier run of the same plan pushed are not built
    again (resume).

    Examples:

        # the seed's Jenkins shell step, unchanged
        export registry_server=registry.abc.com registry_user=jenkins registry_password=...
        update-images

        careen update --plan careen-plan.json --level 0 --shard 2/4   # a CI matrix job
        careen update --plan plan-20261127-0100-ab12 --only library/tomcat:8.5

    Exit code 1 when something needs attention (a build or push failed, a listed image has
    no Dockerfile folder, a line of the list cannot be read: each named on stderr with its
    next step), 2 for a bad plan or tree or, with --strict, a malformed list, 3 when the
    builder or the registry cannot be used.
    """
    observer = globals_of(ctx).observer()
    config = load(ctx, {"tree.root": root, "build.jobs": jobs,
                        "output.reports_dir": reports_dir, "state.path": state}, observer)
    if plan_id is not None and source is not None:
        raise UsageError("--plan and --from both given", hint="choose one")
    options = nightly.NightlyOptions(
        jobs=config.build.jobs, cascade=cascade, dry_run=dry_run, allow_dirty=allow_dirty,
        reports_dir=config.output.reports_dir, report_formats=config.run.reports,
        rescan=False)
    with StateStore.open(assemble.state_path(config)) as store, observer:
        if plan_id is not None:
            assemble.open_tree(config, allow_dirty=allow_dirty, observer=observer)
            if plan_id.endswith(".json") or Path(plan_id).is_file():
                plan = nightly.read_plan_file(Path(plan_id), store, config.tree.root)
            else:
                plan = nightly.load_plan(store, plan_id)
        else:
            tree, revision = assemble.open_tree(config, allow_dirty=allow_dirty,
                                               observer=observer)
            listed = read_list(source or str(config.output.vulnerable_list), stdin=sys.stdin,
                               strict=strict)
            plan = nightly.store_plan(store, nightly.plan_from_list(
                listed, tree, assemble.policy(config), cascade=cascade, revision=revision,
                observer=observer))
        if only:
            plan = only_images(plan, [ImageReference.parse_short(image) for image in only])
        if level is not None:
            plan = at_level(plan, level)
        if shard_spec is not None:
            plan = shard(plan, *parse_shard(shard_spec))
        _print_plan(plan, observer.info)
        parts = assemble.job_parts(config, observer=observer)
        again = _resume_command(only, level, shard_spec)
        with telling_interruption(store, RunKind.UPDATE, again,
                                  [step.image.short for step in plan.steps]):
            outcome = run_async(nightly.run_update(parts, plan, options, store=store,
                                                   observer=observer))
    print_summary(outcome.result, observer.info)
    print_attention(outcome.result.attention)
    return int(ExitCode.FAILED if outcome.exit_code else ExitCode.OK)


def _resume_command(only: list[str] | None, level: int | None,
                    shard_spec: str | None) -> Callable[[str | None], str]:
    """``careen update --plan ID`` with this run's restriction: what finishes it."""
    def command(plan_id: str | None) -> str:
        words = ["careen", "update", "--plan", str(plan_id)]
        words += [f"--level {level}"] if level is not None else []
        words += [f"--shard {shard_spec}"] if shard_spec is not None else []
        words += [f"--only {image}" for image in only or ()]
        return " ".join(words)
    return command


def _print_plan(plan: Plan, say: Callable[[str], None]) -> None:
    say(f"plan {plan.id}: {len(plan.steps)} to rebuild")
    for step in plan.steps:
        say(f"plan: level {step.level} {step.image.short} ({step.reason.value}: {step.detail})")
    for skipped in plan.skipped:
        say(f"plan: skip {skipped.image.short}: {skipped.detail}")
