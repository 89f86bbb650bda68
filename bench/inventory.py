"""Inventory benchmark: Careen's concurrent paged crawl against the seed's one request per image.

    python -m bench.inventory                 # 1,000 / 10,000 / 100,000 artifacts, repeat 3
    python -m bench.inventory --quick         # 1,000 and 10,000, repeat 1 (a few minutes)
    python -m bench.inventory --json bench/results/inventory.json --markdown table.md
    python -m bench.inventory --seed-client   # the seed's own client on Harbor 1.x, 100 images

For each Harbor version (2.14: project-wide artifact listing; 2.11: per-repository listing)
and fleet size, a Harbor simulator serves a generated fleet (10 artifacts per repository,
several projects) from its own process, and for each added latency (none, 20 ms per request)
it measures, in a fresh client process per run:

- Careen: ``open_harbor`` + ``find_vulnerable`` with the default policy, concurrency 16;
- the baseline (:mod:`bench.seed_client`): the seed's sequential ``harbor list`` + one
  ``harbor show`` per image against the same server.

Three processes, not threads: the simulator, the client being measured and this driver. The
simulator is pure Python (uvicorn + asyncio); in the client's process it would share the GIL
with the client and each would slow the other down, so a figure would say as much about the
simulator as about the client. In its own process the server stands where Harbor stands: on
the other side of a socket. Each run gets a fresh ``spawn``-ed process, so its peak RSS
(``VmHWM``) is the client's alone and no run inherits a warm heap from the one before.

Wall time is measured inside the client process around the work only (open the client, read
everything, apply the policy, close), not the interpreter start or imports. Figures are the
median of ``--repeat`` runs. The simulator's caches are warmed by one untimed Careen run before
any measurement, so the first measured run is not charged for them.

``--seed-client`` measures the seed's real way instead, on the seed's Harbor: Harbor 1.6
(the simulator's 1.x API) serving one project of about ``--images`` images, and
python-harborclient itself (:func:`bench.seed_client.install_harborclient`) run as the seed's
script ran it: ``harbor list | awk | egrep``, then ``harbor show | grep | awk`` per image,
processes joined by pipes (:func:`bench.seed_client.run_seed_pipeline`), against one Careen
run; requests are counted by the simulator, for both.

The baseline runs first on a sample (``--sample-images``, whole repositories until that many
images were shown); its full time is projected from it (the listing phase as measured plus the
sample's time per request times the requests left, which are known exactly from the fleet).
When the projection exceeds ``--baseline-budget`` seconds the baseline is not run in full and
its figures are reported as *projected*, never as measured. Where it is run in full the
projection is kept beside the measurement, so the projection's accuracy can be checked.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# Top-level imports are the standard library only: every client process re-imports this
# module (``spawn``), and its peak RSS must be the client's, not the simulator's or rich's.

ARTIFACTS_PER_REPOSITORY = 10
#: Harbor versions benchmarked: the version string the simulator reports for each.
HARBOR_VERSIONS = {"2.14": "2.14.0", "2.11": "2.11.0"}
PAGE = 100
DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
DEFAULT_LATENCIES = (0.0, 0.020)
DEFAULT_CONCURRENCY = 16
#: The seed's Harbor, for ``--seed-client`` (python-harborclient speaks only the 1.x API).
SEED_HARBOR_VERSIONS = {"1.6": "1.6.3"}
SEED_CLIENT_IMAGES = 100
SEED_CLIENT_LATENCY = 0.020

# Targets (issue 3 and 6).
TARGET_SECONDS_10K_20MS = 3.0
TARGET_SPEEDUP_20MS = 50.0
TARGET_SPEEDUP_NO_LATENCY = 5.0
TARGET_REQUEST_EXCESS = 0.02
TARGET_RSS_MB_100K = 150.0
# Issue 16: Careen as users install it, against a plain concurrent crawler.
TARGET_USER_WALL_RATIO = 1.3
TARGET_USER_CPU_RATIO = 2.5


# -- the fleet ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FleetShape:
    """How a fleet of about ``size`` artifacts is laid out: 10 artifacts per repository and
    more projects for larger fleets (5 up to 1,000 artifacts, 10 up to 10,000, 20 above)."""

    projects: int
    repositories_per_project: int
    artifacts_per_repository: int = ARTIFACTS_PER_REPOSITORY

    @classmethod
    def for_size(cls, size: int) -> FleetShape:
        if size < ARTIFACTS_PER_REPOSITORY:
            raise SystemExit(f"--sizes: {size} is fewer than one repository of "
                             f"{ARTIFACTS_PER_REPOSITORY} artifacts")
        projects = 5 if size <= 1_000 else 10 if size <= 10_000 else 20
        projects = min(projects, size // ARTIFACTS_PER_REPOSITORY)
        repositories = max(1, round(size / (ARTIFACTS_PER_REPOSITORY * projects)))
        return cls(projects, repositories)

    @property
    def artifacts(self) -> int:
        return self.projects * self.repositories_per_project * self.artifacts_per_repository


@dataclass(frozen=True, slots=True)
class FleetFacts:
    """What the generated fleet holds, and the request counts that follow from it."""

    artifacts: int
    projects: int
    repositories: int
    images: int
    tagged_images: int
    #: Fewest requests to list everything with scan overviews where Harbor has the
    #: project-wide listing (2.12+): project pages + ceil(artifacts/100) per project.
    minimum_project_wide: int
    #: Without it: project pages + repository pages + ceil(artifacts/100) per repository.
    minimum_per_repository: int
    #: The baseline: listing projects and repositories (phase 1) and in all.
    seed_list_requests: int
    seed_requests: int

    def minimum_requests(self, version: str) -> int:
        project_wide = tuple(int(p) for p in version.split(".")[:2]) >= (2, 12)
        return self.minimum_project_wide if project_wide else self.minimum_per_repository


def pages(count: int) -> int:
    """Pages of 100 a listing of ``count`` items takes (an empty listing is still asked)."""
    return max(1, math.ceil(count / PAGE))


def fleet_facts(fleet: Any) -> FleetFacts:
    """Count ``fleet`` (a :class:`careen.sim.harbor.Fleet`)."""
    project_pages = pages(len(fleet.projects))
    project_wide = per_repository = project_pages
    seed_list, seed_images = project_pages, 0
    artifacts = images = tagged = repositories = 0
    for project in fleet.projects:
        in_project = 0
        seed_list += pages(len(project.repositories))
        per_repository += pages(len(project.repositories))
        for repository in project.repositories:
            repositories += 1
            count = len(repository.artifacts)
            in_project += count
            if count:
                per_repository += pages(count)
            tags = sum(len(a.tags) for a in repository.artifacts)
            tagged += tags
            images += sum(max(1, len(a.tags)) for a in repository.artifacts)
            seed_images += pages(count) + tags
        artifacts += in_project
        project_wide += pages(in_project)
    return FleetFacts(artifacts=artifacts, projects=len(fleet.projects),
                      repositories=repositories, images=images, tagged_images=tagged,
                      minimum_project_wide=project_wide, minimum_per_repository=per_repository,
                      seed_list_requests=seed_list, seed_requests=seed_list + seed_images)


# -- the simulator process -----------------------------------------------------------------------

def serve_fleet(conn: Connection, shape: FleetShape, version: str, seed: int,
                stock: bool, vulnerable_share: float = 0.3) -> None:
    """The simulator process: generate the fleet, serve it, obey the driver's commands
    (``latency SECONDS``, ``reset``, ``stats``, ``stop``) until told to stop."""
    from dataclasses import replace

    from careen.sim.harbor import Fleet, SimOptions, SimulatorServer, build_app

    fleet = Fleet.generate(projects=shape.projects,
                           repos_per_project=shape.repositories_per_project,
                           artifacts_per_repo=shape.artifacts_per_repository, seed=seed,
                           harbor_version=HARBOR_VERSIONS.get(version)
                           or SEED_HARBOR_VERSIONS[version],
                           vulnerable_share=vulnerable_share)
    facts = fleet_facts(fleet)
    if stock:
        server = SimulatorServer(fleet, SimOptions()).start()
        app, url, stop = server.app, server.url, server.stop
    else:
        app = build_app(fleet, SimOptions())
        url, stop = serve_without_nagle(app)
    try:
        conn.send((url, asdict(facts)))  # plain data: no class crosses the pipe
        while True:
            command, argument = conn.recv()
            if command == "latency":
                # Read on every request, so this takes effect for the next one.
                app.options = replace(app.options, latency=float(argument))
                conn.send(None)
            elif command == "reset":
                app.stats.reset()
                conn.send(None)
            elif command == "stats":
                conn.send(app.stats.total)
            else:
                conn.send(None)
                return
    finally:
        stop()


def serve_without_nagle(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve ``app`` like :class:`careen.sim.harbor.SimulatorServer` does (uvicorn, h11,
    asyncio, in a thread), but on a socket made with ``IPPROTO_TCP``.

    Why: ``SimulatorServer.start`` makes its listening socket with protocol 0, and asyncio
    sets ``TCP_NODELAY`` only on sockets whose ``proto`` is ``IPPROTO_TCP``
    (``asyncio.base_events._set_nodelay``). Its connections therefore keep Nagle's algorithm:
    uvicorn writes a response's head and body separately, the body waits for the client's
    delayed ACK, and every request takes about 40 ms more on Linux, whatever the client. Real
    Harbor (Go's net/http) sets TCP_NODELAY. ``--stock-server`` measures the stock server.
    """
    import asyncio
    import socket
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            http="h11", loop="asyncio", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              name="harbor-sim", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Harbor simulator did not start")
        time.sleep(0.005)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


