"""Rebuild storms (issue 19): three simulated nights of a fleet, with and without the hold.

    python -m bench.storm                      # 1,000 images, repeat 1
    python -m bench.storm --quick              # 200 images
    python -m bench.storm --json bench/results/storm.json --markdown bench/results/storm.md

The fleet (the bundled Harbor simulator, in this process): ``size / 10`` base images, each
``FROM`` one of a few upstream images (``docker.io/library/alpine:3.N``, digests given by a
resolver double), and the rest applications ``FROM`` a base. 30% of the fleet breaks the
policy; half of those have no fix (a rebuild gives the same findings: the bases that carry an
unfixable CVE, all their children, and some applications of their own), the other half a fix
(a rebuild comes out clean). A builder double "pushes" into the simulator as a registry
would, with the build's labels in the image config.

Nights, each a whole ``careen run`` (inventory, plan, build, push, rescan, judge, reports):

1. the first night: every image that breaks the policy is rebuilt, with the cascade;
2. nothing changed;
3. one upstream image is republished (a new digest of ``alpine:3.0``).

Each night is run with the hold (``[run] hold = true``, this change) and without it
(``--no-hold``: as before this change), on two fleets built the same way. Figures per night:
builds, pushes (the builder double's), held images, the images whose inputs changed, and the
wall time of the night. Target: on nights 2 and 3 the hold builds only the images whose
inputs changed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.common import add_common_options, machine, print_table, repeat_of, say, write_outputs
from bench.venv import parse_in_user_install
from careen.assemble import job_parts
from careen.attention import AttentionKind
from careen.builders.interface import BuildRequest, BuildResult, PushResult, Status
from careen.config import load_config
from careen.events import NULL_OBSERVER
from careen.hold import HoldSettings
from careen.nightly import NightlyOptions, run_nightly
from careen.reference import ImageReference
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from careen.sim.harbor.fleet import ScanResult
from careen.state.store import StateStore

DEFAULT_SIZE = 1_000
QUICK_SIZE = 200
BREAKING_SHARE = 0.30


@dataclass(frozen=True)
class FleetPlan:
    """Which image is what: its parent, and whether it breaks the policy with or without a
    fix. Deterministic for a size."""

    size: int
    upstreams: int
    parents: Mapping[str, str]          # repository -> FROM (an upstream or a base)
    no_fix: frozenset[str]              # repositories whose rebuild cannot help
    with_fix: frozenset[str]            # repositories a rebuild fixes

    @classmethod
    def of(cls, size: int) -> FleetPlan:
        bases = max(2, size // 10)
        upstreams = max(2, bases // 5)
        parents: dict[str, str] = {}
        for i in range(bases):
            parents[f"library/base-{i}"] = f"alpine:3.{i % upstreams}"
        apps = size - bases
        for j in range(apps):
            parents[f"library/app-{j}"] = f"library/base-{j % bases}:1"
        children = {f"library/base-{i}": [f"library/app-{j}" for j in range(apps)
                                          if j % bases == i] for i in range(bases)}
        half = round(size * BREAKING_SHARE / 2)
        no_fix: set[str] = set()
        with_fix: set[str] = set()
        # Bases with an unfixable CVE carry it into every child: about two thirds of the
        # unfixable half comes from such bases, the rest from applications' own layers.
        i = 0
        while i < bases and len(no_fix) + 1 + len(children[f"library/base-{i}"]) <= half * 2 // 3:
            no_fix |= {f"library/base-{i}", *children[f"library/base-{i}"]}
            i += 2  # every other base: the others stay clean upstreams' users
        k = bases - 1
        while k > i and len(with_fix) + 1 + len(children[f"library/base-{k}"]) <= half // 3:
            with_fix |= {f"library/base-{k}", *children[f"library/base-{k}"]}
            k -= 2
        tainted = no_fix | with_fix
        clean_apps = [f"library/app-{j}" for j in range(apps)
                      if f"library/app-{j}" not in tainted
                      and parents[f"library/app-{j}"].rsplit(":", 1)[0] not in tainted]
        for name in clean_apps:
            if len(no_fix) < half:
                no_fix.add(name)
            elif len(with_fix) < half:
                with_fix.add(name)
        return cls(size, upstreams, parents, frozenset(no_fix), frozenset(with_fix))

    def fleet(self) -> dict[str, Any]:
        repositories = []
        for repository in sorted(self.parents):
            scan: dict[str, int] = {}
            if repository in self.no_fix:
                scan = {"high": 2, "fixable": 0}
            elif repository in self.with_fix:
                scan = {"high": 2, "fixable": 2}
            repositories.append({"name": repository.split("/", 1)[1],
                                 "artifacts": [{"tags": ["1"], "scan": scan}]})
        return {"harbor_version": "2.14.0", "users": {"admin": "Harbor12345"},
                "projects": [{"name": "library", "repositories": repositories}]}

    def write_tree(self, root: Path) -> None:
        for repository, parent in self.parents.items():
            folder = root / repository.split("/", 1)[1] / "1"
            folder.mkdir(parents=True)
            (folder / "Dockerfile").write_text(f"FROM {parent}\nRUN true\n", encoding="utf-8")

    def changed_by_republish(self, upstream: str) -> set[str]:
        """The unfixable images whose inputs a new digest of ``upstream`` changes: the bases
        built on it, and their children (rebuilt with them)."""
        bases = {name for name, parent in self.parents.items() if parent == upstream}
        hit = {name for name in bases if name in self.no_fix}
        return hit | {name for name, parent in self.parents.items()
                      if parent.rsplit(":", 1)[0] in hit}


class Upstreams:
    """The registries' answers for the upstream images (a resolver double)."""

    def __init__(self, count: int) -> None:
        self.digests = {f"docker.io/library/alpine:3.{n}": _digest(f"alpine-3.{n}-1")
                        for n in range(count)}

    async def resolve_many(
        self, references: Iterable[ImageReference],
    ) -> Mapping[ImageReference, str | None]:
        return {r: self.digests.get(str(r)) for r in references}


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class RegistryBuilder:
    """Builds nothing; a push registers the image in the simulator, its labels in the image
    config, and its rescan finds the same findings when no fix exists, none otherwise."""

    name = "bench"

    def __init__(self, harbor: SimulatorServer, no_fix: frozenset[str]) -> None:
        self.harbor = harbor
        self.no_fix = no_fix
        self.builds = 0
        self.pushes = 0
        self.lock = threading.Lock()

    def build(self, request: BuildRequest) -> BuildResult:
        with self.lock:
            self.builds += 1
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        request.log_path.write_text("STEP 1/2: FROM ...\n")
        return BuildResult(request.image, Status.SUCCEEDED, 0.0, request.log_path, ())

    def push(self, request: BuildRequest) -> PushResult:
        with self.lock:
            self.pushes += 1
            digest = _digest(f"{request.image}-{self.pushes}")
        state = self.harbor.state
        repository = request.image.repository
        state.push(repository, request.image.tag or "latest", digest)
        with state.lock:
            artifact = state.find_artifact(repository, digest)
            if artifact is not None:
                artifact.extra_attrs = {"architecture": "amd64", "os": "linux",
                                        "config": {"Labels": dict(request.labels)}}
                artifact.baseline = (ScanResult.of({"High": 2}, 0) if repository in self.no_fix
                                     else ScanResult())
                artifact.touch()
        return PushResult(request.image, Status.SUCCEEDED, 0.0, request.log_path,
                          digest=digest)


