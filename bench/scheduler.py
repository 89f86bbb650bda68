"""Orchestration at scale (issue 16): the real executor over a 1,000-step plan, against the
lower bound no scheduler can beat.

    python -m bench.scheduler                 # 1,000 steps, 6 levels, --jobs 1 4 16, repeat 3
    python -m bench.scheduler --quick         # 200 steps, --jobs 1 4, one run
    python -m bench.scheduler --in-process    # this environment instead of a user's install

The lab's 10-image figure (``bench/orchestration.py``) measures buildah, not Careen's
scheduler. Here the builds are a double whose ``build`` sleeps for a duration drawn from a
seeded log-normal distribution (and records when it started), so what is measured is Careen:
:func:`careen.update.execute_plan` with the nightly job's :class:`~careen.nightly.StateRecorder`
writing every state change to a real SQLite state database.

- **Makespan / lower bound** at each ``--jobs``: the bound is max(critical path, total build
  time / jobs); no schedule is shorter. Target: within 1.05x.
- **Careen's own cost per step**: the same plan with builds that take no time at all, jobs 1:
  wall / steps is what scheduling, state writes and logging cost each step. Target: < 20 ms.
- **Ideal list schedule**: the same plan run by a zero-cost scheduler with the executor's
  policy (a slot never idle while an image is ready; of the ready images, the one heading the
  longest chain of builds by last night's durations first), computed, not run; beside it the
  same in plan order (the policy before issue 16). Where the levels leave slots idle it is
  above the lower bound; the ratio to it is Careen's own cost.
- **History**: the state database holds last night's run of the same plan, whose builds took
  what tonight's take give or take a seeded 25 % (log-normal, sigma 0.25): the executor ranks
  by those, as the nightly job does. ``--no-history`` measures a first night (a fresh state).
- **Order**: every child started after its parents' pushes finished (checked, not timed).

The plan is a forest over ``--levels`` levels (about as many images per level as a fleet of
bases, runtimes and apps has), each image built on one parent of the level above, one in ten
on two (a multi-stage build). The measurement runs in a plain ``pip install .`` venv
(:mod:`bench.venv`) unless ``--in-process``.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    add_common_options,
    machine,
    median,
    print_table,
    repeat_of,
    say,
    write_outputs,
)

TARGET_MAKESPAN_RATIO = 1.05
TARGET_STEP_COST_MS = 20.0
#: Share of images per level, bases first (normalised to the number of steps).
LEVEL_SHARES = (0.01, 0.04, 0.15, 0.30, 0.30, 0.20)


@dataclass(frozen=True)
class Fleet:
    """A generated plan's shape: per image its level, parents and build seconds."""

    names: tuple[str, ...]
    levels: tuple[int, ...]
    parents: tuple[tuple[int, ...], ...]
    seconds: tuple[float, ...]
    #: What each build took last night (the state's history the executor ranks by).
    previous: tuple[float, ...]

    def critical_path(self) -> float:
        finish: list[float] = []
        for index, parents in enumerate(self.parents):
            start = max((finish[p] for p in parents), default=0.0)
            finish.append(start + self.seconds[index])
        return max(finish)

    def lower_bound(self, jobs: int) -> float:
        return max(self.critical_path(), sum(self.seconds) / jobs)

    def children(self) -> list[list[int]]:
        children: list[list[int]] = [[] for _ in self.names]
        for index, parents in enumerate(self.parents):
            for parent in parents:
                children[parent].append(index)
        return children

    def remaining_paths(self, history: bool) -> list[float]:
        """The executor's rank (careen.plan.remaining_paths, restated here: the driver does
        not import Careen): the longest chain of builds below each image, by last night's
        durations, or by count without history. A plan lists parents before children."""
        weight = self.previous if history else (1.0,) * len(self.names)
        children = self.children()
        path = list(weight)
        for index in reversed(range(len(self.names))):
            path[index] = weight[index] + max((path[c] for c in children[index]), default=0.0)
        return path

    def ideal_list_schedule(self, jobs: int, rank: list[float] | None = None) -> float:
        """The makespan of a zero-cost scheduler that starts, as soon as a slot is free, the
        ready image of highest ``rank`` (plan order among equals; without ``rank``, plan
        order): what the executor's policy reaches with no overhead. Above the lower bound
        where the levels leave slots idle (a level that starts narrow, the last builds of
        the night)."""
        key = rank or [0.0] * len(self.names)
        children = self.children()
        waiting = [len(parents) for parents in self.parents]
        ready = [(-key[index], index) for index, count in enumerate(waiting) if count == 0]
        heapq.heapify(ready)
        running: list[tuple[float, int]] = []
        now = 0.0
        while ready or running:
            while ready and len(running) < jobs:
                _, index = heapq.heappop(ready)
                heapq.heappush(running, (now + self.seconds[index], index))
            now, index = heapq.heappop(running)
            for child in children[index]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, (-key[child], child))
        return now