class Simulator:
    """The driver's handle on a simulator process."""

    def __init__(self, shape: FleetShape, version: str, seed: int, stock: bool,
                 vulnerable_share: float = 0.3) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=serve_fleet,
                                        args=(child, shape, version, seed, stock,
                                              vulnerable_share),
                                        name=f"harbor-sim-{version}", daemon=True)
        self._process.start()
        child.close()
        if not self._conn.poll(300):
            self.stop()
            raise RuntimeError("the Harbor simulator did not start within 300 s")
        self.url, facts = self._conn.recv()
        self.facts = FleetFacts(**facts)

    def ask(self, command: str, argument: float = 0.0) -> Any:
        self._conn.send((command, argument))
        return self._conn.recv()

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(EOFError, OSError):
                self.ask("stop")
            self._process.join(30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()


# -- the client processes ------------------------------------------------------------------------

def peak_rss_kb() -> int:
    """This process's peak resident set size (``VmHWM``), in KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def selection_digest(references: Sequence[str]) -> str:
    """A short fingerprint of a selection, to check two tools selected the same images."""
    return hashlib.sha256("\n".join(sorted(references)).encode()).hexdigest()[:16]


def preload_http_stack() -> None:
    """Import what httpx imports on first use (httpcore when a transport is made, anyio and
    its asyncio backend on the first connection), so that neither tool's timed work includes
    module imports: a fresh process per run would otherwise charge them to each run."""
    import anyio._backends._asyncio  # noqa: F401
    import h11  # noqa: F401
    import httpcore  # noqa: F401


def careen_run(url: str, user: str, password: str, concurrency: int) -> dict[str, Any]:
    """One Careen run (in a client process): open the client, judge every image with the
    default policy, close. Timed around exactly that."""
    import asyncio

    from pydantic import SecretStr

    from careen.policy import Policy
    from careen.registries.harbor import HarborSettings, open_harbor
    from careen.vulnerable import find_vulnerable

    preload_http_stack()
    settings = HarborSettings(url, user=user, password=SecretStr(password),
                              concurrency=concurrency)
    policy = Policy()

    async def work() -> dict[str, Any]:
        start, cpu = time.perf_counter(), time.process_time()
        client = await open_harbor(settings)
        # What version detection sent (GET /systeminfo), apart from the listing itself.
        probe = client.stats.requests
        try:
            selection = await find_vulnerable(client, policy)
        finally:
            await client.aclose()
        wall, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        tagged = [image.reference.short for image, _ in selection.selected
                  if image.reference.tag is not None]
        return {"seconds": wall, "cpu_seconds": cpu_seconds,
                "requests": client.stats.requests, "probe_requests": probe,
                "listing_requests": client.stats.requests - probe,
                "retries": client.stats.retries, "images": selection.total,
                "selected": len(selection.selected), "selected_tagged": len(tagged),
                "selection": selection_digest(tagged)}

    return asyncio.run(work())


def seed_run(url: str, user: str, password: str, max_images: int | None) -> dict[str, Any]:
    """One baseline run (in a client process), complete or a sample of ``max_images``."""
    from bench.seed_client import run_seed_client
    from careen.policy import Policy

    preload_http_stack()
    cpu = time.process_time()
    run = run_seed_client(url, user, password, Policy(), max_images=max_images)
    cpu_seconds = time.process_time() - cpu
    result = {k: v for k, v in asdict(run).items() if k != "selected"}
    result.update(seconds=run.seconds, cpu_seconds=cpu_seconds, selected=len(run.selected),
                  selection=selection_digest(run.selected))
    return result


def _usage_of(argv: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv`` to its end: wall seconds, CPU seconds (user + system) and peak RSS of that
    process alone, from the kernel's accounting (``wait4``), start-up included."""
    import subprocess
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=err,
                                   cwd=Path(__file__).resolve().parent.parent)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode not in (0, 1):  # 1: images break the policy
        raise RuntimeError(f"{argv[0]} exited {process.returncode}: {stderr[-2000:]}")
    if not stdout.strip():
        raise RuntimeError(f"{argv[0]} printed nothing (exit {process.returncode}): "
                           f"{stderr[-2000:]}")
    return {"seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": stdout}


