"""Simulator headroom benchmark (issue 6, benchmark 5): the Harbor simulator is not what
limits benchmark 1.

    python -m bench.simulator                 # 10,000 artifacts, 10 s of load, repeat 3
    python -m bench.simulator --quick         # 1,000 artifacts, 3 s, one run
    python -m bench.simulator --duration 20 --concurrency 128 --json simulator.json

For each Harbor version (2.14: Careen reads the project-wide listing in pages of 100; 2.11:
each repository's listing, 10 artifacts per page here) the simulator serves a generated fleet
from its own process, as in :mod:`bench.inventory`, without added latency. Measured:

- **the simulator's rate**: a plain load generator sending, for ``--duration`` seconds, the
  very request Careen sends most on that version, cycling over every project (2.14) or
  repository (2.11) of the fleet, ``--concurrency`` keep-alive connections with basic auth:
  ``wrk`` (Debian's, in C, one thread) when installed, else a Python loop (asyncio,
  ``httpx.AsyncClient``). Requests per second. A Python loop is itself as CPU-bound as
  Careen (about 2 ms of CPU per request with stock httpx), so it measures the loop, not the
  server: use wrk (``apt-get install wrk``). Either way the figure is a *lower bound* of what
  the simulator serves (the loader takes one of the two CPUs);
- **Careen's rate**: what Careen asked of the same simulator in a whole inventory
  (:func:`bench.inventory.careen_run`, fresh process): its requests over its wall seconds.

Target: the simulator's rate well above Careen's (``headroom`` = the first over the second;
at least 2x).
"""

from __future__ import annotations

import argparse
import sys
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
from bench.inventory import (
    DEFAULT_CONCURRENCY,
    FleetShape,
    Simulator,
    careen_run,
    in_fresh_process,
)
from bench.venv import parse_in_user_install

API = "/api/v2.0"
TARGET_HEADROOM = 2.0
MIME = ("application/vnd.security.vulnerability.report; version=1.1, "
        "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0")


def listing_paths(shape: FleetShape, version: str, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The requests Careen sends most on ``version``: (path, query) for each project's first
    page of 100 (2.14) or each repository's artifacts (2.11)."""
    from urllib.parse import quote

    from careen.sim.harbor import Fleet

    fleet = Fleet.generate(projects=shape.projects,
                           repos_per_project=min(shape.repositories_per_project, 50),
                           artifacts_per_repo=shape.artifacts_per_repository, seed=seed)
    query = {"page": 1, "page_size": 100, "with_tag": "true", "with_scan_overview": "true",
             "with_immutable_status": "true"}
    if version == "2.14":
        return [(f"{API}/projects/{p.name}/artifacts", query) for p in fleet.projects]
    out = []
    for project in fleet.projects:
        for repository in project.repositories:
            below = quote(quote(repository.name, safe=""), safe="")
            out.append((f"{API}/projects/{project.name}/repositories/{below}/artifacts", query))
    return out


def load_loop(url: str, user: str, password: str, paths: list[tuple[str, dict[str, Any]]],
              concurrency: int, duration: float) -> dict[str, Any]:
    """In a client process: ``concurrency`` workers send the requests of ``paths`` round robin
    for ``duration`` seconds; the count of 200 answers and of others."""
    import asyncio

    import httpx

    from bench.inventory import preload_http_stack

    preload_http_stack()

    async def work() -> dict[str, Any]:
        ok = failed = 0
        limits = httpx.Limits(max_connections=concurrency,
                              max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, auth=(user, password), limits=limits,
                                     headers={"X-Accept-Vulnerabilities": MIME,
                                              "X-Is-Resource-Name": "true"},
                                     timeout=30) as client:
            deadline = time.perf_counter() + duration
            start = time.perf_counter()

            async def worker(offset: int) -> None:
                nonlocal ok, failed
                index = offset
                while time.perf_counter() < deadline:
                    path, query = paths[index % len(paths)]
                    index += concurrency
                    response = await client.get(path, params=query)
                    await response.aread()
                    if response.status_code == 200:
                        ok += 1
                    else:
                        failed += 1

            await asyncio.gather(*(worker(i) for i in range(concurrency)))
            seconds = time.perf_counter() - start
        return {"ok": ok, "failed": failed, "seconds": seconds, "rate": ok / seconds,
            "loader": "python"}

    return asyncio.run(work())


def wrk_loop(url: str, user: str, password: str, paths: list[tuple[str, dict[str, Any]]],
             concurrency: int, duration: float) -> dict[str, Any]:
    """The same load with ``wrk`` (C, from Debian): one thread, ``concurrency`` connections.
    The account's Authorization header goes in the Lua script (a private temporary file),
    never in wrk's argv."""
    import base64
    import re
    import shutil
    import subprocess
    import tempfile
    from urllib.parse import urlencode

    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    targets = [f"{path}?{urlencode(query)}" for path, query in paths]
    for target in targets:
        if not re.fullmatch(r"[A-Za-z0-9/%_.=&?-]+", target):
            raise ValueError(f"unexpected characters in {target!r}")
    script = "\n".join([
        'wrk.headers["Authorization"] = "Basic ' + token + '"',
        'wrk.headers["X-Accept-Vulnerabilities"] = "' + MIME + '"',
        'wrk.headers["X-Is-Resource-Name"] = "true"',
        "local paths = {" + ", ".join(f'"{t}"' for t in targets) + "}",
        "local i = 0",
        "request = function()",
        "  i = i + 1",
        '  return wrk.format("GET", paths[(i % #paths) + 1])',
        "end", ""])
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        lua = Path(folder, "load.lua")
        lua.touch(mode=0o600)
        lua.write_text(script, encoding="utf-8")
        done = subprocess.run(
            [wrk, "--threads", "1", "--connections", str(concurrency), "--duration",
             f"{max(1, round(duration))}s", "--timeout", "30s", "--script", str(lua), url + "/"],
            capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-500:]}")
    rate = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", done.stdout)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    if rate is None or total is None:
        raise RuntimeError(f"cannot read wrk's output: {done.stdout[-500:]}")
    seconds = float(total[2]) / (1000 if total[3] == "ms" else 1)
    failed = int(non_2xx[1]) if non_2xx else 0
    requests = int(total[1])
    return {"ok": requests - failed, "failed": failed, "seconds": seconds,
            "rate": (requests - failed) / seconds, "loader": "wrk"}


