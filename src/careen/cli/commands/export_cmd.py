"""``careen export``: a stored plan handed to another build engine (BuildKit bake, Jenkins)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from careen.assemble import state_path
from careen.cli.common import StateOption, command, emit, load, open_state
from careen.cli.context import globals_of
from careen.errors import UsageError
from careen.export.bake import bake_file
from careen.export.jenkins import jenkins_stage
from careen.fileio import write_atomically
from careen.nightly import load_plan
from careen.plan import Plan

export_app = typer.Typer(
    help="Hand a stored plan to another build engine: a docker-bake.json for BuildKit, or a "
    "Jenkinsfile stage with parallel branches.",
    no_args_is_help=True, rich_markup_mode="rich",
)

PlanOption = Annotated[str, typer.Option(
    "--plan", metavar="ID", help="The plan's id ('careen plan' printed it), or 'latest'.",
    show_default=False)]
OutputOption = Annotated[str | None, typer.Option(
    "--output", "-o", metavar="FILE", help="Write to FILE (atomically) instead of stdout "
    "('-': stdout).", show_default=False)]


@command(export_app, "bake")
def bake(
    ctx: typer.Context,
    plan_id: PlanOption,
    output: OutputOption = None,
    root: Annotated[Path | None, typer.Option(
        "--root", "-r", help="Where the Dockerfiles are read from for the FROM names "
        "(default: the plan's tree root).", show_default=False)] = None,
    state: StateOption = None,
) -> int:
    """Write a stored plan as a docker-bake.json, so that BuildKit builds the fleet.

    Each image of the plan is a target (its folder as context, tagged for \\[registry]
    server, no cache, fresh base pulled); each child is wired to its parents' targets as
    named contexts, so BuildKit builds parents first and children on the new parents. Groups
    level-0, level-1... hold the plan's levels; default holds them all.

    Example (from the Dockerfile tree's root, where the contexts are relative to):

        careen plan                                   # prints the plan id
        careen export bake --plan latest -o docker-bake.json
        docker buildx bake -f docker-bake.json --push

    Exit code 2 for an unknown plan or a missing \\[registry] server.
    """
    observer = globals_of(ctx).observer()
    config = load(ctx, {"state.path": state}, observer)
    registry: str = config.require("registry.server")
    stored_id, plan = _load_plan(state_path(config), plan_id)
    document = bake_file(plan, registry=registry, build_args=config.build.build_args,
                         no_cache=config.build.no_cache, pull=config.build.pull,
                         labels=config.build.labels, tree_root=root)
    _write(json.dumps(document, indent=2, ensure_ascii=False) + "\n", output)
    if output not in (None, "-"):
        observer.info(f"wrote {output}: {len(plan.steps)} targets in {len(plan.levels)} levels "
                      f"of plan {stored_id}")
    return 0


@command(export_app, "jenkins")
def jenkins(
    ctx: typer.Context,
    plan_id: PlanOption,
    output: OutputOption = None,
    agent_label: Annotated[str | None, typer.Option(
        "--agent-label", metavar="LABEL", help="Jenkins label expression of the agents that "
        "build (default: \\[jenkins] agent_label).", show_default=False)] = None,
    state: StateOption = None,
) -> int:
    """Write a stored plan as a Jenkinsfile stage: one stage per level, its images as
    parallel branches, each running 'careen update --plan ID --only IMAGE' on an agent.

    Paste the stage into the stages { } of a declarative Jenkinsfile. Levels run one after
    the other (parents are pushed before their children build); a branch that exits 1 marks
    the build UNSTABLE and lets the others go on.

    Example:

        careen export jenkins --plan latest --agent-label 'docker && linux' -o rebuild.groovy

    Exit code 2 for an unknown plan or an empty agent label.
    """
    observer = globals_of(ctx).observer()
    config = load(ctx, {"state.path": state, "jenkins.agent_label": agent_label}, observer)
    stored_id, plan = _load_plan(state_path(config), plan_id)
    _write(jenkins_stage(plan, plan_id=stored_id, agent_label=config.jenkins.agent_label),
           output)
    if output not in (None, "-"):
        observer.info(f"wrote {output}: {len(plan.levels)} levels of plan {stored_id}")
    return 0


def _load_plan(path: Path, plan_id: str) -> tuple[str, Plan]:
    """The stored plan ``plan_id`` (``latest``: the newest) and its id."""
    with open_state(path) as store:
        plan = load_plan(store, plan_id)
    if plan.id is None:  # pragma: no cover - load_plan always sets the stored id
        raise UsageError(f"plan {plan_id!r} has no id")
    return plan.id, plan


def _write(text: str, output: str | None) -> None:
    if output is None or output == "-":
        emit(text)
    else:
        write_atomically(Path(output), text)