def make_fleet(steps: int, levels: int, median_ms: float, seed: int) -> Fleet:
    rng = random.Random(seed)
    shares = LEVEL_SHARES[:levels] if levels <= len(LEVEL_SHARES) else (1.0,) * levels
    total_share = sum(shares)
    sizes = [max(1, round(steps * share / total_share)) for share in shares]
    sizes[-1] += steps - sum(sizes)
    names: list[str] = []
    level_of: list[int] = []
    parents: list[tuple[int, ...]] = []
    previous: list[int] = []
    for level, size in enumerate(sizes):
        current: list[int] = []
        for _ in range(size):
            index = len(names)
            names.append(f"fleet/l{level}-img{index:04d}:1.0")
            level_of.append(level)
            if previous:
                count = 2 if rng.random() < 0.1 and len(previous) > 1 else 1
                parents.append(tuple(sorted(rng.sample(previous, count))))
            else:
                parents.append(())
            current.append(index)
        previous = current
    sigma = 0.6
    seconds = tuple(math.exp(math.log(median_ms / 1000) + sigma * rng.gauss(0, 1))
                    for _ in names)
    # Last night's durations: tonight's give or take 25 % (its own generator, so that the
    # plan and tonight's durations do not depend on it).
    jitter = random.Random(seed + 1)
    previous = tuple(value * math.exp(0.25 * jitter.gauss(0, 1)) for value in seconds)
    return Fleet(tuple(names), tuple(level_of), tuple(parents), seconds, previous)


# -- the measurement (runs in the user's venv) -----------------------------------------------


def measure(fleet: Fleet, jobs: int, *, sleep: bool, history: bool) -> dict[str, Any]:
    """Run ``fleet`` through the real executor; wall seconds and the order check. With
    ``history`` the state first holds last night's run of the plan (``fleet.previous``)."""
    from careen.builders.interface import BuildRequest, BuildResult, PushResult, Status
    from careen.nightly import StateRecorder
    from careen.plan import Plan, PlanStep, StepReason
    from careen.reference import ImageReference
    from careen.state.store import RunKind, RunStatus, StateStore
    from careen.update import UpdateOptions, execute_plan

    references = [ImageReference.parse_short(name) for name in fleet.names]
    seconds = {ref: fleet.seconds[i] if sleep else 0.0 for i, ref in enumerate(references)}
    started: dict[str, float] = {}
    finished: dict[str, float] = {}
    lock = threading.Lock()

    class SleepingBuilder:
        name = "sleeping-double"

        def build(self, request: BuildRequest) -> BuildResult:
            key = ImageReference(request.image.repository, request.image.tag)
            with lock:
                started[key.short] = time.monotonic()
            if seconds[key]:
                time.sleep(seconds[key])
            # An image id, as buildah and docker report (--iidfile): the executor records it,
            # durably, before the push (what a resume asks the registry about).
            return BuildResult(request.image, Status.SUCCEEDED, seconds[key], request.log_path,
                               image_id="sha256:" + "2" * 64)

        def push(self, request: BuildRequest) -> PushResult:
            key = ImageReference(request.image.repository, request.image.tag)
            with lock:
                finished[key.short] = time.monotonic()
            return PushResult(request.image, Status.SUCCEEDED, 0.0, request.log_path,
                              digest="sha256:" + "0" * 64)

    with tempfile.TemporaryDirectory(prefix="careen-bench-scheduler-") as folder:
        root = Path(folder)
        steps = tuple(
            PlanStep(image=ref, level=fleet.levels[i],
                     reason=StepReason.SELECTED if not fleet.parents[i] else StepReason.CASCADE,
                     detail="bench", parents=tuple(references[p] for p in fleet.parents[i]),
                     folder=f"img{i}", dockerfile=f"img{i}/Dockerfile")
            for i, ref in enumerate(references))
        plan = Plan(steps=steps, skipped=(), tree_root=str(root), created_at=datetime.now(UTC))
        with StateStore.open(root / "state.sqlite") as store:
            if history:
                last_night = store.begin_run(RunKind.UPDATE)
                with store.grouped():
                    for index, ref in enumerate(references):
                        build = store.build_started(last_night.id, ref, step=index)
                        store.build_pushed(build.id, digest="sha256:" + "1" * 64,
                                           duration=fleet.previous[index])
                store.finish_run(last_night.id, RunStatus.SUCCEEDED, 0)
            run = store.begin_run(RunKind.UPDATE)
            recorder = StateRecorder(store, run.id, plan)
            # As the nightly job does (careen.nightly._build): past durations rank the steps.
            options = UpdateOptions(registry="127.0.0.1:5000", run_id=run.id,
                                    log_dir=root / "logs", jobs=jobs,
                                    build_seconds=store.build_seconds(references))
            begin = time.monotonic()
            outcomes = asyncio.run(execute_plan(plan, SleepingBuilder(), options,
                                                recorder=recorder))
            wall = time.monotonic() - begin
    pushed = sum(1 for outcome in outcomes if outcome.ok)
    late = sum(1 for i, ref in enumerate(references) for p in fleet.parents[i]
               if started[ref.short] < finished[references[p].short])
    return {"wall": wall, "pushed": pushed, "order_violations": late}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    fleet = make_fleet(spec["steps"], spec["levels"], spec["median_ms"], spec["seed"])
    return measure(fleet, spec["jobs"], sleep=spec["sleep"], history=spec["history"])


