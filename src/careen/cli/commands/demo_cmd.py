"""``careen demo``: the whole nightly job on this machine, before pointing Careen at a Harbor."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Literal

import typer

from careen.cli.commands.run_cmd import print_summary
from careen.cli.common import run_async
from careen.cli.context import globals_of
from careen.errors import ExitCode


def demo(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(
        help="Where the demo lives: lab, registry data, tree, state, reports.")
    ] = Path("careen-demo"),
    builder: Annotated[Literal["buildah", "docker"], typer.Option(
        "--builder", help="buildah, or the docker CLI against podman's Docker API.")
    ] = "buildah",
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the registry and Harbor running to explore; prints how.")
    ] = False,
    down: Annotated[bool, typer.Option(
        "--down", help="Stop a demo left running with --keep and delete its folder.")
    ] = False,
) -> int:
    """Run the nightly job on this machine: a real registry, a real builder, a simulated Harbor.

    Starts a registry with a login and the builder on loopback (free ports: two demos, or a
    demo and the tests, never collide), a Harbor API simulator reading that registry, and
    lays out a sample fleet in the old script's layout (app/version/Dockerfile: a base
    image, its children and grandchild, unrelated images). It builds and pushes the "old"
    fleet on an old OS image, publishes the OS's security update, and Harbor's scan finds
    what the old images contain. Then it runs 'careen run' exactly as Jenkins would:
    vulnerable.list, plan, rebuild in order, push, rescan, verify, report. Harbor's scanner
    reads each image's package lists from the registry, so a rebuilt image really has fewer
    findings.

    Examples:

        careen demo                  # about a minute; reports in careen-demo/reports
        careen demo --keep           # then explore: careen images, careen plan, ...
        careen demo --down           # stop it and delete careen-demo

    Needs Debian's docker-registry, buildah and podman: 'scripts/lab install' installs
    them. Exit code as 'careen run'.
    """
    from careen import assemble, nightly  # the core too: not for 'careen demo --help'
    from careen.config import load_config
    from careen.demo import start_demo, stop_demo  # the demo and the lab: only when it runs
    from careen.state.store import StateStore

    observer = globals_of(ctx).observer()
    if down:
        stop_demo(folder, remove=True)
        observer.info(f"demo in {folder.resolve()} stopped and removed")
        return int(ExitCode.OK)
    observer.info(f"starting the demo in {folder.resolve()} (lab, Harbor simulator, old fleet)")
    with observer:
        site = start_demo(folder, builder=builder, observer=observer)
    try:
        # The builder tools started by the run read the lab's containers files (buildah) or
        # its podman socket (docker) from the environment.
        os.environ.update(site.environ())
        config = load_config(site.config_path, cwd=site.folder, environ=os.environ,
                             overrides={})
        for warning in config.warnings:  # the lab's registry speaks plain HTTP on loopback
            observer.warning(warning)
        options = nightly.NightlyOptions(
            jobs=config.build.jobs, reports_dir=config.output.reports_dir,
            rescan_timeout=config.run.rescan_timeout,
            rescan_interval=config.run.rescan_interval, notify=False)
        observer.info("== careen run (what the nightly Jenkins job runs)")
        with StateStore.open(assemble.state_path(config)) as store, observer:
            parts = assemble.job_parts(config, observer=observer)
            outcome = run_async(nightly.run_nightly(parts, options, store=store,
                                                    observer=observer))
    finally:
        if not keep:
            stop_demo(site.folder)
            # The registry's and the builder's storage go; tree, state and reports stay.
            shutil.rmtree(site.folder / "lab", ignore_errors=True)
    print_summary(outcome.result, observer.info)
    observer.info(f"vulnerable.list: {config.output.vulnerable_list}")
    for path in outcome.reports:
        observer.info(f"report: {path}")
    if keep:
        observer.info(site.describe())
    else:
        observer.info(f"the lab is stopped; '{folder}' keeps the tree, state and reports "
                      f"('careen demo --down {folder}' deletes it)")
    return int(outcome.exit_code)