def measure_version(version: str, size: int, args: argparse.Namespace,
                    repeat: int) -> dict[str, Any]:
    from careen.sim.harbor import Fleet

    admin = next(u for u in Fleet().users if u.admin)
    account = (admin.name, admin.password)
    shape = FleetShape.for_size(size)
    paths = listing_paths(shape, version, args.seed)
    say(f"Harbor {version}: simulator with {shape.artifacts:,} artifacts")
    sim = Simulator(shape, version, args.seed, False)
    try:
        sim.ask("latency", 0.0)
        in_fresh_process(careen_run, sim.url, *account, DEFAULT_CONCURRENCY)  # warm caches
        careen = []
        for _ in range(repeat):
            run = in_fresh_process(careen_run, sim.url, *account, DEFAULT_CONCURRENCY)
            careen.append({"requests": run["requests"], "seconds": run["seconds"],
                           "rate": run["requests"] / run["seconds"]})
        loads = []
        for index in range(repeat):
            say(f"Harbor {version}: load loop {index + 1}/{repeat}, {args.duration:g} s at "
                f"{args.concurrency} in flight")
            sim.ask("reset")
            loop = wrk_loop if args.loader == "wrk" else load_loop
            load = in_fresh_process(loop, sim.url, *account, paths, args.concurrency,
                                    args.duration)
            load["server_requests"] = sim.ask("stats")
            loads.append(load)
    finally:
        sim.stop()
    careen_rate = median([c["rate"] for c in careen])
    sim_rate = median([x["rate"] for x in loads])
    return {"version": version, "artifacts": shape.artifacts,
            "endpoint": "project artifacts, page of 100" if version == "2.14"
            else "repository artifacts (10 per repository)",
            "load": {"runs": loads, "rate": sim_rate,
                     "failed": sum(x["failed"] for x in loads)},
            "careen": {"runs": careen, "rate": careen_rate,
                       "requests": careen[0]["requests"],
                       "seconds": median([c["seconds"] for c in careen])},
            "headroom": sim_rate / careen_rate}


COLUMNS = ("Harbor", "Artifacts", "Endpoint", "Simulator req/s (load loop)", "Failed",
           "Careen req/s (benchmark 1)", "Careen req", "Careen s", "Headroom")


def rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    return [(c["version"], f"{c['artifacts']:,}", c["endpoint"], f"{c['load']['rate']:,.0f}",
             str(c["load"]["failed"]), f"{c['careen']['rate']:,.0f}",
             f"{c['careen']['requests']:,}", f"{c['careen']['seconds']:.2f}",
             f"{c['headroom']:.1f}x") for c in report["cases"]]


def targets(cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"target": f"simulator rate over Careen's, Harbor {c['version']}",
             "value": f"{c['headroom']:.1f}x ({c['load']['rate']:,.0f} vs "
                      f"{c['careen']['rate']:,.0f} req/s)",
             "baseline": f"{c['careen']['rate']:,.0f} req/s (Careen)",
             "threshold": f">= {TARGET_HEADROOM:g}x", "met": c["headroom"] >= TARGET_HEADROOM}
            for c in cases]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator",
                                     description="The Harbor simulator's request rate under "
                                                 "a plain load loop, against Careen's.")
    parser.add_argument("--size", type=int, default=None, metavar="N",
                        help="artifacts (default 10000, --quick 1000)")
    parser.add_argument("--versions", nargs="+", choices=("2.14", "2.11"),
                        default=["2.14", "2.11"])
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of load per run (default 10, --quick 3)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="requests in flight in the load loop (default 16, as Careen)")
    parser.add_argument("--loader", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk (Debian's, in C) or the Python loop; "
                             "auto: wrk when installed")
    parser.add_argument("--seed", type=int, default=0)
    add_common_options(parser, default_repeat=3)
    args = parse_in_user_install(parser, argv, "bench.simulator")
    if isinstance(args, int):
        return args
    repeat = repeat_of(args, 3)
    if args.loader == "auto":
        import shutil

        args.loader = "wrk" if shutil.which("wrk") else "python"
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    size = args.size or (1_000 if args.quick else 10_000)
    if args.duration <= 0 or not 1 <= args.concurrency <= 1024 or size < 10:
        parser.error("--duration, --concurrency or --size out of range")
    started = time.time()
    cases = [measure_version(version, size, args, repeat) for version in args.versions]
    report = {**report_head("simulator", args.install, started),
              "config": {"size": size, "versions": args.versions, "duration": args.duration,
                         "concurrency": args.concurrency, "repeat": repeat,
                         "loader": args.loader},
              "cases": cases, "targets": targets(cases)}
    table = rows(report)
    print_table(f"Simulator headroom (median of {repeat})", COLUMNS, table, report)
    write_outputs(args, report, COLUMNS, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
