"""The Harbor v2 client against scripted, spec-shaped answers (httpx.MockTransport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from careen.errors import ServiceError, UsageError
from careen.events import RecordingObserver
from careen.inventory import Artifact, Platform
from careen.reference import ImageReference
from careen.registries.harbor_v2 import (
    ACCEPT_VULNERABILITIES,
    HarborV2Client,
    artifact_from_json,
    combine_children,
    parse_vulnerabilities,
    repository_segment,
    schedule_body,
    summary_from_overview,
)
from careen.registries.interface import ScanSource
from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts

from .fakes import (
    DIGEST_A,
    DIGEST_B,
    DIGEST_C,
    DIGEST_D,
    MIME_V10,
    MIME_V11,
    FakeHarbor,
    RecordingSleep,
    artifact,
    digest,
    error,
    json_response,
    overview,
    paged,
    query,
    reference,
    settings,
)

HOST = "harbor.example.com"
V2 = "/api/v2.0"


def client(fake: FakeHarbor, observer: RecordingObserver | None = None,
           sleep: RecordingSleep | None = None, **overrides: Any) -> HarborV2Client:
    return HarborV2Client(settings(**overrides), transport=fake.transport(),
                          observer=observer or RecordingObserver(),
                          sleep=sleep or RecordingSleep())


def systeminfo(fake: FakeHarbor, version: str | None) -> None:
    body: dict[str, Any] = {"auth_mode": "db_auth", "self_registration": False}
    if version:
        body.update(harbor_version=version, registry_url=HOST)
    fake.route(f"{V2}/systeminfo", body)


async def collect(harbor: HarborV2Client, projects: list[str] | None = None) -> list[Artifact]:
    found = [a async for a in harbor.artifacts(projects)]
    await harbor.aclose()
    return found


def test_the_client_is_a_scan_source() -> None:
    source: ScanSource = HarborV2Client(settings())
    assert source is not None


# -- listing strategies and paging ------------------------------------------------------------


async def test_project_wide_listing_on_2_12_pages_concurrently(fake: FakeHarbor) -> None:
    systeminfo(fake, "v2.12.1-0b0c4a1")
    fake.route(f"{V2}/projects", paged([{"name": "library", "project_id": 1}]))
    items = [artifact(f"library/app{n}", digest(n), [f"1.{n}"], scan=overview({"Low": 1}))
             for n in range(250)]
    fake.route(f"{V2}/projects/library/artifacts", paged(items))
    harbor = client(fake)
    found = await collect(harbor)
    assert sorted(a.digest for a in found) == sorted(digest(n) for n in range(250))
    assert sorted(fake.pages_of(f"{V2}/projects/library/artifacts")) == [1, 2, 3]
    assert not any("/repositories" in p for p in fake.paths())
    assert fake.max_in_flight >= 2  # pages 2 and 3 overlapped
    listing = next(r for r in fake.requests if r.url.path.endswith("/library/artifacts"))
    assert query(listing).items() >= {"with_tag": "true", "with_scan_overview": "true",
                                      "with_immutable_status": "true",
                                      "page_size": "100"}.items()
    assert listing.headers["X-Accept-Vulnerabilities"] == ACCEPT_VULNERABILITIES
    assert listing.headers["X-Is-Resource-Name"] == "true"
    assert harbor.stats.requests == len(fake.requests)


async def test_per_repository_listing_before_2_12(fake: FakeHarbor) -> None:
    systeminfo(fake, "v2.10.3-abc")
    fake.route(f"{V2}/projects", paged([{"name": "proj", "project_id": 2}]))
    fake.route(f"{V2}/projects/proj/repositories", paged([
        {"name": "proj/team/app", "artifact_count": 250, "project_id": 2},
        {"name": "proj/empty", "artifact_count": 0, "project_id": 2},
        {"name": "proj/solo", "artifact_count": 1, "project_id": 2},
    ]))
    big = [artifact("proj/team/app", digest(n), [f"v{n}"]) for n in range(250)]
    fake.route(f"{V2}/projects/proj/repositories/team%2Fapp/artifacts", paged(big))
    fake.route(f"{V2}/projects/proj/repositories/solo/artifacts",
               paged([artifact("proj/solo", DIGEST_A, ["latest"])]))
    found = await collect(client(fake))
    assert len(found) == 251
    # Double encoding on the wire: team/app -> team%2Fapp -> team%252Fapp.
    assert f"{V2}/projects/proj/repositories/team%252Fapp/artifacts" in fake.raw_paths()
    assert sorted(fake.pages_of(f"{V2}/projects/proj/repositories/team%2Fapp/artifacts")) == \
        [1, 2, 3]
    assert not any("empty" in p for p in fake.paths())  # artifact_count 0: not asked
    assert f"{V2}/projects/proj/artifacts" not in fake.paths()


async def test_unknown_version_probes_and_falls_back_on_404(fake: FakeHarbor) -> None:
    systeminfo(fake, None)  # anonymous view: no harbor_version
    fake.route(f"{V2}/projects", paged([{"name": "pub", "project_id": 3}]))
    fake.route(f"{V2}/projects/pub/repositories", paged([{"name": "pub/a", "artifact_count": 1}]))
    fake.route(f"{V2}/projects/pub/repositories/a/artifacts",
               paged([artifact("pub/a", DIGEST_A, ["1"])]))
    observer = RecordingObserver()
    found = await collect(client(fake, observer, user=None, password=None))
    assert [a.digest for a in found] == [DIGEST_A]
    assert fake.paths().count(f"{V2}/projects/pub/artifacts") == 1  # the probe, then 404
    assert observer.of_kind("warning") == []  # anonymous on purpose: nothing to warn about


async def test_unknown_version_uses_project_listing_when_it_answers(fake: FakeHarbor) -> None:
    systeminfo(fake, None)
    fake.route(f"{V2}/projects/pub/artifacts", paged([artifact("pub/a", DIGEST_A, ["1"])]))
    found = await collect(client(fake, user=None, password=None), ["pub"])
    assert [a.digest for a in found] == [DIGEST_A]
    assert not any("repositories" in p for p in fake.paths())


async def test_link_next_is_followed_when_the_total_is_absent(fake: FakeHarbor) -> None:
    systeminfo(fake, "v2.12.0")
    items = [artifact("p/a", digest(n), [f"t{n}"]) for n in range(230)]
    fake.route(f"{V2}/projects/p/artifacts",
               paged(items, total=False, link=True, base=f"{V2}/projects/p/artifacts"))
    found = await collect(client(fake), ["p"])
    assert len(found) == 230
    assert fake.pages_of(f"{V2}/projects/p/artifacts") == [1, 2, 3]


async def test_projects_are_listed_page_by_page(fake: FakeHarbor) -> None:
    systeminfo(fake, "v2.12.0")
    projects = [{"name": f"p{n}", "project_id": n} for n in range(130)]
    fake.route(f"{V2}/projects", paged(projects))
    for n in range(130):
        fake.route(f"{V2}/projects/p{n}/artifacts",
                   paged([artifact(f"p{n}/app", digest(n), ["1"])]))
    found = await collect(client(fake))
    assert len(found) == 130
    assert sorted(fake.pages_of(f"{V2}/projects")) == [1, 2]


async def test_a_failed_page_is_retried_alone(fake: FakeHarbor, sleep: RecordingSleep) -> None:
    systeminfo(fake, "v2.12.0")
    items = [artifact("p/a", digest(n), [f"t{n}"]) for n in range(300)]
    listing = paged(items)
    page_2_failures = [503, 500]
    page_3_drops = [True]

    def handle(request: httpx.Request) -> httpx.Response:
        page = int(query(request)["page"])
        if page == 2 and page_2_failures:
            return error(page_2_failures.pop(0), "UNKNOWN", "internal server error")
        if page == 3 and page_3_drops:
            page_3_drops.pop()
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return listing(request)  # type: ignore[return-value]

    fake.route(f"{V2}/projects/p/artifacts", handle)
    found = await collect(client(fake, sleep=sleep), ["p"])
    assert len(found) == 300 and len({a.digest for a in found}) == 300
    pages = fake.pages_of(f"{V2}/projects/p/artifacts")
    # Page 1 once, never the listing; page 3 is full, so page 4 is asked (and is empty).
    assert sorted(pages) == [1, 2, 2, 2, 3, 3, 4]


async def test_a_page_that_keeps_failing_ends_the_crawl_with_a_service_error(
        fake: FakeHarbor, sleep: RecordingSleep) -> None:
    systeminfo(fake, "v2.12.0")
    items = [artifact("p/a", digest(n), [f"t{n}"]) for n in range(150)]
    listing = paged(items)

    def handle(request: httpx.Request) -> httpx.Response:
        if query(request)["page"] == "2":
            return error(500, "UNKNOWN", "internal server error")
        return listing(request)  # type: ignore[return-value]

    fake.route(f"{V2}/projects/p/artifacts", handle)
    with pytest.raises(ServiceError) as caught:
        await collect(client(fake, sleep=sleep, max_attempts=3), ["p"])
    assert "500" in str(caught.value) and HOST in str(caught.value)
    assert fake.pages_of(f"{V2}/projects/p/artifacts").count(2) == 3


async def test_streaming_keeps_the_crawl_bounded(fake: FakeHarbor) -> None:
    """A consumer that stops early leaves most pages unread: the crawl waits for it."""
    systeminfo(fake, "v2.12.0")
    items = [artifact("p/a", digest(n), [f"t{n}"]) for n in range(5000)]
    fake.route(f"{V2}/projects/p/artifacts", paged(items))
    harbor = client(fake, concurrency=2, queue_size=10)
    stream = harbor.artifacts(["p"])
    first = [await anext(stream) for _ in range(3)]
    await stream.aclose()  # type: ignore[attr-defined]
    await harbor.aclose()
    assert len(first) == 3
    assert len(fake.pages_of(f"{V2}/projects/p/artifacts")) < 10  # of 50 pages


async def test_credentials_answered_as_anonymous_are_warned_about(fake: FakeHarbor) -> None:
    systeminfo(fake, None)
    fake.route(f"{V2}/projects/pub/artifacts", paged([]))
    observer = RecordingObserver()
    harbor = client(fake, observer)
    await collect(harbor, ["pub"])
    assert harbor.credentials_accepted is False
    warnings = observer.of_kind("warning")
    assert any("credentials were not accepted; Harbor answered as anonymous" in w
               for w in warnings)
    assert all("s3cret" not in w for w in warnings)


async def test_bad_project_names_from_the_caller_are_usage_errors(fake: FakeHarbor) -> None:
    with pytest.raises(UsageError):
        client(fake).artifacts(["../etc"])


# -- mapping ----------------------------------------------------------------------------------


def warn_into(sink: list[str]) -> Any:
    return sink.append


def test_multi_tag_immutable_and_success_summary() -> None:
    warnings: list[str] = []
    raw = artifact("library/team/app", DIGEST_A, ["1.4.2", "latest"], immutable=("1.4.2",),
                   scan=overview({"High": 1, "Medium": 3, "Low": 5}, fixable=7))
    a = artifact_from_json(raw, registry=HOST, warn=warn_into(warnings))
    assert a is not None and warnings == []
    assert a.repository == "library/team/app" and a.tags == ("1.4.2", "latest")
    assert a.immutable_tags == ("1.4.2",)
    assert a.scan.status is ScanStatus.SUCCESS
    assert a.scan.counts == SeverityCounts(high=1, medium=3, low=5)
    assert a.scan.fixable_total == 7 and a.scan.scanner == "Trivy v0.50.1"
    assert a.scan.scanned_at is not None and a.push_time is not None
    assert [str(r) for r in a.references()] == [f"{HOST}/library/team/app:1.4.2",
                                                f"{HOST}/library/team/app:latest"]


def test_both_report_mime_keys_are_read() -> None:
    for mime in (MIME_V11, MIME_V10):
        summary = summary_from_overview(overview({"Critical": 2}, mime=mime))
        assert summary.counts == SeverityCounts(critical=2)
        assert summary.extra["mime_type"] == mime
    both = {**overview({"Low": 1}, mime=MIME_V10), **overview({"High": 4}, mime=MIME_V11)}
    assert summary_from_overview(both).counts == SeverityCounts(high=4)


def test_absent_overview_is_not_scanned_and_untagged_is_kept() -> None:
    a = artifact_from_json(artifact("p/a", DIGEST_A, None), registry=HOST,
                           warn=pytest.fail)
    assert a is not None and a.tags == () and a.scan.status is ScanStatus.NOT_SCANNED
    assert [r.digest for r in a.references()] == [DIGEST_A]


@pytest.mark.parametrize(("status", "expected"), [
    ("Pending", ScanStatus.PENDING), ("Running", ScanStatus.RUNNING),
    ("Error", ScanStatus.ERROR), ("Stopped", ScanStatus.STOPPED),
    ("Scheduled", ScanStatus.PENDING)])
def test_non_success_shape_has_no_counts(status: str, expected: ScanStatus) -> None:
    summary = summary_from_overview(overview(status=status))
    assert summary.status is expected and summary.counts is None and not summary.succeeded


def test_zero_vulnerabilities_is_success_with_zero_counts() -> None:
    summary = summary_from_overview(overview({}))
    assert summary.succeeded and summary.counts == SeverityCounts()


def test_index_keeps_children_and_platforms() -> None:
    raw = artifact("p/multi", DIGEST_A, ["1.0"], scan=overview({"High": 1}), references=[
        reference(DIGEST_B, "amd64"), reference(DIGEST_C, "arm64", "v8")])
    a = artifact_from_json(raw, registry=HOST, warn=pytest.fail)
    assert a is not None and a.is_index
    assert a.children == (DIGEST_B, DIGEST_C)
    assert a.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64", "v8"))
    assert a.scan.counts == SeverityCounts(high=1)


async def test_index_without_overview_combines_children_worst_per_severity(
        fake: FakeHarbor) -> None:
    systeminfo(fake, "v2.12.0")
    index = artifact("p/multi", DIGEST_A, ["1.0"], references=[
        reference(DIGEST_B, "amd64"), reference(DIGEST_C, "arm64"), reference(DIGEST_D, "s390x")])
    fake.route(f"{V2}/projects/p/artifacts", paged([index]))
    base = f"{V2}/projects/p/repositories/multi/artifacts"
    fake.route(f"{base}/{DIGEST_B}",
               artifact("p/multi", DIGEST_B, None, scan=overview({"High": 2, "Low": 9})))
    fake.route(f"{base}/{DIGEST_C}",
               artifact("p/multi", DIGEST_C, None, scan=overview({"High": 1, "Medium": 4})))
    fake.route(f"{base}/{DIGEST_D}", artifact("p/multi", DIGEST_D, None))  # not scanned
    [found] = await collect(client(fake), ["p"])
    assert found.scan.status is ScanStatus.SUCCESS
    assert found.scan.counts == SeverityCounts(high=2, medium=4, low=9)
    assert found.scan.extra["children_scanned"] == "2/3"


def test_combine_children_without_success() -> None:
    assert combine_children([ScanSummary.not_scanned()]).status is ScanStatus.NOT_SCANNED
    running = combine_children([ScanSummary(status=ScanStatus.ERROR),
                                ScanSummary(status=ScanStatus.RUNNING)])
    assert running.status is ScanStatus.RUNNING


HOSTILE = ["p/a;rm -rf /", "p/$(reboot)", "p/a b", "p/../etc", "p/a\nb", "p/" + "a" * 300,
           "P/Upper", "p/a/", "", "p//a"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_repository_names_are_skipped_with_a_warning(name: str) -> None:
    warnings: list[str] = []
    assert artifact_from_json(artifact(name, DIGEST_A, ["1"]), registry=HOST,
                              warn=warnings.append) is None
    assert len(warnings) == 1 and "\n" not in warnings[0]


def test_hostile_tags_are_skipped_and_the_rest_kept() -> None:
    warnings: list[str] = []
    raw = artifact("p/a", DIGEST_A, ["ok", "bad;tag", "$(x)", "a\nb", "-dash", "x" * 200])
    a = artifact_from_json(raw, registry=HOST, warn=warnings.append)
    assert a is not None and a.tags == ("ok",) and len(warnings) == 5
    only_bad = artifact("p/a", DIGEST_A, ["../x"])
    assert artifact_from_json(only_bad, registry=HOST, warn=warnings.append) is None


def test_bad_digest_is_skipped() -> None:
    warnings: list[str] = []
    assert artifact_from_json(artifact("p/a", "sha256:zz;", ["1"]), registry=HOST,
                              warn=warnings.append) is None
    assert warnings


@hsettings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.lists(st.text(max_size=140), max_size=4),
       st.text(max_size=80))
def test_any_server_names_never_crash_or_become_invalid_references(
        name: str, tags: list[str], digest_: str) -> None:
    raw = artifact(name, digest_, tags)
    a = artifact_from_json(raw, registry=HOST, warn=lambda _m: None)
    if a is not None:
        for ref in a.references():
            assert ImageReference.parse(str(ref)) == ref


async def test_hostile_names_do_not_stop_the_crawl(fake: FakeHarbor) -> None:
    systeminfo(fake, "v2.11.0")
    fake.route(f"{V2}/projects/p/repositories", paged([
        {"name": "p/ok", "artifact_count": 2}, {"name": "p/$(reboot)", "artifact_count": 1},
        {"name": "q/other-project", "artifact_count": 1}]))
    fake.route(f"{V2}/projects/p/repositories/ok/artifacts", paged([
        artifact("p/ok", DIGEST_A, ["1", "bad tag"]), artifact("p/ok;x", DIGEST_B, ["2"])]))
    observer = RecordingObserver()
    found = await collect(client(fake, observer), ["p"])
    assert [(a.digest, a.tags) for a in found] == [(DIGEST_A, ("1",))]
    assert len(observer.of_kind("warning")) == 4
    assert not any("reboot" in p for p in fake.paths())


def test_repository_segment_is_encoded_twice() -> None:
    assert repository_segment("library/nginx", "library") == "nginx"
    assert repository_segment("proj/team/app", "proj") == "team%252Fapp"
    assert repository_segment("proj/a/b/c", "proj") == "a%252Fb%252Fc"


# -- one artifact, vulnerabilities, scans -----------------------------------------------------


async def test_scan_summary_by_tag_and_digest(fake: FakeHarbor) -> None:
    base = f"{V2}/projects/proj/repositories/team%2Fapp/artifacts"
    body = artifact("proj/team/app", DIGEST_A, ["1.0"], scan=overview({"Medium": 3}))
    fake.route(f"{base}/1.0", body)
    fake.route(f"{base}/{DIGEST_A}", body)
    harbor = client(fake)
    by_tag = await harbor.scan_summary(ImageReference.parse("proj/team/app:1.0"))
    by_digest = await harbor.scan_summary(ImageReference.parse(f"proj/team/app@{DIGEST_A}"))
    await harbor.aclose()
    assert by_tag.counts == by_digest.counts == SeverityCounts(medium=3)
    assert fake.raw_paths()[0] == f"{V2}/projects/proj/repositories/team%252Fapp/artifacts/1.0"
    assert query(fake.requests[0])["with_scan_overview"] == "true"


async def test_missing_artifact_is_a_service_error(fake: FakeHarbor) -> None:
    harbor = client(fake)
    with pytest.raises(ServiceError) as caught:
        await harbor.scan_summary(ImageReference.parse("p/a:1"))
    await harbor.aclose()
    assert "404" in str(caught.value)


VULNS = {MIME_V11: {
    "generated_at": "2024-05-02T10:12:17.000Z",
    "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
    "severity": "High",
    "vulnerabilities": [
        {"id": "CVE-2024-0001", "package": "openssl", "version": "3.0.1",
         "fix_version": "3.0.13", "severity": "High", "description": "bad",
         "links": ["https://avd.aquasec.com/nvd/cve-2024-0001"]},
        {"id": "CVE-2024-0002", "package": "zlib", "version": "1.2", "fix_version": "",
         "severity": "High", "links": None},
        {"id": "CVE-2024-0003", "package": "curl", "version": "8.0", "fix_version": "8.5",
         "severity": "Medium"},
    ]}}


def test_parse_vulnerabilities() -> None:
    report = parse_vulnerabilities(VULNS)
    assert report is not None and report.scanner == "Trivy v0.50.1"
    first = report.vulnerabilities[0]
    assert (first.id, first.package, first.version, first.fix_version, first.severity) == (
        "CVE-2024-0001", "openssl", "3.0.1", "3.0.13", Severity.HIGH)
    assert first.links == ("https://avd.aquasec.com/nvd/cve-2024-0001",)
    assert report.vulnerabilities[1].fix_version is None
    assert report.counts == SeverityCounts(high=2, medium=1)
    assert report.fixable == SeverityCounts(high=1, medium=1)
    assert parse_vulnerabilities({}) is None


async def test_scan_summary_with_fixable(fake: FakeHarbor) -> None:
    base = f"{V2}/projects/p/repositories/a/artifacts"
    fake.route(f"{base}/1", artifact("p/a", DIGEST_A, ["1"],
                                     scan=overview({"High": 2, "Medium": 1}, fixable=2)))
    fake.route(f"{base}/1/additions/vulnerabilities", VULNS)
    harbor = client(fake)
    summary = await harbor.scan_summary_with_fixable(ImageReference.parse("p/a:1"))
    await harbor.aclose()
    assert summary.fixable == SeverityCounts(high=1, medium=1) and summary.fixable_total == 2
    vuln_request = fake.requests[-1]
    assert vuln_request.headers["X-Accept-Vulnerabilities"] == ACCEPT_VULNERABILITIES


async def test_request_scan_accepts_202_and_409(fake: FakeHarbor) -> None:
    answers = [httpx.Response(202), error(409, "CONFLICT", "a previous scan process is Running")]
    fake.route(f"{V2}/projects/p/repositories/team%2Fa/artifacts/1/scan",
               lambda r: answers.pop(0))
    observer = RecordingObserver()
    harbor = client(fake, observer)
    image = ImageReference.parse("p/team/a:1")
    await harbor.request_scan(image)
    await harbor.request_scan(image)
    await harbor.aclose()
    assert [r.method for r in fake.requests] == ["POST", "POST"]
    assert fake.raw_paths()[0].endswith("/repositories/team%252Fa/artifacts/1/scan")
    assert observer.of_kind("info")


async def test_request_scan_forbidden_names_the_permission(fake: FakeHarbor) -> None:
    fake.route(f"{V2}/projects/p/repositories/a/artifacts/1/scan",
               lambda r: error(403, "FORBIDDEN", "forbidden"))
    harbor = client(fake)
    with pytest.raises(ServiceError) as caught:
        await harbor.request_scan(ImageReference.parse("p/a:1"))
    await harbor.aclose()
    assert "scan" in (caught.value.hint or "") and "'admin'" in (caught.value.hint or "")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_wait_for_scans_polls_until_final(fake: FakeHarbor) -> None:
    states = iter([None, "Pending", "Running", "Success"])

    def handle(request: httpx.Request) -> httpx.Response:
        status = next(states)
        scan = None if status is None else overview({"Low": 1}, status=status)
        return json_response(artifact("p/a", DIGEST_A, ["1"], scan=scan))

    fake.route(f"{V2}/projects/p/repositories/a/artifacts/1", handle)
    clock = FakeClock()

    async def tick(seconds: float) -> None:
        clock.now += seconds

    harbor = HarborV2Client(settings(), transport=fake.transport(), sleep=tick, clock=clock)
    image = ImageReference.parse("p/a:1")
    result = await harbor.wait_for_scans([image], timeout=60, interval=5)
    await harbor.aclose()
    assert result[image].status is ScanStatus.SUCCESS
    assert len(fake.requests) == 4 and clock.now == 15


async def test_wait_for_scans_gives_up_at_the_timeout(fake: FakeHarbor) -> None:
    fake.route(f"{V2}/projects/p/repositories/a/artifacts/1", lambda r: json_response(
        artifact("p/a", DIGEST_A, ["1"], scan=overview(status="Running"))))
    clock = FakeClock()

    async def tick(seconds: float) -> None:
        clock.now += seconds

    harbor = HarborV2Client(settings(), transport=fake.transport(), sleep=tick, clock=clock)
    image = ImageReference.parse("p/a:1")
    result = await harbor.wait_for_scans([image], timeout=12, interval=5)
    await harbor.aclose()
    assert result[image].status is ScanStatus.RUNNING
    assert clock.now == 12 and len(fake.requests) == 4


# -- scan-all ---------------------------------------------------------------------------------


async def test_schedule_round_trip(fake: FakeHarbor) -> None:
    stored: dict[str, Any] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            if not stored:
                return httpx.Response(200)  # Harbor's empty body: no schedule
            return json_response({"id": 3, "status": "Running", "schedule": stored})
        body = json.loads(request.content)["schedule"]
        if request.method == "POST":
            if stored:
                return error(412, "PRECONDITION", "always had one")
            stored.update(body)
            return httpx.Response(201, headers={"Location": "/api/v2.0/system/scanAll/schedule"})
        if body["type"] == "None":
            stored.clear()
        else:
            stored.clear()
            stored.update(body)
        return httpx.Response(200)

    fake.route(f"{V2}/system/scanAll/schedule", handle)
    harbor = client(fake)
    assert await harbor.scan_all_schedule() is None
    await harbor.set_scan_all_schedule("Daily")
    first = await harbor.scan_all_schedule()
    assert first is not None and (first.type, first.cron) == ("Daily", "0 0 0 * * *")
    await harbor.set_scan_all_schedule("Custom", "0 30 2 * * *")
    second = await harbor.scan_all_schedule()
    assert second is not None and (second.type, second.cron) == ("Custom", "0 30 2 * * *")
    await harbor.set_scan_all_schedule("None")
    assert await harbor.scan_all_schedule() is None
    await harbor.aclose()
    writes = [r.method for r in fake.requests if r.method != "GET"]
    assert writes == ["POST", "PUT", "PUT"]
    assert all("cookie" not in r.headers for r in fake.requests)


@pytest.mark.parametrize(("kind", "cron"), [
    ("Daily", "0 0 * * *"), ("Daily", "5 0 0 * * *"), ("Custom", None), ("Manual", None),
    ("Yearly", None)])
def test_bad_schedules_are_usage_errors(kind: str, cron: str | None) -> None:
    with pytest.raises(UsageError):
        schedule_body(kind, cron)


async def test_trigger_scan_all_and_metrics(fake: FakeHarbor) -> None:
    answers = [httpx.Response(201), error(409, "CONFLICT", "a previous scan all job aleady "
                                          "exits, its status is Running")]
    fake.route(f"{V2}/system/scanAll/schedule", lambda r: answers.pop(0))
    fake.route(f"{V2}/scans/all/metrics", {"total": 10, "completed": 4, "ongoing": True,
                                           "metrics": {"Success": 3, "Error": 1, "Running": 6},
                                           "trigger": "Manual"})
    harbor = client(fake)
    assert await harbor.trigger_scan_all() is True
    assert await harbor.trigger_scan_all() is False
    metrics = await harbor.scan_all_metrics()
    await harbor.aclose()
    assert (metrics.total, metrics.completed, metrics.ongoing, metrics.trigger) == (
        10, 4, True, "Manual")
    assert metrics.metrics["Running"] == 6
    assert json.loads(fake.requests[0].content) == {"schedule": {"type": "Manual"}}


async def test_metrics_before_any_scan_all(fake: FakeHarbor) -> None:
    fake.route(f"{V2}/scans/all/metrics", {"total": 0, "completed": 0, "ongoing": False})
    harbor = client(fake)
    metrics = await harbor.scan_all_metrics()
    await harbor.aclose()
    assert metrics.total == 0 and metrics.metrics == {} and metrics.trigger is None


async def test_ping_and_systeminfo(fake: FakeHarbor) -> None:
    fake.route(f"{V2}/ping", lambda r: httpx.Response(200, text="Pong",
                                                      headers={"Content-Type": "text/plain"}))
    systeminfo(fake, "v2.12.1-0b0c4a1")
    harbor = client(fake)
    assert await harbor.ping() is True
    info = await harbor.systeminfo()
    await harbor.aclose()
    assert info.version == (2, 12) and harbor.project_listing is True
    assert harbor.credentials_accepted is True
