"""The Harbor clients against the running Harbor simulator over real loopback HTTP.

No monkeypatching: the client talks to the simulator's server through the network stack, and
an httpx event hook checks every request it sends against Harbor's swagger spec
(``HarborSpec.validate_request``); a request the spec would refuse fails the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from careen.errors import ServiceError
from careen.events import RecordingObserver
from careen.reference import ImageReference
from careen.registries.harbor import open_harbor
from careen.registries.harbor_v1 import HarborV1Client
from careen.registries.harbor_v2 import HarborV2Client
from careen.registries.http import EventHook, HarborSettings
from careen.scan import ScanStatus, SeverityCounts

sim = pytest.importorskip("careen.sim.harbor")

PASSWORD = "Harbor12345"


def fleet_data(version: str) -> dict[str, Any]:
    return {
        "harbor_version": version,
        "users": {"admin": PASSWORD},
        "scan_results": {"default": {}},
        "projects": [
            {"name": "library", "public": False, "repositories": [
                {"name": "activemq", "artifacts": [
                    {"tags": ["5.14.4"], "scan": {"high": 6, "medium": 2, "fixable": 5}},
                    {"tags": [], "scan": None},
                ]},
                {"name": "httpd", "artifacts": [
                    {"tags": ["2.4", "2.4.6", "latest"], "scan": {"medium": 3}},
                    {"tags": ["2.2.15"], "scan": None},
                ]},
            ]},
            {"name": "team", "public": True, "repositories": [
                {"name": "backend/api", "artifacts": [
                    {"tags": ["1.0"], "scan": {"critical": 1, "low": 4}},
                ]},
                {"name": "multi", "artifacts": [
                    {"tags": ["3.1"], "scan": {"high": 1},
                     "platforms": [{"os": "linux", "architecture": "amd64"},
                                   {"os": "linux", "architecture": "arm64"}]},
                ]},
            ]},
            {"name": "empty", "repositories": []},
        ],
    }


@pytest.fixture(scope="module", params=["2.14.0", "2.10.0"],
                ids=["project-listing", "per-repository"])
def simulator_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    fleet = sim.Fleet.from_dict(fleet_data(request.param))
    options = sim.SimOptions(scan_delay=sim.ScanDelays(0.05, 0.05))
    with sim.SimulatorServer(fleet, options) as server:
        yield server


@pytest.fixture
def simulator(simulator_server: Any) -> Any:
    """One server per Harbor version, started over from its fleet for every test."""
    simulator_server.reset()
    return simulator_server


def spec_hooks(version: str = "v2.0") -> tuple[dict[str, list[EventHook]], list[str]]:
    """Event hooks validating every request against the spec; the checked operations."""
    spec = sim.HarborSpec.load(version)
    seen: list[str] = []

    async def check(request: httpx.Request) -> None:
        op = spec.validate_request(request.method, request.url.raw_path.decode("latin-1"),
                                   dict(request.headers), request.content or None)
        seen.append(op.operation_id)

    return {"request": [check]}, seen


def harbor_settings(url: str, **overrides: Any) -> HarborSettings:
    values: dict[str, Any] = {"url": url, "user": "admin", "password": SecretStr(PASSWORD),
                              "backoff_initial": 0.01, "backoff_max": 0.05}
    values.update(overrides)
    return HarborSettings(**values)


async def test_inventory(simulator: Any) -> None:
    hooks, seen = spec_hooks()
    observer = RecordingObserver()
    harbor = await open_harbor(harbor_settings(simulator.url), observer=observer,
                               event_hooks=hooks)
    assert isinstance(harbor, HarborV2Client)
    async with harbor:
        found = [a async for a in harbor.artifacts()]
    host = simulator.url.removeprefix("http://")
    by_tags = {(a.repository, a.tags): a for a in found}
    activemq = by_tags[("library/activemq", ("5.14.4",))]
    assert activemq.scan.status is ScanStatus.SUCCESS
    assert activemq.scan.counts == SeverityCounts(high=6, medium=2)
    assert activemq.registry == host
    untagged = by_tags[("library/activemq", ())]
    assert untagged.scan.status is ScanStatus.NOT_SCANNED
    assert [r.digest for r in untagged.references()] == [untagged.digest]
    multi_tag = next(a for a in found if a.repository == "library/httpd" and len(a.tags) == 3)
    assert set(multi_tag.tags) == {"2.4", "2.4.6", "latest"}
    assert by_tags[("library/httpd", ("2.2.15",))].scan.status is ScanStatus.NOT_SCANNED
    nested = by_tags[("team/backend/api", ("1.0",))]
    assert nested.scan.counts == SeverityCounts(critical=1, low=4)
    index = by_tags[("team/multi", ("3.1",))]
    assert index.is_index and len(index.children) == 2
    assert {p.architecture for p in index.platforms} == {"amd64", "arm64"}
    assert index.scan.succeeded and index.scan.counts is not None
    assert index.scan.counts.high == 1
    children = [a for a in found if a.digest in index.children]
    assert len(children) == 2 and all(c.tags == () for c in children)
    assert observer.of_kind("warning") == []
    assert "listArtifactsOfProject" in seen or "listArtifacts" in seen
    assert harbor.stats.requests == len(seen)


async def test_strategy_follows_the_version(simulator: Any) -> None:
    hooks, seen = spec_hooks()
    async with HarborV2Client(harbor_settings(simulator.url), event_hooks=hooks) as harbor:
        found = [a async for a in harbor.artifacts(["library"])]
    assert {a.repository for a in found} == {"library/activemq", "library/httpd"}
    if simulator.fleet.harbor_version.startswith("2.14"):
        assert "listArtifactsOfProject" in seen and "listRepositories" not in seen
    else:
        assert "listRepositories" in seen and "listArtifactsOfProject" not in seen


async def test_scans_go_from_pending_to_success(simulator: Any) -> None:
    hooks, seen = spec_hooks()
    image = ImageReference.parse("library/httpd:2.2.15")
    async with HarborV2Client(harbor_settings(simulator.url), event_hooks=hooks) as harbor:
        assert (await harbor.scan_summary(image)).status is ScanStatus.NOT_SCANNED
        await harbor.request_scan(image)
        await harbor.request_scan(image)  # already pending: 409 is fine
        during = await harbor.scan_summary(image)
        assert during.status in (ScanStatus.PENDING, ScanStatus.RUNNING, ScanStatus.NOT_SCANNED)
        done = await harbor.wait_for_scans([image], timeout=10, interval=0.05)
        nested = ImageReference.parse("team/backend/api:1.0")
        await harbor.request_scan(nested)
        nested_done = await harbor.wait_for_scans([nested], timeout=10, interval=0.05)
    assert done[image].status is ScanStatus.SUCCESS
    assert done[image].counts == SeverityCounts()
    assert nested_done[nested].status is ScanStatus.SUCCESS
    assert seen.count("scanArtifact") == 3


async def test_vulnerabilities_and_fixable(simulator: Any) -> None:
    hooks, _ = spec_hooks()
    image = ImageReference.parse("library/activemq:5.14.4")
    async with HarborV2Client(harbor_settings(simulator.url), event_hooks=hooks) as harbor:
        report = await harbor.vulnerabilities(image)
        summary = await harbor.scan_summary_with_fixable(image)
    assert report is not None and report.counts == SeverityCounts(high=6, medium=2)
    assert summary.fixable is not None and summary.fixable.total == 5


async def test_schedule_round_trips_and_metrics(simulator: Any) -> None:
    hooks, seen = spec_hooks()
    async with HarborV2Client(harbor_settings(simulator.url), event_hooks=hooks) as harbor:
        assert await harbor.scan_all_schedule() is None
        await harbor.set_scan_all_schedule("Daily")
        daily = await harbor.scan_all_schedule()
        await harbor.set_scan_all_schedule("Weekly")
        weekly = await harbor.scan_all_schedule()
        await harbor.set_scan_all_schedule("None")
        gone = await harbor.scan_all_schedule()
        assert await harbor.trigger_scan_all() is True
        metrics = await harbor.scan_all_metrics()
    assert daily is not None and (daily.type, daily.cron) == ("Daily", "0 0 0 * * *")
    assert weekly is not None and (weekly.type, weekly.cron) == ("Weekly", "0 0 0 * * 0")
    assert gone is None
    assert metrics.total >= 1
    assert {"createScanAllSchedule", "updateScanAllSchedule"} <= set(seen)


async def test_bad_password_answers_as_anonymous_with_a_warning(simulator: Any) -> None:
    observer = RecordingObserver()
    settings = harbor_settings(simulator.url, password=SecretStr("wrong-password"))
    async with HarborV2Client(settings, observer=observer) as harbor:
        found = [a async for a in harbor.artifacts()]
    assert {a.project for a in found} == {"team"}  # the public project only
    warnings = observer.of_kind("warning")
    assert any("credentials were not accepted" in w for w in warnings)
    assert all("wrong-password" not in w for w in warnings)


async def test_writes_with_bad_credentials_are_a_401_service_error(simulator: Any) -> None:
    settings = harbor_settings(simulator.url, password=SecretStr("wrong-password"))
    async with HarborV2Client(settings) as harbor:
        with pytest.raises(ServiceError) as caught:
            await harbor.request_scan(ImageReference.parse("team/multi:3.1"))
    assert "401" in str(caught.value) and "wrong-password" not in str(caught.value)


async def test_harbor_1_inventory() -> None:
    fleet = sim.Fleet.from_dict(fleet_data("1.6.3"))
    with sim.SimulatorServer(fleet, sim.SimOptions()) as server:
        detected = await open_harbor(harbor_settings(server.url))  # probes v2 first: unchecked
        await detected.aclose()
        assert isinstance(detected, HarborV1Client)
        hooks, seen = spec_hooks("v1")
        async with HarborV1Client(harbor_settings(server.url), event_hooks=hooks) as harbor:
            found = [a async for a in harbor.artifacts()]
            summary = await harbor.scan_summary(ImageReference.parse("library/activemq:5.14.4"))
    tagged = {(a.repository, a.tags) for a in found}
    assert ("library/activemq", ("5.14.4",)) in tagged
    assert ("team/backend/api", ("1.0",)) in tagged
    assert all(a.tags for a in found)  # v1 lists tags only
    assert summary.succeeded and summary.counts_unit == "packages"
    assert seen


async def test_concurrent_crawls_share_one_limit(simulator: Any) -> None:
    async with HarborV2Client(harbor_settings(simulator.url, concurrency=2)) as harbor:
        results = await asyncio.gather(*(
            _count(harbor.artifacts(["library"])) for _ in range(3)))
    assert len(set(results)) == 1 and results[0] > 0


async def _count(stream: Any) -> int:
    return len([a async for a in stream])