@contextmanager
def _builder(builder: RegistryBuilder) -> Iterator[RegistryBuilder]:
    yield builder


def run_nights(plan: FleetPlan, *, hold: bool, workdir: Path, jobs: int) -> list[dict[str, Any]]:
    """Three nights on a fresh fleet; one row of figures per night."""
    options = SimOptions(scan_delay=ScanDelays(pending=0.0, running=0.0))
    tree = workdir / "tree"
    plan.write_tree(tree)
    upstreams = Upstreams(plan.upstreams)
    republished = "alpine:3.0"
    rows: list[dict[str, Any]] = []
    with SimulatorServer(Fleet.from_dict(plan.fleet()), options) as harbor:
        env = {"CAREEN_HARBOR_URL": harbor.url, "CAREEN_HARBOR_USER": "admin",
               "CAREEN_HARBOR_PASSWORD": "Harbor12345",
               "CAREEN_REGISTRY_SERVER": "registry.bench", "CAREEN_TREE_ROOT": str(tree),
               "CAREEN_OUTPUT_VULNERABLE_LIST": str(workdir / "vulnerable.list"),
               "CAREEN_OUTPUT_REPORTS_DIR": str(workdir / "reports")}
        config = load_config(None, cwd=workdir, environ=env, overrides={})
        for night in (1, 2, 3):
            expected: int | None = None
            if night == 2:
                expected = 0
            if night == 3:
                upstreams.digests[f"docker.io/library/{republished}"] = _digest("republished")
                expected = len(plan.changed_by_republish(republished))
            builder = RegistryBuilder(harbor, plan.no_fix)
            night_options = NightlyOptions(
                jobs=jobs, reports_dir=workdir / "reports", report_formats=("json",),
                rescan_timeout=120, rescan_interval=0.05, notify=False,
                hold=HoldSettings(enabled=hold))
            started = time.perf_counter()
            parts = replace(job_parts(config, open_builder=lambda b=builder: _builder(b)),
                            base_digests=upstreams)
            with StateStore.open(workdir / "state.sqlite") as store:
                outcome = asyncio.run(run_nightly(parts, night_options, store=store,
                                                  observer=NULL_OBSERVER))
            wall = time.perf_counter() - started
            held = sum(1 for item in outcome.plan.attention if item.kind is AttentionKind.HELD)
            rows.append({"night": night, "hold": hold, "builds": builder.builds,
                         "pushes": builder.pushes, "held": held,
                         "inputs_changed": expected, "wall_seconds": wall,
                         "exit_code": int(outcome.exit_code) or (1 if held else 0)})
            say(f"hold {'on' if hold else 'off'}, night {night}: {builder.builds} builds, "
                f"{held} held, {wall:.1f} s")
    return rows


