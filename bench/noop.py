"""No-op night benchmark (issue 6, benchmark 4): a second ``careen run`` when nothing changed.

    python -m bench.noop                      # 10,000 artifacts, repeat 3
    python -m bench.noop --quick              # 1,000 artifacts, one run
    python -m bench.noop --size 10000 --repeat 5 --json noop.json

A Harbor simulator (its own process, as in :mod:`bench.inventory`) serves a *clean* fleet:
nothing breaks the default policy (``vulnerable_share=0``; a few images are never scanned,
which the default ``unscanned = report`` lists without selecting). Measured, median of
``--repeat``:

- **inventory alone**: :func:`bench.inventory.careen_run` in a fresh process (open the client,
  read every artifact, judge every image, close), timed inside that process;
- **careen run**: the CLI, ``python -m careen run --state DB --reports-dir DIR --root TREE``
  as a subprocess (configuration in ``CAREEN_*`` environment variables: the Harbor URL, user
  and password of the simulator; an empty Dockerfile tree). One untimed run first fills the
  state, so each timed run is a *second* run. Its whole wall time includes starting Python
  and importing Careen, so the benchmark also times ``python -m careen --help`` (start-up
  alone) and reads the run's own span from its JSON report (``finished_at - started_at``).

Figures: wall seconds, requests the simulator served per run, builds and pushes (from the run's
report: ``counts.planned``, ``counts.rebuilt``, ``counts.failed``). Target: zero builds, zero
pushes, and the run takes the time of the inventory alone (its span at most 1.2x the
inventory's; the start-up is shown apart).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
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
from bench.inventory import DEFAULT_CONCURRENCY, FleetShape, Simulator, careen_run, in_fresh_process
from bench.venv import parse_in_user_install

DEFAULT_SIZE = 10_000
QUICK_SIZE = 1_000
#: "In the time of the inventory alone": the run's own span over the inventory's, at most.
TARGET_RATIO = 1.2


def careen_env(url: str, user: str, password: str, tree: Path) -> dict[str, str]:
    """The environment of a ``careen run``: this one without any CAREEN_ setting, plus the
    simulator's address and account (secrets in the environment, never in argv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREEN_")}
    env.update(CAREEN_HARBOR_URL=url, CAREEN_HARBOR_USER=user,
               CAREEN_HARBOR_PASSWORD=password, CAREEN_TREE_ROOT=str(tree))
    return env


def run_cli(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "careen", *argv], env=env, cwd=cwd,
                          capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done.returncode, done.stderr[-2000:]


def report_facts(reports: Path) -> dict[str, Any]:
    """Builds, pushes and the run's own span from its JSON report."""
    document = json.loads((reports / "careen.json").read_text(encoding="utf-8"))
    counts = document.get("counts") or {}
    span = (datetime.fromisoformat(document["finished_at"])
            - datetime.fromisoformat(document["started_at"])).total_seconds()
    return {"span_seconds": span, "judged": document.get("judged"),
            "planned": counts.get("planned", 0),
            "builds": counts.get("rebuilt", 0) + counts.get("failed", 0),
            "pushes": counts.get("rebuilt", 0), "run_id": document.get("run_id")}