def user_install_run(python: Path, url: str, user: str, password: str) -> dict[str, Any]:
    """``careen images --format json`` from a plain ``pip install .`` venv, as a user runs it:
    start-up, version detection, the whole listing, the JSON."""
    careen = python.parent / "careen"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
           "CAREEN_HARBOR_URL": url, "CAREEN_HARBOR_USER": user,
           "CAREEN_HARBOR_PASSWORD": password}
    run = _usage_of([str(careen), "images", "--format", "json"], env)
    rows = json.loads(run.pop("stdout"))
    selected = [row["image"] for row in rows if ":" in row["image"].rsplit("/", 1)[-1]
                and "@" not in row["image"]
                and ((row.get("critical") or 0) > 0 or (row.get("high") or 0) > 0
                     or (row.get("medium") or 0) >= 3)]
    run.update(artifacts=len(rows), selected_tagged=len(selected),
               selection=selection_digest(selected))
    return run


def crawler_run(url: str, user: str, password: str) -> dict[str, Any]:
    """The plain 16-thread urllib crawler (:mod:`bench.crawler`) in a process of its own."""
    env = {"PATH": os.environ.get("PATH", ""), "CRAWLER_PASSWORD": password}
    run = _usage_of([sys.executable, "-m", "bench.crawler", url, user], env)
    run.update(json.loads(run.pop("stdout").strip().splitlines()[-1]))
    return run


