"""A flaky Harbor changes nothing but the number of requests; a dead one is given up on.

The simulator injects seeded faults (10% HTTP 500, 5% 429 with ``Retry-After: 1``, 5%
dropped connections, 2% answers slower than the client's timeout). For 20 seeds and both
listing strategies (Harbor 2.14's project-wide artifact listing, Harbor 2.11's repository by
repository), the inventory and the vulnerable list must equal a fault-free run's, with at
most 1.5 times its requests. Retries wait through a :class:`RecordingSleep`, so the suite
does not sit out the ``Retry-After`` seconds (it checks they were asked for instead). Slow
answers are sat out (the client's timeout is what they test), so the seeds' crawls run a few
at a time, each against a simulator of its own (its fault sequence is the seed's alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from careen.errors import ExitCode
from careen.inventory import Artifact
from careen.policy import Policy
from careen.reference import ImageReference
from careen.registries.harbor import HarborClient, open_harbor
from careen.registries.http import HarborSettings, RequestStats
from careen.scan import ScanSummary
from careen.sim.harbor import FaultPlan, Fleet, SimOptions, SimulatorServer
from careen.vulnerable import find_vulnerable
from careen.vulnlist import VulnerableEntry, render_vulnerable_list

from .conftest import Careen, OpenedHarbor
from .support import Answer, RecordingSleep, free_port, loopback_server

#: The issue's bar is 20 seeded runs out of 20: CI (CI=true) runs all 20; a developer's fast
#: set runs 4 of them (CAREEN_FLAKY_SEEDS overrides), since each run costs about a second.
SEEDS = range(int(os.environ.get("CAREEN_FLAKY_SEEDS", "20" if os.environ.get("CI") else "4")))
#: Listing strategies: 2.12+ lists a project's artifacts at once, older Harbors per repository.
HARBOR_VERSIONS = ("2.14.0", "2.11.0")
MAX_REQUEST_RATIO = 1.5
#: Small pages over about 1,000 artifacts in 5 projects: over 100 listing requests per run
#: with either strategy, so pages (and faults on them) matter and the request ratio is not
#: one of a handful. 9 artifacts a repository, not 10: a full page of 10 would make Harbor
#: 2.11's repository-by-repository listing ask for an empty second page of each (twice the
#: requests, and the run's time, for pages that hold nothing).
FLEET_PROJECTS, FLEET_REPOSITORIES, FLEET_ARTIFACTS, FLEET_SEED = 5, 22, 9, 7
PAGE_SIZE = 10
#: ``[harbor] timeout`` bounds a whole answer (issue 18 row 8), not each read. A slow fault
#: costs the run this long, so it is short; with the simulator in this process (one GIL, two
#: busy CPUs) a fault-free answer took over 0.4 s now and then. One that outlasts the timeout
#: is one more retried request, counted in the ratio: at 0.75 s a machine loaded 4 times over
#: pushed a run past 1.5 times the requests, at 1.0 s only just. The fault-free run, which
#: must retry nothing, keeps the default timeout.
CLIENT_TIMEOUT = 1.0
#: Longer than the client's timeout: the client gives up and retries. (Stopping the server
#: drops a request still stalled, rather than wait it out.)
SLOW_SECONDS = 2 * CLIENT_TIMEOUT
DEFAULT_TIMEOUT = HarborSettings(url="http://harbor.invalid").timeout
RETRY_AFTER = 1
#: Seeds crawled at once, each by a thread of its own (an event loop of its own) against a
#: simulator of its own. A faulted run mostly waits out its slow answers (CLIENT_TIMEOUT
#: each), so a few together take little more than the wall time of one. In one event loop
#: they did not: while one crawl computed (its inventory, its report) the others' answers
#: waited, and on a machine loaded 4 times over some timed out (up to 1.43 times the
#: requests instead of 1.28); with a loop per crawl, as many requests as one at a time.
CONCURRENT_SEEDS = 4


def fault_plan(seed: int) -> FaultPlan:
    return FaultPlan(error_rate=0.10, rate_limit_rate=0.05, retry_after=RETRY_AFTER,
                     drop_rate=0.05, slow_rate=0.02, slow_seconds=SLOW_SECONDS, seed=seed)


def client_settings(url: str, timeout: float) -> HarborSettings:
    # 8 attempts: with 22% of requests faulted, 5 would fail one request in ~2,000; the
    # point here is that retried requests give the same answers, not the give-up bound
    # (tested below with the defaults).
    return HarborSettings(url=url, user="admin", password=SecretStr("Harbor12345"),
                          timeout=timeout, page_size=PAGE_SIZE, max_attempts=8,
                          backoff_initial=0.01, backoff_max=0.05)


class RecordingSource:
    """A :class:`ScanSource` that passes everything through and keeps the artifacts the
    listing streamed: the inventory ``find_vulnerable`` saw, read in the same crawl."""

    def __init__(self, inner: HarborClient) -> None:
        self.inner = inner
        self.seen: list[Artifact] = []

    @property
    def rescans_by_digest(self) -> bool:
        return self.inner.rescans_by_digest

    async def artifacts(self, projects: Sequence[str] | None = None) -> AsyncIterator[Artifact]:
        async for artifact in self.inner.artifacts(projects):
            self.seen.append(artifact)
            yield artifact

    async def scan_summary(self, image: ImageReference) -> ScanSummary:
        return await self.inner.scan_summary(image)

    async def scan_summary_with_fixable(self, image: ImageReference) -> ScanSummary:
        return await self.inner.scan_summary_with_fixable(image)

    async def request_scan(self, image: ImageReference) -> None:
        await self.inner.request_scan(image)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Crawl:
    """What one run produced, in forms that compare exactly."""

    inventory: list[Artifact]
    vulnerable_list: str
    vulnerable: set[tuple[str, str | None, tuple[tuple[str, int], ...]]]
    stats: RequestStats
    waits: list[float] = field(default_factory=list)


async def crawl(url: str, timeout: float) -> Crawl:
    sleep = RecordingSleep()
    client = await open_harbor(client_settings(url, timeout), sleep=sleep)
    source = RecordingSource(client)
    try:
        selection = await find_vulnerable(source, Policy())
    finally:
        await source.aclose()
    selected = [image for image, _ in selection.selected]
    return Crawl(
        inventory=sorted(source.seen, key=lambda a: (a.repository, a.digest)),
        vulnerable_list=render_vulnerable_list(VulnerableEntry.from_image(i) for i in selected),
        vulnerable={(i.reference.short, i.digest,
                     tuple(sorted(i.scan.counts.as_dict().items())) if i.scan.counts else ())
                    for i in selected},
        stats=client.stats, waits=sleep.waits)


@pytest.fixture(scope="module", params=HARBOR_VERSIONS)
def harbors(request: pytest.FixtureRequest) -> Iterator[list[SimulatorServer]]:
    """Simulators of one fleet, one per seed crawled at once; the first also serves the
    fault-free run."""
    fleet = Fleet.generate(projects=FLEET_PROJECTS, repos_per_project=FLEET_REPOSITORIES,
                           artifacts_per_repo=FLEET_ARTIFACTS, seed=FLEET_SEED,
                           harbor_version=request.param)
    with ExitStack() as stack:
        yield [stack.enter_context(SimulatorServer(fleet, SimOptions(scan_delay=0.0)))
               for _ in range(max(1, min(CONCURRENT_SEEDS, len(SEEDS))))]


def with_faults(server: SimulatorServer, plan: FaultPlan | None) -> None:
    """Start the simulator over from its fleet with ``plan`` (fresh fault sequence)."""
    server.options = replace(server.options, faults=plan)
    server.reset()


def crawl_with_faults(free: queue.SimpleQueue[SimulatorServer], seed: int,
                      clean: SimulatorServer) -> tuple[Crawl, dict[str, int]]:
    """Crawl a simulator of ``free`` started over with ``seed``'s faults, in an event loop of
    this thread's own: what the client saw (its inventory as if read from ``clean``, see
    :func:`as_read_from`), and the faults the simulator injected. (One loop for all crawls
    would hold each crawl's answers up while another crawl computes, and time them out.)"""
    harbor = free.get()
    try:
        with_faults(harbor, fault_plan(seed))
        flaky = asyncio.run(crawl(harbor.url, CLIENT_TIMEOUT))
        injected = harbor.stats.snapshot()["faults"]
        flaky.inventory = as_read_from(flaky.inventory, harbor, clean)
    finally:
        free.put(harbor)
    assert isinstance(injected, dict)
    return flaky, injected


def as_read_from(inventory: list[Artifact], crawled: SimulatorServer,
                 clean: SimulatorServer) -> list[Artifact]:
    """``inventory``, crawled from ``crawled``, as if read from ``clean``: an artifact names
    the Harbor host it was read from, and each seed has a simulator (a port) of its own. An
    artifact naming any other host is kept as it is, so it still differs."""
    crawled_host, clean_host = urlsplit(crawled.url).netloc, urlsplit(clean.url).netloc
    return [replace(artifact, registry=clean_host) if artifact.registry == crawled_host
            else artifact for artifact in inventory]


def test_faults_change_nothing_but_the_request_count(
        harbors: list[SimulatorServer], record_property: Any) -> None:
    harbor = harbors[0]
    with_faults(harbor, None)
    clean = asyncio.run(crawl(harbor.url, DEFAULT_TIMEOUT))
    assert len(clean.inventory) == FLEET_PROJECTS * FLEET_REPOSITORIES * FLEET_ARTIFACTS
    assert clean.vulnerable and clean.stats.retries == 0
    listing_requests = clean.stats.requests
    assert listing_requests >= 100, "pages must matter: make the fleet or the pages smaller"

    free: queue.SimpleQueue[SimulatorServer] = queue.SimpleQueue()
    for server in harbors:
        free.put(server)
    with ThreadPoolExecutor(max_workers=len(harbors)) as crawlers:
        crawls = list(crawlers.map(crawl_with_faults, repeat(free), SEEDS, repeat(harbor)))

    problems: list[str] = []
    ratios: dict[int, float] = {}
    faults_seen: dict[str, int] = {}
    for seed, (flaky, injected) in zip(SEEDS, crawls, strict=True):
        for kind, count in injected.items():
            faults_seen[kind] = faults_seen.get(kind, 0) + count
        ratios[seed] = flaky.stats.requests / listing_requests
        if flaky.inventory != clean.inventory:
            problems.append(f"seed {seed}: the inventory differs")
        if flaky.vulnerable_list != clean.vulnerable_list:
            problems.append(f"seed {seed}: vulnerable.list differs")
        if flaky.vulnerable != clean.vulnerable:
            problems.append(f"seed {seed}: the (image, digest, counts) set differs")
        if ratios[seed] > MAX_REQUEST_RATIO:
            problems.append(f"seed {seed}: {flaky.stats.requests} requests, "
                            f"{ratios[seed]:.2f}x the fault-free {listing_requests}")
        if not injected:
            problems.append(f"seed {seed}: no fault was injected")
        # Every 429 carried Retry-After: 1, and the client asked to wait exactly that long.
        rate_limited = flaky.stats.by_status.get(429, 0)
        if flaky.waits.count(float(RETRY_AFTER)) < rate_limited:
            problems.append(f"seed {seed}: {rate_limited} answers were 429 but only "
                            f"{flaky.waits.count(float(RETRY_AFTER))} waits honoured "
                            "Retry-After")

    worst = max(ratios, key=ratios.__getitem__)
    summary = {"harbor": harbor.fleet.harbor_version, "fault_free_requests": listing_requests,
               "worst_ratio": round(ratios[worst], 3), "worst_seed": worst,
               "mean_ratio": round(sum(ratios.values()) / len(ratios), 3),
               "faults_injected": faults_seen}
    record_property("flaky_harbor", json.dumps(summary))
    print("flaky Harbor:", json.dumps(summary))  # shown with -s; kept in the JUnit XML too
    assert not problems, "\n".join(problems)
    # Every kind of fault happened, so each retry path was exercised.
    assert set(faults_seen) == {"error", "rate_limit", "drop", "slow"}, faults_seen


# -- Harbor down for good -------------------------------------------------------------------


def assert_bounded_by_settings(opened: OpenedHarbor, attempts: int) -> HarborSettings:
    """The client gave up after exactly ``max_attempts`` tries of the one request, each wait
    within its caps: the give-up time is bounded by the settings, whatever the clock says."""
    assert len(opened.settings) == 1
    settings = opened.settings[0]
    assert attempts == settings.max_attempts
    assert len(opened.sleep.waits) == settings.max_attempts - 1
    cap = max(settings.backoff_max, settings.retry_after_max)
    assert all(0 <= wait <= cap for wait in opened.sleep.waits), opened.sleep.waits
    worst_case = (settings.max_attempts * settings.timeout
                  + (settings.max_attempts - 1) * cap)
    # The documented defaults give up within a few minutes at worst (and
    # max_retry_seconds cuts that short on a real clock).
    assert min(worst_case, settings.max_retry_seconds + settings.timeout) <= 180
    return settings


def assert_one_line_reason(err: str, error_line: str, *, must_say: str) -> None:
    assert error_line.startswith("careen: error: Harbor at 127.0.0.1:"), err
    assert must_say in error_line, err
    assert "Traceback" not in err
    # The reason and at most a hint line: nothing else after the retries' warnings.
    tail = err[err.index(error_line):].splitlines()
    assert len(tail) <= 2 and all(line.startswith(("careen: error:", "  hint:"))
                                  for line in tail), tail


def test_nothing_listening_gives_up_with_exit_3(careen: Careen,
                                               instant_retries: OpenedHarbor) -> None:
    port = free_port()
    result = careen("vulnerable", "-o", "-", "--harbor-url", f"http://127.0.0.1:{port}")
    assert result.code == ExitCode.UNREACHABLE
    assert result.out == ""
    assert_one_line_reason(result.err, result.error_line, must_say="connection refused")
    settings = instant_retries.settings[0]
    assert f"after {settings.max_attempts} attempts" in result.error_line
    assert_bounded_by_settings(instant_retries, settings.max_attempts)


def test_every_request_503_gives_up_with_exit_3(careen: Careen,
                                                instant_retries: OpenedHarbor) -> None:
    body = json.dumps({"errors": [{"code": "UNKNOWN", "message": "internal server error"}]})
    unavailable = Answer(503, body.encode(), (("Content-Type", "application/json"),
                                              ("Retry-After", "1")))
    with loopback_server(lambda path: unavailable) as server:
        result = careen("vulnerable", "-o", "-", "--harbor-url", server.url)
    assert result.code == ExitCode.UNREACHABLE
    assert_one_line_reason(result.err, result.error_line, must_say="HTTP 503")
    settings = assert_bounded_by_settings(instant_retries, len(server.paths))
    assert f"after {settings.max_attempts} attempts" in result.error_line
    # The one request retried is the first one; nothing else was tried meanwhile.
    assert {path.split("?")[0] for path in server.paths} == {"/api/v2.0/systeminfo"}
    assert instant_retries.sleep.waits == [1.0] * (settings.max_attempts - 1)

