"""``careen update`` (the seed's ``update-images``): rebuild and push the images of a list."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from careen import assemble
from careen.builders.buildah import BuildahBuilder
from careen.builders.credentials import LoginTool, RegistryLogin, private_auth
from careen.builders.docker import DockerBuilder
from careen.builders.interface import Builder
from careen.cli.common import command, load, run_async
from careen.cli.main import app, globals_of
from careen.errors import ExitCode, InputFileError, ServiceError, UsageError
from careen.inventory import Image
from careen.plan import Plan, candidates_from_list, make_plan
from careen.scan import ScanSummary
from careen.tree.discover import discover_tree
from careen.tree.graph import BuildGraph
from careen.tree.scm import describe_tree, require_clean
from careen.update import StepOutcome, StepStatus, UpdateOptions, execute_plan
from careen.vulnlist import read_vulnerable_list


@command(app, "update")
def update(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(
        "--from", help="vulnerable.list to read ('-' for stdin). Default: \\[output] "
        "vulnerable_list.")] = None,
    root: Annotated[Path | None, typer.Option(
        "--root", "-r", help="The Dockerfile tree (default: \\[tree] root).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Builds at once.")] = None,
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
) -> int:
    """Rebuild and push every image of vulnerable.list, as the old update-images did.

    Each image is mapped to its Dockerfile folder (library/mysql:5.7.18 -> mysql/5.7.18),
    rebuilt without cache from a freshly pulled base, and pushed to \\[registry] server with
    the registry user's credentials (a private, temporary login; the password goes to the
    builder on stdin). Parents are built before their children, and children of a rebuilt
    base are rebuilt too (--no-cascade to turn off). A failed image never stops the others;
    its children are skipped.

    Example (the seed's Jenkins shell step, unchanged):

        export registry_server=registry.abc.com registry_user=jenkins registry_password=...
        update-images

    Exit code 1 when a build or push failed, 2 for a bad list or tree, 3 when the builder or
    the registry cannot be used.
    """
    observer = globals_of(ctx).observer()
    config = load(ctx, {"tree.root": root, "build.jobs": jobs}, observer)
    list_source = source or str(config.output.vulnerable_list)
    if list_source == "-":
        text, shown = sys.stdin.read(), "stdin"
    else:
        path = Path(list_source)
        if not path.is_file():
            raise InputFileError(list_source, "no such file; give --from PATH (or - for stdin)")
        text, shown = path.read_text(encoding="utf-8", errors="replace"), list_source
    listing = read_vulnerable_list(text, source=shown, strict=strict)
    for problem in listing.problems:
        observer.warning(f"{shown}:{problem.line}: {problem.reason} (line skipped)")

    revision = describe_tree(config.tree.root)
    if revision.is_git:
        require_clean(revision, allow_dirty=allow_dirty)
    registry: str | None = config.registry.server
    if registry is None:
        raise UsageError("no registry to push to",
                         hint="set [registry] server, CAREEN_REGISTRY_SERVER or registry_server")
    tree = discover_tree(config.tree.root, project=config.tree.project, registry=registry,
                         mapping=config.tree.mapping, build_args=config.build.build_args,
                         layout=config.tree.layout)
    policy = assemble.policy(config)
    plan = make_plan(
        candidates_from_list([entry.image for entry in listing.entries]), tree,
        BuildGraph.from_tree(tree), cascade=cascade,
        ignored_by=lambda ref: policy.ignored_by(Image(ref, None, ScanSummary.not_scanned())),
        multi_platform=False, source=f"file:{shown}", tree_commit=revision.commit,
    )
    _print_plan(plan, observer.info)
    run_id = f"update-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    options = UpdateOptions(
        registry=registry, run_id=run_id, log_dir=config.output.reports_dir / run_id / "logs",
        jobs=config.build.jobs, build_args=config.build.build_args,
        labels=config.build.labels, no_cache=config.build.no_cache, pull=config.build.pull,
        timeout=config.build.timeout, revision=revision.commit,
        source=revision.remote_url, dry_run=dry_run,
    )
    with observer, private_auth() as auth:
        builder: Builder
        tool = LoginTool.BUILDAH if config.build.builder == "buildah" else LoginTool.DOCKER
        if not dry_run and plan.steps and config.registry.user and config.registry.password:
            result = auth.login(RegistryLogin(registry, config.registry.user,
                                              config.registry.password,
                                              insecure=not config.registry.tls_verify),
                                tool=tool)
            if not result.ok:
                raise ServiceError("registry", registry,
                                   "login rejected" if result.auth_rejected else "login failed",
                                   hint="check [registry] user and CAREEN_REGISTRY_PASSWORD "
                                   "(or registry_user and registry_password)")
        if tool is LoginTool.BUILDAH:
            builder = BuildahBuilder(auth=auth, insecure_registries=auth.insecure_registries)
        else:
            builder = DockerBuilder(auth=auth)
        outcomes = run_async(execute_plan(plan, builder, options, observer=observer))
    _print_outcomes(outcomes, observer.info)
    failed = [o for o in outcomes if o.status is StepStatus.FAILED]
    return int(ExitCode.FAILED if failed or (listing.problems and strict) else ExitCode.OK)


def _print_plan(plan: Plan, say: Callable[[str], None]) -> None:
    for step in plan.steps:
        say(f"plan: level {step.level} {step.image.short} ({step.reason.value}: {step.detail})")
    for skipped in plan.skipped:
        say(f"plan: skip {skipped.image.short}: {skipped.detail}")


def _print_outcomes(outcomes: list[StepOutcome], say: Callable[[str], None]) -> None:
    for outcome in outcomes:
        extra = f": {outcome.reason}" if outcome.reason else ""
        say(f"result: {outcome.image} {outcome.status.value}{extra}")
