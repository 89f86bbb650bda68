"""The Harbor 1.x client's writes (scan, scan-all, the daily schedule) against the simulator's
1.x API over loopback HTTP.

An httpx event hook holds every request the client sends, and every response it gets, to
Harbor's own swagger files: ``harbor-v1-swagger.yaml`` (1.6.3) and, for
``/api/system/scanAll/schedule`` (1.8 to 1.10), ``harbor-v1.10-swagger.yaml``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from careen.errors import UsageError
from careen.events import RecordingObserver
from careen.reference import ImageReference
from careen.registries.harbor import open_harbor
from careen.registries.harbor_v1 import HarborV1Client, policy_of_schedule, schedule_of_policy
from careen.registries.harbor_v2 import ScanAllSchedule
from careen.registries.http import EventHook, HarborApiError, HarborSettings
from careen.scan import ScanStatus
from careen.sim.harbor import Fleet, HarborSpec, ScanDelays, SimOptions, SimulatorServer
from careen.verify import rescan

PASSWORD = "Harbor12345"
FLEET: dict[str, Any] = {
    "users": {"admin": PASSWORD, "dev": {"password": "devpw", "projects": ["library"]}},
    "scan_results": {"library/team/app:1.0": {"high": 2, "medium": 1}, "default": {}},
    "projects": [{"name": "library", "repositories": [
        {"name": "grafana", "artifacts": [{"tags": ["4.1.2"], "scan": {"medium": 3}}]},
        {"name": "team/app", "artifacts": [{"tags": ["1.0"], "scan": None}]},
    ]}],
}


def server(version: str) -> SimulatorServer:
    return SimulatorServer(Fleet.from_dict({**FLEET, "harbor_version": version}),
                           SimOptions(scan_delay=ScanDelays(0.05, 0.05)))


@pytest.fixture(scope="module")
def v16_server() -> Iterator[SimulatorServer]:
    with server("1.6.3") as sim:
        yield sim


@pytest.fixture(scope="module")
def v19_server() -> Iterator[SimulatorServer]:
    with server("1.9.4") as sim:
        yield sim


@pytest.fixture
def v16(v16_server: SimulatorServer) -> SimulatorServer:
    v16_server.reset()
    return v16_server


@pytest.fixture
def v19(v19_server: SimulatorServer) -> SimulatorServer:
    v19_server.reset()
    return v19_server


class Contract:
    """Event hooks checking each request and response against the 1.x specs; ``seen`` is
    ``(operation, raw path)`` of every request."""

    def __init__(self, spec: str | None = None) -> None:
        self.seen: list[tuple[str, str]] = []
        self.spec = spec

    def spec_for(self, path: str) -> HarborSpec:
        if self.spec is not None:
            return HarborSpec.load(self.spec)
        return HarborSpec.load("v1.10" if path.startswith("/api/system/") else "v1")

    async def on_request(self, request: httpx.Request) -> None:
        raw = request.url.raw_path.decode("latin-1")
        op = self.spec_for(raw).validate_request(request.method, raw, dict(request.headers),
                                                 request.content or None)
        self.seen.append((op.operation_id, raw))

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        raw = response.request.url.raw_path.decode("latin-1")
        self.spec_for(raw).validate_response(response.request.method, raw,
                                             response.status_code, dict(response.headers),
                                             response.content)

    @property
    def hooks(self) -> dict[str, list[EventHook]]:
        return {"request": [self.on_request], "response": [self.on_response]}

    def operations(self) -> list[str]:
        return [op for op, _ in self.seen]


def client(sim: SimulatorServer, contract: Contract, user: str = "admin",
           password: str = PASSWORD, observer: RecordingObserver | None = None
           ) -> HarborV1Client:
    settings = HarborSettings(url=sim.url, user=user, password=SecretStr(password),
                              api_version="v1", backoff_initial=0.01, backoff_max=0.05)
    return HarborV1Client(settings, event_hooks=contract.hooks,
                          observer=observer or RecordingObserver())


async def test_scan_a_nested_tag_and_wait_for_its_overview(v16: SimulatorServer) -> None:
    """NOTES §9.1: POST …/tags/{tag}/scan with the repository name raw (slashes kept), 200;
    then the tag's scan_overview is polled until finished."""
    contract = Contract()
    image = ImageReference.parse("library/team/app:1.0")
    async with client(v16, contract) as harbor:
        assert (await harbor.scan_summary(image)).status is ScanStatus.NOT_SCANNED
        await harbor.request_scan(image)
        results = await harbor.wait_for_scans([image], timeout=10, interval=0.05)
    assert ("post /repositories/{repo_name}/tags/{tag}/scan",
            "/api/repositories/library/team/app/tags/1.0/scan") in contract.seen
    summary = results[image]
    assert summary.status is ScanStatus.SUCCESS and summary.counts is not None
    assert (summary.counts.high, summary.counts.medium) == (2, 1)
    assert summary.counts_unit == "packages"