def measure_user_install(sim: Simulator, account: tuple[str, str], config: BenchConfig,
                         python: Path) -> dict[str, Any]:
    """Pairs of (Careen from a user's install, plain crawler), alternating, median of each."""
    careen_runs, crawler_runs = [], []
    for _ in range(max(config.repeat, 1)):
        sim.ask("reset")
        careen_runs.append(user_install_run(python, sim.url, *account))
        sim.ask("reset")
        crawler_runs.append(crawler_run(sim.url, *account))

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"seconds": median([r["seconds"] for r in runs]),
                "cpu_seconds": median([r["cpu_seconds"] for r in runs]),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "selection": runs[0]["selection"], "selected": runs[0]["selected_tagged"],
                "runs": runs}

    careen, crawler = summary(careen_runs), summary(crawler_runs)
    return {"careen_cli": careen, "crawler": crawler,
            "wall_ratio": careen["seconds"] / crawler["seconds"],
            "cpu_ratio": careen["cpu_seconds"] / max(crawler["cpu_seconds"], 1e-9),
            "selection_match": careen["selection"] == crawler["selection"]}


def _child_main(conn: Connection, function: Callable[..., dict[str, Any]],
                args: tuple[Any, ...]) -> None:
    try:
        result = function(*args)
    except BaseException as error:  # reported to the driver, which stops the benchmark
        conn.send({"error": f"{type(error).__name__}: {error}"})
        raise
    result["peak_rss_kb"] = peak_rss_kb()
    conn.send(result)


def in_fresh_process(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``function(*args)`` in a new ``spawn``-ed process; its result with the process's
    peak RSS. Arguments travel through a pipe, never the command line."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(sender, function, args),
                              name=f"bench-{function.__name__}")
    process.start()
    sender.close()
    try:
        result: dict[str, Any] = receiver.recv()
    except EOFError:
        result = {"error": f"the client process ended with code {process.exitcode}"}
    process.join()
    receiver.close()
    if "error" in result:
        raise RuntimeError(f"{function.__name__} failed: {result['error']}")
    return result


# -- the driver ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BenchConfig:
    sizes: tuple[int, ...] = DEFAULT_SIZES
    latencies: tuple[float, ...] = DEFAULT_LATENCIES
    versions: tuple[str, ...] = tuple(HARBOR_VERSIONS)
    repeat: int = 3
    concurrency: int = DEFAULT_CONCURRENCY
    baseline_budget: float = 120.0
    sample_images: int = 500
    seed: int = 0
    stock_server: bool = False
    #: The python of a plain ``pip install .`` venv (:mod:`bench.venv`): Careen's command line
    #: from there is measured against the plain crawler (:mod:`bench.crawler`). None: skipped.
    user_python: str | None = None


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def measure_careen(sim: Simulator, account: tuple[str, str], config: BenchConfig,
                   ) -> dict[str, Any]:
    runs = []
    for _ in range(config.repeat):
        sim.ask("reset")
        run = in_fresh_process(careen_run, sim.url, *account, config.concurrency)
        run["server_requests"] = sim.ask("stats")
        runs.append(run)
    seconds = median([r["seconds"] for r in runs])
    return {"runs": runs, "seconds": seconds,
            "cpu_seconds": median([r["cpu_seconds"] for r in runs]),
            "requests": runs[0]["requests"],
            "probe_requests": runs[0]["probe_requests"],
            "listing_requests": runs[0]["listing_requests"],
            "server_requests": runs[0]["server_requests"],
            "peak_rss_mb": max(r["peak_rss_kb"] for r in runs) / 1024,
            "images": runs[0]["images"], "selected": runs[0]["selected"],
            "selected_tagged": runs[0]["selected_tagged"], "selection": runs[0]["selection"]}


def measure_baseline(sim: Simulator, account: tuple[str, str], config: BenchConfig,
                     ) -> dict[str, Any]:
    facts: FleetFacts = sim.facts
    sim.ask("reset")
    sample = in_fresh_process(seed_run, sim.url, *account, config.sample_images)
    sample["server_requests"] = sim.ask("stats")
    if sample["complete"]:
        projected = sample["seconds"]
    else:
        per_request = sample["image_seconds"] / max(1, sample["image_requests"])
        projected = (sample["list_seconds"]
                     + per_request * (facts.seed_requests - sample["list_requests"]))
    result: dict[str, Any] = {
        "sample": sample, "projected_seconds": projected,
        "requests": facts.seed_requests, "sample_peak_rss_mb": sample["peak_rss_kb"] / 1024}
    if projected > config.baseline_budget:
        result.update(status="projected", seconds=projected,
                      note=f"projected from a measured sample of {sample['images']} images "
                           f"({sample['requests']} requests, {sample['seconds']:.2f} s): "
                           f"over the {config.baseline_budget:g} s budget, not run in full")
        return result
    runs = []
    for _ in range(config.repeat):
        sim.ask("reset")
        run = in_fresh_process(seed_run, sim.url, *account, None)
        run["server_requests"] = sim.ask("stats")
        runs.append(run)
    seconds = median([r["seconds"] for r in runs])
    result.update(status="measured", runs=runs, seconds=seconds,
                  cpu_seconds=median([r["cpu_seconds"] for r in runs]),
                  requests=runs[0]["requests"], server_requests=runs[0]["server_requests"],
                  peak_rss_mb=max(r["peak_rss_kb"] for r in runs) / 1024,
                  images=runs[0]["images"], selected=runs[0]["selected"],
                  selection=runs[0]["selection"],
                  projection_error=(projected - seconds) / seconds if seconds else None)
    return result