# -- the driver ------------------------------------------------------------------------------


def run_case(spec: dict[str, Any], python: Path | None) -> dict[str, Any]:
    if python is None:
        return worker(spec)
    # The worker imports careen from the venv: the repository's src/ is not on its path
    # (this folder is, for the bench package only).
    done = subprocess.run([str(python), "-m", "bench.scheduler", "--worker", json.dumps(spec)],
                          capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise SystemExit(f"worker failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduler",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=None, help="images in the plan (1000)")
    parser.add_argument("--levels", type=int, default=6)
    parser.add_argument("--jobs", type=int, nargs="+", default=None, help="(1 4 16)")
    parser.add_argument("--median-ms", type=float, default=40.0,
                        help="median build time of the double, ms (log-normal, sigma 0.6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-history", action="store_true",
                        help="a first night: no past build durations in the state")
    parser.add_argument("--in-process", action="store_true",
                        help="measure this environment, not a plain 'pip install .' venv")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    add_common_options(parser, default_repeat=3)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    steps = args.steps or (200 if args.quick else 1000)
    jobs_list = args.jobs or ([1, 4] if args.quick else [1, 4, 16])
    repeat = repeat_of(args, 3)
    python: Path | None = None
    install = "this process (--in-process)"
    if not args.in_process:
        from bench.venv import describe, user_python
        python = user_python()
        install = describe(python)
    say(f"measuring {install}")
    fleet = make_fleet(steps, args.levels, args.median_ms, args.seed)
    history = not args.no_history
    base = {"steps": steps, "levels": args.levels, "median_ms": args.median_ms,
            "seed": args.seed, "history": history}
    rank = fleet.remaining_paths(history)
    began = time.monotonic()
    rows: list[tuple[str, ...]] = []
    cases: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    for jobs in jobs_list:
        walls, violations = [], 0
        for attempt in range(repeat):
            say(f"jobs {jobs}, run {attempt + 1}/{repeat}")
            result = run_case({**base, "jobs": jobs, "sleep": True}, python)
            walls.append(result["wall"])
            violations += result["order_violations"]
        bound = fleet.lower_bound(jobs)
        in_order = fleet.ideal_list_schedule(jobs)
        ideal = fleet.ideal_list_schedule(jobs, rank)
        ratio = median(walls) / bound
        cases.append({"jobs": jobs, "makespan": median(walls), "makespans": walls,
                      "lower_bound": bound, "ratio": ratio,
                      "ideal_list_schedule_plan_order": in_order, "ideal_list_schedule": ideal,
                      "ratio_to_ideal": median(walls) / ideal, "order_violations": violations})
        rows.append((str(jobs), f"{median(walls):.2f}", f"{bound:.2f}", f"{ratio:.3f}",
                     f"{in_order:.2f}", f"{ideal:.2f}", f"{median(walls) / ideal:.3f}",
                     str(violations)))
        targets.append({"target": f"makespan / lower bound, jobs {jobs}",
                        "value": f"{ratio:.3f}", "baseline": f"{bound:.2f} s",
                        "threshold": f"<= {TARGET_MAKESPAN_RATIO}",
                        "met": ratio <= TARGET_MAKESPAN_RATIO and violations == 0})
    costs = [run_case({**base, "jobs": 1, "sleep": False}, python)["wall"] / steps * 1000
             for _ in range(repeat)]
    cost = median(costs)
    targets.append({"target": "Careen's cost per step (builds of 0 s, jobs 1)",
                    "value": f"{cost:.2f} ms", "baseline": "", "threshold":
                    f"< {TARGET_STEP_COST_MS:.0f} ms", "met": cost < TARGET_STEP_COST_MS})
    report = {
        "benchmark": "scheduler", "install": install, "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "fleet": {**base, "total_build_seconds": sum(fleet.seconds),
                  "critical_path_seconds": fleet.critical_path()},
        "cases": cases, "step_cost_ms": cost, "targets": targets,
        "duration_seconds": time.monotonic() - began,
    }
    columns = ("jobs", "makespan s", "lower bound s", "ratio", "ideal, plan order s",
               "ideal, Careen's priority s", "ratio to ideal", "order violations")
    say(f"{steps} steps over {args.levels} levels: {sum(fleet.seconds):.1f} s of builds, "
        f"critical path {fleet.critical_path():.2f} s; "
        f"{'history: last night in the state' if history else 'no history (first night)'}; "
        f"measured: {install}")
    print_table("Executor makespan against the lower bound", columns, rows, report)
    write_outputs(args, report, columns, rows)
    return 0 if all(target["met"] for target in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