def measure(size: int, repeat: int, seed: int, workdir: Path) -> dict[str, Any]:
    from careen.sim.harbor import Fleet

    admin = next(u for u in Fleet().users if u.admin)
    account = (admin.name, admin.password)
    shape = FleetShape.for_size(size)
    say(f"no-op night: starting a simulator with {shape.artifacts:,} clean artifacts")
    sim = Simulator(shape, "2.14", seed, False, vulnerable_share=0.0)
    base = Path(tempfile.mkdtemp(prefix="noop-", dir=workdir))
    tree, reports, state = base / "tree", base / "reports", base / "state.db"
    tree.mkdir()
    env = careen_env(sim.url, *account, tree)
    argv = ["run", "--state", str(state), "--reports-dir", str(reports)]
    try:
        sim.ask("latency", 0.0)
        in_fresh_process(careen_run, sim.url, *account, DEFAULT_CONCURRENCY)  # warm-up
        inventory = []
        for _ in range(repeat):
            sim.ask("reset")
            run = in_fresh_process(careen_run, sim.url, *account, DEFAULT_CONCURRENCY)
            run["server_requests"] = sim.ask("stats")
            inventory.append(run)
        say("no-op night: first careen run (untimed: fills the state)")
        seconds, code, stderr = run_cli(argv, env, base)
        if code != 0:
            raise RuntimeError(f"careen run exited {code}: {stderr}")
        startups = [run_cli(["--help"], env, base)[0] for _ in range(repeat)]
        runs = []
        for index in range(repeat):
            say(f"no-op night: second careen run {index + 1}/{repeat}")
            sim.ask("reset")
            seconds, code, stderr = run_cli(argv, env, base)
            if code != 0:
                raise RuntimeError(f"careen run exited {code}: {stderr}")
            runs.append({"seconds": seconds, "exit_code": code,
                         "server_requests": sim.ask("stats"), **report_facts(reports)})
    finally:
        sim.stop()
    inventory_seconds = median([r["seconds"] for r in inventory])
    span = median([r["span_seconds"] for r in runs])
    return {
        "artifacts": shape.artifacts, "inventory": {
            "runs": inventory, "seconds": inventory_seconds,
            "requests": inventory[0]["requests"], "images": inventory[0]["images"],
            "selected": inventory[0]["selected"]},
        "run": {"runs": runs, "seconds": median([r["seconds"] for r in runs]),
                "span_seconds": span, "startup_seconds": median(startups),
                "server_requests": runs[0]["server_requests"],
                "builds": max(r["builds"] for r in runs),
                "pushes": max(r["pushes"] for r in runs),
                "planned": max(r["planned"] for r in runs), "judged": runs[0]["judged"]},
        "span_ratio": span / inventory_seconds,
    }


def targets(case: dict[str, Any]) -> list[dict[str, Any]]:
    run = case["run"]
    return [
        {"target": "builds and pushes in a second run with nothing to do",
         "value": f"{run['builds']} builds, {run['pushes']} pushes", "baseline": "-",
         "threshold": "0 and 0", "met": run["builds"] == 0 and run["pushes"] == 0},
        {"target": "the run takes the time of the inventory alone",
         "value": f"{run['span_seconds']:.2f} s ({case['span_ratio']:.2f}x)",
         "baseline": f"{case['inventory']['seconds']:.2f} s (inventory alone)",
         "threshold": f"<= {TARGET_RATIO:g}x", "met": case["span_ratio"] <= TARGET_RATIO,
         "note": f"whole process {run['seconds']:.2f} s, of which Python + Careen start-up "
                 f"{run['startup_seconds']:.2f} s"},
    ]


COLUMNS = ("Artifacts", "Inventory s", "Inventory req", "Run s (process)", "Start-up s",
           "Run span s", "Span / inventory", "Run req", "Judged", "Planned", "Builds",
           "Pushes")


def rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    case = report["case"]
    inv, run = case["inventory"], case["run"]
    return [(f"{case['artifacts']:,}", f"{inv['seconds']:.2f}", f"{inv['requests']:,}",
             f"{run['seconds']:.2f}", f"{run['startup_seconds']:.2f}",
             f"{run['span_seconds']:.2f}", f"{case['span_ratio']:.2f}x",
             f"{run['server_requests']:,}", f"{run['judged']:,}", str(run["planned"]),
             str(run["builds"]), str(run["pushes"]))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.noop",
                                     description="A second careen run with nothing to do, "
                                                 "against the inventory alone.")
    parser.add_argument("--size", type=int, default=None, metavar="N",
                        help=f"artifacts (default {DEFAULT_SIZE}, --quick {QUICK_SIZE})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    add_common_options(parser, default_repeat=3)
    args = parse_in_user_install(parser, argv, "bench.noop")
    if isinstance(args, int):
        return args
    repeat = repeat_of(args, 3)
    size = args.size or (QUICK_SIZE if args.quick else DEFAULT_SIZE)
    if size < 10:
        parser.error("--size: at least 10 artifacts")
    started = time.time()
    case = measure(size, repeat, args.seed, args.workdir or Path(tempfile.gettempdir()))
    report = {**report_head("noop", args.install, started),
              "config": {"size": size, "repeat": repeat, "seed": args.seed}, "case": case,
              "targets": targets(case)}
    table = rows(report)
    print_table(f"No-op night: second careen run vs inventory alone (median of {repeat})",
                COLUMNS, table, report)
    write_outputs(args, report, COLUMNS, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