def measure_case(sim: Simulator, version: str, latency: float, account: tuple[str, str],
                 config: BenchConfig, say: Callable[[str], None]) -> dict[str, Any]:
    facts: FleetFacts = sim.facts
    sim.ask("latency", latency)
    label = f"Harbor {version}, {facts.artifacts:,} artifacts, {latency * 1000:g} ms"
    say(f"{label}: Careen x{config.repeat}")
    careen = measure_careen(sim, account, config)
    say(f"{label}: Careen {careen['seconds']:.2f} s; baseline")
    baseline = measure_baseline(sim, account, config)
    say(f"{label}: baseline {baseline['seconds']:.2f} s ({baseline['status']})")
    user = None
    if config.user_python is not None:
        say(f"{label}: careen images from a user's install against the plain crawler")
        user = measure_user_install(sim, account, config, Path(config.user_python))
        say(f"{label}: careen images {user['careen_cli']['seconds']:.2f} s, crawler "
            f"{user['crawler']['seconds']:.2f} s")
    minimum = facts.minimum_requests(version)
    bound = careen["requests"] * latency / config.concurrency if latency > 0 else None
    match = (baseline["selection"] == careen["selection"]
             if baseline["status"] == "measured" else None)
    return {
        "version": version, "artifacts": facts.artifacts, "latency_ms": latency * 1000,
        "fleet": asdict(facts), "careen": careen, "baseline": baseline, "user_install": user,
        "minimum_requests": minimum, "request_ratio": careen["requests"] / minimum,
        "artifacts_per_second": facts.artifacts / careen["seconds"],
        "baseline_artifacts_per_second": facts.artifacts / baseline["seconds"],
        "latency_bound_seconds": bound,
        "latency_bound_ratio": careen["seconds"] / bound if bound else None,
        "speedup": baseline["seconds"] / careen["seconds"],
        "speedup_basis": baseline["status"], "selection_match": match,
    }