async def test_a_digest_cannot_be_scanned_on_1x(v16: SimulatorServer) -> None:
    contract = Contract()
    async with client(v16, contract) as harbor:
        with pytest.raises(UsageError, match="by tag"):
            await harbor.request_scan(ImageReference.parse(
                "library/grafana@sha256:" + "a" * 64))
    assert contract.seen == []


async def test_scan_all_up_to_1_7_is_repositories_scan_all(v16: SimulatorServer) -> None:
    """NOTES §9.4: POST /api/repositories/scanAll (202); the version comes from
    /api/systeminfo."""
    contract = Contract()
    async with client(v16, contract) as harbor:
        assert await harbor.harbor_version() == (1, 6)
        assert await harbor.trigger_scan_all() is True
    assert contract.operations() == ["get /systeminfo", "post /repositories/scanAll"]
    assert len(v16.state.executions) == 1
    assert v16.state.repos["library/team/app"].artifacts[0].scan is not None


async def test_scan_all_from_1_8_is_a_manual_schedule(v19: SimulatorServer) -> None:
    """harbor-v1.10-swagger.yaml: POST /api/system/scanAll/schedule {"schedule": {"type":
    "Manual"}}; a second one while it runs is refused (409): False."""
    contract = Contract()
    async with client(v19, contract) as harbor:
        assert await harbor.trigger_scan_all() is True
        assert await harbor.trigger_scan_all() is False
    assert contract.operations().count("post /system/scanAll/schedule") == 2
    assert "post /repositories/scanAll" not in contract.operations()


async def test_daily_schedule_up_to_1_7_is_the_scan_all_policy(v16: SimulatorServer) -> None:
    """NOTES §9.4: PUT /api/configurations {"scan_all_policy": {"type": "daily",
    "parameter": {"daily_time": N}}}, N seconds after 00:00 UTC: the seed's 00:00 in UTC+8 is
    16:00 UTC, N = 57600. Read back as a Daily schedule with that UTC cron."""
    contract = Contract()
    async with client(v16, contract) as harbor:
        assert await harbor.scan_all_schedule() is None
        await harbor.set_scan_all_schedule("Custom", "0 0 16 * * *")
        assert v16.state.scan_all_policy == {"type": "daily",
                                             "parameter": {"daily_time": 57600}}
        assert await harbor.scan_all_schedule() == ScanAllSchedule("Daily", "0 0 16 * * *")
        with pytest.raises(UsageError, match="only a daily"):
            await harbor.set_scan_all_schedule("Custom", "0 0 */6 * * *")
        await harbor.set_scan_all_schedule("None")
        assert await harbor.scan_all_schedule() is None
    assert v16.state.scan_all_policy == {"type": "none"}
    assert contract.operations().count("put /configurations") == 2  # the refused one unsent


async def test_schedule_from_1_8_is_the_system_schedule(v19: SimulatorServer) -> None:
    """harbor-v1.10-swagger.yaml: POST creates, PUT replaces, type None removes."""
    contract = Contract()
    async with client(v19, contract) as harbor:
        await harbor.set_scan_all_schedule("Custom", "0 30 2 * * *")
        await harbor.set_scan_all_schedule("Custom", "0 0 */6 * * *")
        assert await harbor.scan_all_schedule() == ScanAllSchedule("Custom", "0 0 */6 * * *")
        await harbor.set_scan_all_schedule("None")
        assert await harbor.scan_all_schedule() is None
        await harbor.set_scan_all_schedule("None")  # nothing to remove: nothing sent
    writes = [op for op in contract.operations() if not op.startswith("get ")]
    assert writes == ["post /system/scanAll/schedule", "put /system/scanAll/schedule",
                      "put /system/scanAll/schedule"]
    assert v19.state.schedule is None


async def test_scan_all_needs_the_system_admin(v16: SimulatorServer) -> None:
    async with client(v16, Contract(), user="dev", password="devpw") as harbor:
        with pytest.raises(HarborApiError) as caught:
            await harbor.set_scan_all_schedule("Daily", "0 0 0 * * *")
    assert caught.value.status == 403 and "system admin" in str(caught.value.hint)