COLUMNS = ("Night", "Hold", "Builds", "Pushes", "Held", "Inputs changed", "Wall s", "Exit")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=None,
                        help=f"images in the fleet (default {DEFAULT_SIZE}, --quick "
                             f"{QUICK_SIZE})")
    parser.add_argument("--jobs", type=int, default=8, help="builds at once (default 8)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where trees and state go (default: a temporary folder)")
    add_common_options(parser, default_repeat=1)
    args = parse_in_user_install(parser, argv, "bench.storm")
    if isinstance(args, int):
        return args
    repeat_of(args, 1)
    size = args.size or (QUICK_SIZE if args.quick else DEFAULT_SIZE)
    if size < 20:
        raise SystemExit("--size: at least 20 images")
    plan = FleetPlan.of(size)
    say(f"{size} images: {len(plan.no_fix)} break the policy without a fix, "
        f"{len(plan.with_fix)} with one")
    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="careen-storm-") as scratch:
        base = args.workdir or Path(scratch)
        for hold in (False, True):
            folder = base / ("hold" if hold else "no-hold")
            folder.mkdir(parents=True, exist_ok=True)
            rows.extend(run_nights(plan, hold=hold, workdir=folder, jobs=args.jobs))
    met = all(row["builds"] == row["inputs_changed"] for row in rows
              if row["hold"] and row["night"] > 1)
    report = {
        "benchmark": "storm", "install": args.install, "machine": machine(), "size": size,
        "breaking": len(plan.no_fix) + len(plan.with_fix), "no_fix": len(plan.no_fix),
        "nights": rows, "duration_seconds": time.perf_counter() - began,
        "targets": [{"target": "nights 2-3 build only images whose inputs changed",
                     "value": ", ".join(str(r["builds"]) for r in rows
                                        if r["hold"] and r["night"] > 1),
                     "baseline": ", ".join(str(r["builds"]) for r in rows
                                           if not r["hold"] and r["night"] > 1),
                     "threshold": ", ".join(str(r["inputs_changed"]) for r in rows
                                            if r["hold"] and r["night"] > 1),
                     "met": met, "note": "builds on nights 2 and 3, hold on (off)"}],
    }
    table = [(str(r["night"]), "on" if r["hold"] else "off (before)", str(r["builds"]),
              str(r["pushes"]), str(r["held"]),
              "-" if r["inputs_changed"] is None else str(r["inputs_changed"]),
              f"{r['wall_seconds']:.1f}", str(r["exit_code"])) for r in rows]
    print_table(f"Three nights of {size} images ({report['breaking']} break the policy, "
                f"{report['no_fix']} without a fix)", COLUMNS, table, report)
    write_outputs(args, report, COLUMNS, table)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