def run_benchmark(config: BenchConfig, say: Callable[[str], None]) -> dict[str, Any]:
    from careen.sim.harbor import Fleet

    admin = next(u for u in Fleet().users if u.admin)  # the simulator's lab account
    account = (admin.name, admin.password)
    cases = []
    started = time.time()
    for version in config.versions:
        for size in config.sizes:
            shape = FleetShape.for_size(size)
            say(f"Harbor {version}: starting a simulator with {shape.artifacts:,} artifacts")
            sim = Simulator(shape, version, config.seed, config.stock_server)
            try:
                sim.ask("latency", 0.0)
                in_fresh_process(careen_run, sim.url, *account, config.concurrency)  # warm-up
                for latency in config.latencies:
                    cases.append(measure_case(sim, version, latency, account, config, say))
            finally:
                sim.stop()
    report = {"benchmark": "inventory", "started": time.strftime(
                  "%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
              "duration_seconds": time.time() - started, "machine": machine(),
              "config": asdict(config), "server": "SimulatorServer (stock)"
              if config.stock_server else "careen.sim.harbor app, uvicorn, TCP_NODELAY",
              "cases": cases}
    report["targets"] = targets(report)
    return report


def run_seed_client_benchmark(images: int, latency: float, harborclient_dir: Path,
                              config: BenchConfig, say: Callable[[str], None]
                              ) -> dict[str, Any]:
    """The seed's own client against Careen on the seed's Harbor (1.6), one run each."""
    from bench.seed_client import install_harborclient, run_seed_pipeline
    from careen.sim.harbor import Fleet

    admin = next(u for u in Fleet().users if u.admin)
    account = (admin.name, admin.password)
    say(f"python-harborclient: installing into {harborclient_dir} (once)")
    cli = install_harborclient(harborclient_dir)
    shape = FleetShape(projects=1, repositories_per_project=max(1, round(images / 10)))
    started = time.time()
    say(f"Harbor 1.6: starting a simulator with {shape.artifacts:,} artifacts")
    sim = Simulator(shape, "1.6", config.seed, config.stock_server)
    try:
        sim.ask("latency", 0.0)
        in_fresh_process(careen_run, sim.url, *account, config.concurrency)  # warm-up
        sim.ask("latency", latency)
        sim.ask("reset")
        say(f"Harbor 1.6, {latency * 1000:g} ms: Careen")
        careen = in_fresh_process(careen_run, sim.url, *account, config.concurrency)
        careen["server_requests"] = sim.ask("stats")
        sim.ask("reset")
        say(f"Harbor 1.6, {latency * 1000:g} ms: Careen {careen['seconds']:.2f} s; "
            "the seed's client (one process per harbor call)")
        seed = run_seed_pipeline(cli, sim.url, *account, project_id=1)
        seed_requests = sim.ask("stats")
    finally:
        sim.stop()
    say(f"the seed's client: {seed.seconds:.1f} s")
    selection = selection_digest(seed.selected)
    return {"benchmark": "inventory --seed-client", "started": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "duration_seconds": time.time() - started, "machine": machine(),
            "harbor": SEED_HARBOR_VERSIONS["1.6"], "latency_ms": latency * 1000,
            "artifacts": shape.artifacts, "careen": careen,
            "seed": {"seconds": seed.seconds, "list_seconds": seed.list_seconds,
                     "show_seconds": seed.show_seconds, "images": len(seed.images),
                     "seconds_per_image": seed.seconds / max(1, len(seed.images)),
                     "processes": seed.processes, "requests": seed_requests,
                     "selected": len(seed.selected), "selection": selection},
            "speedup": seed.seconds / careen["seconds"],
            "selection_match": selection == careen["selection"]}


def print_seed_client_report(report: dict[str, Any]) -> None:
    careen, seed = report["careen"], report["seed"]
    print(f"Harbor {report['harbor']} (simulated, 1.x API), {report['artifacts']} artifacts, "
          f"{report['latency_ms']:g} ms per request")
    print(f"  the seed's client (python-harborclient, {seed['images']} images): "
          f"{seed['seconds']:.1f} s ({seed['seconds_per_image']:.2f} s per image), "
          f"{seed['requests']} requests, {seed['processes']} processes, "
          f"{seed['selected']} selected")
    print(f"  Careen: {careen['seconds']:.2f} s, {careen['server_requests']} requests, "
          f"{careen['selected_tagged']} selected")
    print(f"  speed-up {report['speedup']:.1f}x; same selection: "
          f"{'yes' if report['selection_match'] else 'NO'}")
    m = report["machine"]
    print(f"  {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}; one run each")


def machine() -> dict[str, Any]:
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "memory_gib": memory, "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform()}


# -- targets ---------------------------------------------------------------------------------------

def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue, per case it applies to: value, threshold, met or not."""
    out: list[dict[str, Any]] = []

    def add(target: str, case: dict[str, Any], value: float, threshold: str, met: bool,
            note: str = "") -> None:
        out.append({"target": target, "version": case["version"],
                    "artifacts": case["artifacts"], "latency_ms": case["latency_ms"],
                    "value": value, "threshold": threshold, "met": met, "note": note})

    for case in report["cases"]:
        basis = case["speedup_basis"]
        note = "" if basis == "measured" else "against the projected baseline"
        if case["latency_ms"] == 20 and case["artifacts"] == 10_000:
            seconds = case["careen"]["seconds"]
            add("Careen wall time at 20 ms, 10,000 artifacts", case, seconds,
                f"< {TARGET_SECONDS_10K_20MS:g} s", seconds < TARGET_SECONDS_10K_20MS)
            add("speed-up over the baseline at 20 ms, 10,000 artifacts", case,
                case["speedup"], f">= {TARGET_SPEEDUP_20MS:g}x",
                case["speedup"] >= TARGET_SPEEDUP_20MS, note)
        if case["latency_ms"] == 0:
            add("speed-up over the baseline with no added latency", case, case["speedup"],
                f">= {TARGET_SPEEDUP_NO_LATENCY:g}x",
                case["speedup"] >= TARGET_SPEEDUP_NO_LATENCY, note)
        excess = case["request_ratio"] - 1
        add("requests within 2% of the minimum", case, case["request_ratio"],
            f"<= {1 + TARGET_REQUEST_EXCESS:g}x minimum", excess <= TARGET_REQUEST_EXCESS,
            f"{case['careen']['requests']} sent, minimum {case['minimum_requests']}")
        listing = case["careen"].get("listing_requests")
        if listing is not None:
            ratio = listing / case["minimum_requests"]
            add("listing requests (without the version probe) within 2% of the minimum",
                case, ratio, f"<= {1 + TARGET_REQUEST_EXCESS:g}x minimum",
                ratio - 1 <= TARGET_REQUEST_EXCESS,
                f"{listing} listing + {case['careen']['probe_requests']} GET /systeminfo")
        user = case.get("user_install")
        if user and case["latency_ms"] == 20 and case["artifacts"] == 10_000:
            add("careen images (pip install .) wall / plain crawler's, 20 ms, 10,000", case,
                user["wall_ratio"], f"<= {TARGET_USER_WALL_RATIO:g}x",
                user["wall_ratio"] <= TARGET_USER_WALL_RATIO,
                f"{user['careen_cli']['seconds']:.2f} s vs {user['crawler']['seconds']:.2f} s")
            add("careen images (pip install .) CPU / plain crawler's, 20 ms, 10,000", case,
                user["cpu_ratio"], f"<= {TARGET_USER_CPU_RATIO:g}x",
                user["cpu_ratio"] <= TARGET_USER_CPU_RATIO,
                f"{user['careen_cli']['cpu_seconds']:.2f} s vs "
                f"{user['crawler']['cpu_seconds']:.2f} s")
        if user and case["artifacts"] >= 100_000:
            rss = user["careen_cli"]["peak_rss_mb"]
            add("careen images (pip install .) peak RSS at 100,000 artifacts", case, rss,
                f"< {TARGET_RSS_MB_100K:g} MB", rss < TARGET_RSS_MB_100K)
        if case["artifacts"] >= 100_000:
            rss = case["careen"]["peak_rss_mb"]
            add("Careen peak RSS at 100,000 artifacts", case, rss,
                f"< {TARGET_RSS_MB_100K:g} MB", rss < TARGET_RSS_MB_100K)
    return out


# -- output ----------------------------------------------------------------------------------------

COLUMNS = ("Harbor", "Artifacts", "Latency", "Careen req", "Min req", "Req ratio", "Careen s",
           "Careen CPU s", "Careen art/s", "Bound s", "Careen RSS MB", "Baseline req", "Baseline s",
           "Baseline art/s", "Baseline RSS MB", "Speed-up", "Same selection")


def rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """The figures table: one row per case; projected baseline figures are marked ``~``
    and ``(projected)``."""
    out: list[tuple[str, ...]] = []
    for case in report["cases"]:
        careen, baseline = case["careen"], case["baseline"]
        projected = baseline["status"] == "projected"
        mark = "~" if projected else ""
        bound = case["latency_bound_seconds"]
        rss = (f"{baseline['peak_rss_mb']:.0f}" if not projected
               else f"{baseline['sample_peak_rss_mb']:.0f} (sample)")
        match = case["selection_match"]
        out.append((
            case["version"], f"{case['artifacts']:,}", f"{case['latency_ms']:g} ms",
            f"{careen['requests']:,}", f"{case['minimum_requests']:,}",
            f"{case['request_ratio']:.3f}", f"{careen['seconds']:.2f}",
            f"{careen['cpu_seconds']:.2f}", f"{case['artifacts_per_second']:,.0f}",
            f"{bound:.2f}" if bound is not None else "-", f"{careen['peak_rss_mb']:.0f}",
            f"{mark}{baseline['requests']:,}",
            f"{mark}{baseline['seconds']:.1f}" + (" (projected)" if projected else ""),
            f"{mark}{case['baseline_artifacts_per_second']:,.0f}", rss,
            f"{mark}{case['speedup']:.1f}x", "-" if match is None else "yes" if match else "NO"))
    return out


USER_COLUMNS = ("Harbor", "Artifacts", "Latency", "careen s", "crawler s", "wall ratio",
                "careen CPU s", "crawler CPU s", "CPU ratio", "careen RSS MB",
                "crawler RSS MB", "Same selection")


def user_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for case in report["cases"]:
        user = case.get("user_install")
        if not user:
            continue
        careen, crawler = user["careen_cli"], user["crawler"]
        out.append((case["version"], f"{case['artifacts']:,}", f"{case['latency_ms']:g} ms",
                    f"{careen['seconds']:.2f}", f"{crawler['seconds']:.2f}",
                    f"{user['wall_ratio']:.2f}", f"{careen['cpu_seconds']:.2f}",
                    f"{crawler['cpu_seconds']:.2f}", f"{user['cpu_ratio']:.2f}",
                    f"{careen['peak_rss_mb']:.0f}", f"{crawler['peak_rss_mb']:.0f}",
                    "yes" if user["selection_match"] else "NO"))
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    if any(case.get("user_install") for case in report["cases"]):
        lines += ["", "| " + " | ".join(USER_COLUMNS) + " |", "|" + "---|" * len(USER_COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in user_rows(report)]
    lines += ["", "| Target | Harbor | Artifacts | Latency | Value | Threshold | Met | Note |",
              "|---|---|---|---|---|---|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['version']} | {t['artifacts']:,} | "
                     f"{t['latency_ms']:g} ms | {t['value']:.3f} | {t['threshold']} | "
                     f"{'met' if t['met'] else '**not met**'} | {t['note']} |")
    return "\n".join(lines) + "\n"


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 240)
    table = Table(title="Inventory: Careen vs the seed's way (median of "
                        f"{report['config']['repeat']} runs; ~ = projected)")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "Harbor" else "right")
    for row in rows(report):
        table.add_row(*row)
    console.print(table)
    if any(case.get("user_install") for case in report["cases"]):
        users = Table(title="careen images from a plain 'pip install .' venv vs a plain "
                            "16-thread crawler (whole processes: start-up included)")
        for column in USER_COLUMNS:
            users.add_column(column, justify="left" if column == "Harbor" else "right")
        for row in user_rows(report):
            users.add_row(*row)
        console.print(users)
    checks = Table(title="Targets")
    for column in ("Target", "Harbor", "Artifacts", "Latency", "Value", "Threshold", "Met"):
        checks.add_column(column)
    for t in report["targets"]:
        checks.add_row(t["target"], t["version"], f"{t['artifacts']:,}",
                       f"{t['latency_ms']:g} ms", f"{t['value']:.3f}", t["threshold"],
                       "[green]met[/]" if t["met"] else "[red]not met[/]")
    console.print(checks)
    m = report["machine"]
    console.print(f"{m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, "
                  f"Python {m['python']}; {report['duration_seconds']:.0f} s in all")


def parse_args(argv: Sequence[str] | None) -> tuple[BenchConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inventory",
        description="Benchmark Careen's Harbor inventory against the seed's one request "
                    "per image, on the bundled Harbor simulator.")
    parser.add_argument("--sizes", type=int, nargs="+", metavar="N",
                        help="fleet sizes in artifacts (default: 1000 10000 100000)")
    parser.add_argument("--latency", type=float, nargs="+", metavar="SECONDS",
                        help="seconds the simulator adds to every response "
                             "(default: 0 0.02)")
    parser.add_argument("--versions", nargs="+", choices=sorted(HARBOR_VERSIONS),
                        help="Harbor versions to simulate (default: 2.14 2.11)")
    parser.add_argument("--repeat", type=int, help="runs per figure; the median is "
                                                   "reported (default 3, --quick 1)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="Careen's concurrent requests (default 16)")
    parser.add_argument("--baseline-budget", type=float, default=120.0, metavar="SECONDS",
                        help="run the baseline in full only where its projected time is at "
                             "most this (default 120); elsewhere report the projection")
    parser.add_argument("--sample-images", type=int, default=500, metavar="N",
                        help="images in the baseline's sample run (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="fleet generator seed")
    parser.add_argument("--stock-server", action="store_true",
                        help="serve with careen.sim.harbor.SimulatorServer unchanged (its "
                             "sockets keep Nagle's algorithm: ~40 ms per request, see "
                             "README)")
    parser.add_argument("--seed-client", action="store_true",
                        help="the seed's own client (python-harborclient, installed from "
                             "the package index) on a simulated Harbor 1.6 against Careen, "
                             "--images images, one run each")
    parser.add_argument("--images", type=int, default=SEED_CLIENT_IMAGES, metavar="N",
                        help="--seed-client: about this many images (default 100)")
    parser.add_argument("--harborclient-dir", type=Path, metavar="DIR",
                        default=Path(tempfile.gettempdir()) / "careen-bench-harborclient",
                        help="--seed-client: where python-harborclient is installed "
                             "(reused when there)")
    parser.add_argument("--user-python", type=Path, metavar="PYTHON",
                        help="the python whose 'careen' script is measured against the plain "
                             "crawler (default: a plain 'pip install .' venv made by "
                             "bench/venv.py)")
    parser.add_argument("--no-user-install", action="store_true",
                        help="skip 'careen images' from a plain 'pip install .' venv against "
                             "the plain crawler (made once under ~/.cache/careen-bench)")
    parser.add_argument("--quick", action="store_true",
                        help="1,000 and 10,000 artifacts, repeat 1: for developers")
    parser.add_argument("--in-process", action="store_true",
                        help="measure this environment (the development one), not a plain "
                             "'pip install .' venv (default: the whole benchmark runs again "
                             "with a user's install, made once under ~/.cache/careen-bench)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write JSON here")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write the tables as Markdown here")
    args = parser.parse_args(argv)
    if not args.in_process:
        from bench.venv import rerun_in_user_venv

        code = rerun_in_user_venv("bench.inventory", argv)
        if code is not None:
            raise SystemExit(code)
    sizes = tuple(args.sizes) if args.sizes else QUICK_SIZES if args.quick else DEFAULT_SIZES
    repeat = args.repeat if args.repeat is not None else 1 if args.quick else 3
    for name, ok in (("--repeat", repeat >= 1), ("--concurrency", 1 <= args.concurrency <= 256),
                     ("--baseline-budget", args.baseline_budget >= 0),
                     ("--sample-images", args.sample_images >= 1),
                     ("--images", args.images >= 1),
                     ("--latency", all(x >= 0 for x in args.latency or ())),
                     ("--sizes", all(s >= ARTIFACTS_PER_REPOSITORY for s in sizes))):
        if not ok:
            parser.error(f"{name}: out of range")
    config = BenchConfig(
        sizes=sizes, latencies=tuple(args.latency) if args.latency else DEFAULT_LATENCIES,
        versions=tuple(args.versions) if args.versions else tuple(HARBOR_VERSIONS),
        repeat=repeat, concurrency=args.concurrency, baseline_budget=args.baseline_budget,
        sample_images=args.sample_images, seed=args.seed, stock_server=args.stock_server,
        user_python=None if args.no_user_install
        else str(args.user_python) if args.user_python else _user_python())
    return config, args


def _user_python() -> str:
    from bench.venv import describe, user_python

    python = user_python()
    print(f"measuring {describe(python)} against the plain crawler", file=sys.stderr)
    return str(python)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.venv import measured_install

    config, args = parse_args(argv)

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    install = measured_install()
    say(f"measuring {install}")

    if args.seed_client:
        latency = args.latency[0] if args.latency else SEED_CLIENT_LATENCY
        report = {**run_seed_client_benchmark(args.images, latency, args.harborclient_dir,
                                              config, say), "install": install}
        print_seed_client_report(report)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return 0
    report = {**run_benchmark(config, say), "install": install}
    print_report(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