class QuickClock:
    """A clock that moves only when slept on, ten times faster than the real sleep under it:
    a wait of seconds until a deadline costs a tenth of that, while the simulator's scans
    (which run on the real clock) still get real time to finish."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(seconds / 10)


async def test_the_nightly_rescan_goes_through_the_1x_scan(v16: SimulatorServer) -> None:
    """verify.rescan (the nightly job's rescans) on 1.x: by tag, through request_scan; a tag
    Harbor does not know (404) is left out with a warning."""
    v16.state.push("library/grafana", "4.1.2", "sha256:" + "b" * 64)
    contract = Contract()
    observer = RecordingObserver()
    pushed = ImageReference.parse("library/grafana:4.1.2")
    unknown = ImageReference.parse("library/grafana:9.9")
    clock = QuickClock()
    async with client(v16, contract, observer=observer) as harbor:
        results = await rescan(harbor, [pushed, unknown], timeout=2, interval=0.05,
                               observer=observer, clock=clock, sleep=clock.sleep)
    assert clock.now >= 2  # the unknown tag was asked again until the deadline
    assert set(results) == {pushed}
    assert results[pushed].status is ScanStatus.SUCCESS
    assert "post /repositories/{repo_name}/tags/{tag}/scan" in contract.operations()
    assert any("library/grafana:9.9" in w for w in observer.of_kind("warning"))


async def test_open_harbor_finds_1x_and_says_so(v16: SimulatorServer) -> None:
    observer = RecordingObserver()
    settings = HarborSettings(url=v16.url, user="admin", password=SecretStr(PASSWORD))
    harbor = await open_harbor(settings, observer=observer)
    await harbor.aclose()
    assert isinstance(harbor, HarborV1Client)
    assert any("1.x API" in line for line in observer.of_kind("info"))


@pytest.mark.parametrize(("policy", "cron"), [
    ({"type": "daily", "parameter": {"daily_time": 57600}}, "0 0 16 * * *"),
    ({"type": "daily", "parameter": {"daily_time": 9045}}, "45 30 2 * * *"),
    ({"type": "daily"}, "0 0 0 * * *"),
    ({"type": "none"}, None),
    (None, None),
])
def test_policy_and_schedule_convert_both_ways(policy: Any, cron: str | None) -> None:
    schedule = schedule_of_policy(policy)
    assert (schedule.cron if schedule else None) == cron
    if schedule is not None and policy.get("parameter"):
        assert policy_of_schedule("Custom", cron) == policy


@pytest.mark.parametrize("cron", ["0 0 24 * * *", "0 60 1 * * *", "0 0 1 * * 1", "", "x"])
def test_only_a_daily_time_fits_the_policy(cron: str) -> None:
    with pytest.raises(UsageError):
        policy_of_schedule("Custom", cron)


def test_a_1_10_overview_is_keyed_by_mime_type() -> None:
    """NOTES §9.3: Harbor 1.10's tags carry the v2-style overview (so `scan --wait` on 1.10
    sees its scans finish)."""
    from careen.registries.harbor_v1 import summary_from_v1

    mime = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
    done = summary_from_v1({mime: {
        "report_id": "r1", "scan_status": "Success", "severity": "High", "duration": 12,
        "summary": {"total": 4, "fixable": 1, "summary": {"High": 1, "Medium": 3}},
        "start_time": "2020-02-01T08:00:00Z", "end_time": "2020-02-01T08:00:12Z"}})
    assert done.status is ScanStatus.SUCCESS and done.counts is not None
    assert (done.counts.high, done.counts.medium) == (1, 3)
    running = summary_from_v1({mime: {"report_id": "r2", "scan_status": "Running"}})
    assert running.status is ScanStatus.RUNNING and running.counts is None


async def test_harbor_1_10_scans_and_schedules() -> None:
    """NOTES §9.3, harbor-v1.10-swagger.yaml throughout: the scan is 202, the overview keyed
    by MIME type (vulnerabilities, not packages), the schedule the system one."""
    contract = Contract("v1.10")
    image = ImageReference.parse("library/team/app:1.0")
    with server("1.10.1") as sim:
        async with client(sim, contract) as harbor:
            await harbor.request_scan(image)
            results = await harbor.wait_for_scans([image], timeout=10, interval=0.05)
            await harbor.set_scan_all_schedule("Custom", "0 0 16 * * *")
            assert await harbor.scan_all_schedule() == ScanAllSchedule("Custom", "0 0 16 * * *")
    summary = results[image]
    assert summary.status is ScanStatus.SUCCESS and summary.counts is not None
    assert (summary.counts.high, summary.counts.medium) == (2, 1)
    assert summary.counts_unit != "packages"
    assert "post /system/scanAll/schedule" in contract.operations()
