"""Orchestration overhead benchmark (issue 6, benchmark 3): Careen's executor against a plain
loop of ``buildah bud`` + ``buildah push``, on the lab.

    python -m bench.orchestration             # 10 images, repeat 3 (needs the lab's packages)
    python -m bench.orchestration --quick     # 3 images, one run
    python -m bench.orchestration --lab-dir /tmp/lab   # reuse a lab started by scripts/lab

The lab (:class:`careen.lab.Lab`: a registry on loopback, buildah with vfs storage, the busybox
base image ``library/busybox-base:1.0``) is started in a temporary folder unless
``--lab-dir`` names a running one. A tree of ``--images`` small images is written
(``appNN/1.0/Dockerfile``: ``FROM <lab registry>/library/busybox-base:1.0``, a ``COPY`` and a
``RUN``). Then, per repeat and in turn (so the machine's noise falls on all three alike):

- **loop**: for each folder, ``buildah bud`` then ``buildah push`` (subprocess argument lists,
  one after the other), with the flags Careen's builder gives: vfs, ``--isolation chroot``,
  ``--pull-always``, ``--no-cache --layers=false``, ``--tls-verify=false`` for the loopback
  registry;
- **Careen, jobs 1** and **Careen, jobs 2**: :func:`careen.update.execute_plan` with
  :class:`careen.builders.buildah.BuildahBuilder` over the plan
  :func:`careen.plan.make_plan` makes of the same tree (every image selected).

Wall seconds, medians of ``--repeat``. Targets: jobs 1 within 10% of the loop; jobs 2 faster
than the loop (the speed-up is reported).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    add_common_options,
    median,
    print_table,
    repeat_of,
    report_head,
    say,
    write_outputs,
)
from bench.venv import parse_in_user_install

DEFAULT_IMAGES = 10
QUICK_IMAGES = 3
TARGET_OVERHEAD = 0.10


def write_tree(root: Path, images: int, base: str) -> None:
    for index in range(images):
        folder = root / f"app{index:02d}" / "1.0"
        folder.mkdir(parents=True)
        (folder / "hello.txt").write_text(f"app{index:02d}\n", encoding="utf-8")
        (folder / "Dockerfile").write_text(
            f"FROM {base}\nCOPY hello.txt /srv/hello.txt\n"
            f"RUN echo built app{index:02d} > /srv/built.txt\n", encoding="utf-8")


def loop_once(lab: Any, root: Path, folders: Sequence[Path]) -> float:
    """The plain loop: bud + push per folder, one after the other. Wall seconds."""
    env = {**__import__("os").environ, **lab.buildah_env()}
    start = time.perf_counter()
    for folder in folders:
        relative = folder.relative_to(root)
        target = f"{lab.open_registry}/library/{relative.parent.as_posix()}:{relative.name}"
        subprocess.run(["buildah", "--storage-driver", "vfs", "bud", "--isolation", "chroot",
                        "--pull-always", "--no-cache", "--layers=false", "-t", target,
                        "-f", str(folder / "Dockerfile"), str(folder)],
                       env=env, check=True, capture_output=True)
        subprocess.run(["buildah", "--storage-driver", "vfs", "push", "--tls-verify=false",
                        target, f"docker://{target}"], env=env, check=True,
                       capture_output=True)
    return time.perf_counter() - start


def careen_once(lab: Any, root: Path, jobs: int, logs: Path, run: int) -> dict[str, Any]:
    """Careen's executor over the tree's plan. Wall seconds, from planning to the last push."""
    from careen.builders.buildah import BuildahBuilder, storage_slots
    from careen.plan import Candidate, make_plan
    from careen.tree.discover import discover_tree
    from careen.update import UpdateOptions, execute_plan

    start = time.perf_counter()
    tree = discover_tree(root)
    plan = make_plan([Candidate(image, "benchmark") for image in tree.images], tree)
    # As `careen run --jobs N` does: N builds at once each in a storage of their own.
    slots = storage_slots(jobs, logs.parent / "slots" / "root", logs.parent / "slots" / "run")
    builder = BuildahBuilder(env=lab.buildah_env(), insecure_registries=lab.registries,
                             slots=slots)
    options = UpdateOptions(registry=lab.open_registry, run_id=f"bench-{jobs}-{run}",
                            log_dir=logs / f"jobs{jobs}-{run}", jobs=jobs)
    outcomes = asyncio.run(execute_plan(plan, builder, options))
    seconds = time.perf_counter() - start
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"Careen (jobs {jobs}) failed: {failed[0].reason} "
                           f"(log {failed[0].log_path})")
    return {"seconds": seconds, "steps": len(outcomes)}


def measure(images: int, repeat: int, lab_dir: Path | None) -> dict[str, Any]:
    from careen.lab import Lab

    work = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    if lab_dir is not None:
        lab, owned = Lab.load(lab_dir), False
    else:
        say("orchestration: starting the lab (registry, buildah storage, base image)")
        lab, owned = Lab.start(work / "lab"), True
    try:
        base = f"{lab.open_registry}/{lab.base_image}"
        root = work / "tree"
        write_tree(root, images, base)
        folders = sorted(p.parent for p in root.glob("*/*/Dockerfile"))
        say("orchestration: warm-up (one untimed loop)")
        loop_once(lab, root, folders)
        loops, ones, twos = [], [], []
        for run in range(repeat):
            say(f"orchestration: run {run + 1}/{repeat}: loop, Careen jobs 1, Careen jobs 2")
            loops.append(loop_once(lab, root, folders))
            ones.append(careen_once(lab, root, 1, work / "logs", run)["seconds"])
            twos.append(careen_once(lab, root, 2, work / "logs", run)["seconds"])
    finally:
        if owned:
            lab.stop()
    loop, one, two = median(loops), median(ones), median(twos)
    return {"images": images, "loop": {"runs": loops, "seconds": loop},
            "careen_jobs1": {"runs": ones, "seconds": one},
            "careen_jobs2": {"runs": twos, "seconds": two},
            "overhead_jobs1": one / loop - 1, "speedup_jobs2": loop / two}


def targets(case: dict[str, Any]) -> list[dict[str, Any]]:
    loop = f"{case['loop']['seconds']:.2f} s (loop)"
    return [
        {"target": "Careen jobs 1 within 10% of the loop",
         "value": f"{case['careen_jobs1']['seconds']:.2f} s ({case['overhead_jobs1']:+.1%})",
         "baseline": loop, "threshold": f"<= +{TARGET_OVERHEAD:.0%}",
         "met": case["overhead_jobs1"] <= TARGET_OVERHEAD},
        {"target": "Careen jobs 2 faster than the loop",
         "value": f"{case['careen_jobs2']['seconds']:.2f} s ({case['speedup_jobs2']:.2f}x)",
         "baseline": loop, "threshold": "> 1x", "met": case["speedup_jobs2"] > 1.0},
    ]


COLUMNS = ("Images", "Loop s", "Careen jobs 1 s", "Overhead jobs 1", "Careen jobs 2 s",
           "Speed-up jobs 2")


def rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    c = report["case"]
    return [(str(c["images"]), f"{c['loop']['seconds']:.2f}",
             f"{c['careen_jobs1']['seconds']:.2f}", f"{c['overhead_jobs1']:+.1%}",
             f"{c['careen_jobs2']['seconds']:.2f}", f"{c['speedup_jobs2']:.2f}x")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.orchestration",
                                     description="Careen's build executor against a plain "
                                                 "buildah loop, on the lab.")
    parser.add_argument("--images", type=int, default=None,
                        help=f"images to build (default {DEFAULT_IMAGES}, --quick "
                             f"{QUICK_IMAGES})")
    parser.add_argument("--lab-dir", type=Path, default=None,
                        help="a running lab's folder (default: start one in a temp folder)")
    add_common_options(parser, default_repeat=3)
    args = parse_in_user_install(parser, argv, "bench.orchestration")
    if isinstance(args, int):
        return args
    repeat = repeat_of(args, 3)
    images = args.images or (QUICK_IMAGES if args.quick else DEFAULT_IMAGES)
    if images < 1:
        parser.error("--images: at least 1")
    started = time.time()
    case = measure(images, repeat, args.lab_dir)
    report = {**report_head("orchestration", args.install, started),
              "config": {"images": images, "repeat": repeat}, "case": case,
              "targets": targets(case)}
    table = rows(report)
    print_table(f"Orchestration: Careen vs a buildah loop (median of {repeat})", COLUMNS,
                table, report)
    write_outputs(args, report, COLUMNS, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
