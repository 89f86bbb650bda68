"""``careen plan``: decide what to rebuild, show why, and store the plan."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from careen.cli.common import (
    NoHoldOption,
    RebuildOption,
    StateOption,
    emit,
    load,
    run_async,
)
from careen.cli.context import globals_of
from careen.cli.output import table_console
from careen.errors import ExitCode

if TYPE_CHECKING:
    from careen.attention import AttentionItem
    from careen.hold import HoldDecision


def plan(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--from", help="Plan from a vulnerable.list instead of Harbor: a path, '-' for stdin, "
        "or an http(s):// URL (another job's artifact).", show_default=False)] = None,
    root: Annotated[str | None, typer.Option(
        "--root", "-r", help="The Dockerfile tree (default: \\[tree] root).")] = None,
    layout: Annotated[str | None, typer.Option(
        "--layout", help="auto, app/version or project/app/version (default: \\[tree] layout)."
    )] = None,
    project: Annotated[str | None, typer.Option(
        "--project", help="Harbor project of app/version folders (default: \\[tree] project)."
    )] = None,
    cascade: Annotated[bool, typer.Option(
        "--cascade/--no-cascade", help="Also rebuild the children of rebuilt base images.")
    ] = True,
    output_format: Annotated[Literal["table", "json"], typer.Option(
        "--format", "-f", help="table for people, json for machines.")] = "table",
    state: StateOption = None,
    allow_dirty: Annotated[bool, typer.Option(
        "--allow-dirty", help="Plan from a git tree with uncommitted changes.")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", help="A malformed line of the list is an error (default: skipped).")
    ] = False,
    rebuild: RebuildOption = None,
    no_hold: NoHoldOption = False,
) -> int:
    """Decide what to rebuild and in which order, say why, and store the plan.

    Reads the images that break the policy (live from Harbor, or --from a vulnerable.list),
    maps each to its Dockerfile folder and adds the children of every rebuilt base image
    (the cascade). Parents come before children; the images of one level are independent.
    Images that will not be rebuilt are listed with the reason: no Dockerfile folder (the
    old script's "directory does not exist"), ignored by \\[policy] ignore, tag immutable in
    Harbor, a FROM cycle.

    Exit code 1 when something needs attention (an image without a folder, a FROM cycle, an
    unreadable line of the list: each named on stderr with its next step), 2 for a
    malformed list with --strict.

    The plan is stored with an id; 'careen update --plan ID' runs exactly this plan, and
    'careen export bake|jenkins --plan ID' hands it to BuildKit or Jenkins.

    Examples:

        careen plan                                   # from Harbor
        careen plan --from vulnerable.list -f json
        curl -s https://jenkins/job/scan/lastSuccessfulBuild/artifact/vulnerable.list \\
          | careen plan --from -
    """
    # The core: imported when the command runs, not for 'careen plan --help'.
    from careen import assemble, nightly
    from careen.hold import HoldSettings
    from careen.listsource import read_list
    from careen.state.store import StateStore

    observer = globals_of(ctx).observer()
    config = load(ctx, {"tree.root": root, "state.path": state, "tree.layout": layout,
                        "tree.project": project}, observer)
    tree, revision = assemble.open_tree(config, allow_dirty=allow_dirty, sync=False,
                                        observer=observer)
    policy = assemble.policy(config)
    hold = HoldSettings(enabled=config.run.hold and not no_hold, rebuild=tuple(rebuild or ()))
    with StateStore.open(assemble.state_path(config)) as store:

        async def holder(inventory: nightly.Inventory) -> HoldDecision | None:
            return (await nightly.hold_night(
                tree, revision, store, hold, inventory,
                build_args=config.build.build_args, registry=config.registry.server,
                base_digests=assemble.base_digests(config)))[1]

        with observer:
            if source is None:
                made, _ = run_async(nightly.plan_from_harbor(
                    assemble.harbor_opener(config, observer), tree, revision, policy,
                    cascade=cascade, projects=config.harbor.projects, observer=observer,
                    holder=holder))
            else:
                made = nightly.plan_from_list(read_list(source, stdin=sys.stdin,
                                                        strict=strict),
                                              tree, policy, cascade=cascade,
                                              revision=revision, observer=observer)
        stored = nightly.store_plan(store, made)
    if output_format == "json":
        emit(json.dumps(stored.to_dict(), indent=2))
    else:
        print_plan(stored.to_dict(), table_console())
    observer.info(f"plan {stored.id} stored; run it with: careen update --plan {stored.id}")
    print_attention(stored.attention)
    return int(ExitCode.FAILED if stored.attention else ExitCode.OK)


def print_attention(items: Iterable[AttentionItem]) -> None:
    """Each item that needs attention, one line on stderr with its next step (shown even
    with --quiet: each one makes the command exit 1)."""
    for item in items:
        print(item.line(), file=sys.stderr, flush=True)


def print_plan(document: dict[str, Any], console: Console) -> None:
    """The plan as a table: steps in the order they run, then the skipped images."""
    table = Table(title=f"plan {document['id']} ({len(document['steps'])} to rebuild)",
                  title_justify="left")
    for column in ("level", "image", "why", "parents", "folder"):
        table.add_column(column, overflow="fold")
    for step in document["steps"]:
        tags = step.get("tags") or []
        image = step["image"] + (f" (+ tags {', '.join(tags[1:])})" if len(tags) > 1 else "")
        why = f"{step['reason']}: {step['detail']}"
        if step.get("first_rebuild"):
            why += " (first rebuild: Careen never built this tag)"
        # Text, not markup: details and folder names may hold brackets ("[tree] ...").
        table.add_row(str(step["level"]), Text(image), Text(why),
                      ", ".join(step["parents"]) or "-", Text(step["folder"]))
    console.print(table)
    if document["skipped"]:
        skipped = Table(title="not rebuilt", title_justify="left")
        for column in ("image", "reason", "detail"):
            skipped.add_column(column, overflow="fold")
        for item in document["skipped"]:
            skipped.add_row(item["image"], item["reason"], Text(item["detail"]))
        console.print(skipped)
