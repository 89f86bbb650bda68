"""The Harbor 1.x client's reads against scripted answers shaped after NOTES section 8(d)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from careen.errors import ServiceError, UsageError
from careen.events import RecordingObserver
from careen.reference import ImageReference
from careen.registries.harbor_v1 import HarborV1Client, summary_from_v1
from careen.registries.interface import ScanSource
from careen.scan import ScanStatus, SeverityCounts

from .fakes import (
    DIGEST_A,
    DIGEST_B,
    FakeHarbor,
    Handler,
    RecordingSleep,
    json_response,
    query,
    settings,
)
from .fakes import paged as v2_paged

HOST = "harbor.example.com"


def paged(items: list[Any]) -> Handler:
    return v2_paged(items, max_page_size=500)


def v1_overview(summary: list[dict[str, int]] | None, status: str = "finished",
                digest: str = DIGEST_A) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image_digest": digest, "scan_status": status, "job_id": 17,
        "severity": max((e["severity"] for e in summary or []), default=0),
        "details_key": "7c2f", "creation_time": "2018-08-01T08:00:00Z",
        "update_time": "2018-08-01T08:00:30Z"}
    if summary is not None:
        body["components"] = {"total": sum(e["count"] for e in summary), "summary": summary}
    return body


def v1_tag(name: str, digest: str, overview: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "digest": digest, "name": name, "size": 44700000, "architecture": "amd64",
        "os": "linux", "docker_version": "17.06.2-ce", "author": "",
        "created": "2018-07-10T10:20:30.123Z", "config": {"labels": {}}, "signature": None,
        "labels": []}
    if overview is not None:
        body["scan_overview"] = overview
    return body


def test_the_client_is_a_scan_source() -> None:
    source: ScanSource = HarborV1Client(settings())
    assert source is not None


def test_v1_overview_counts_packages_by_worst_severity() -> None:
    summary = summary_from_v1(v1_overview(
        [{"severity": 5, "count": 5}, {"severity": 1, "count": 100}, {"severity": 4, "count": 15},
         {"severity": 3, "count": 2}, {"severity": 2, "count": 1}]))
    assert summary.status is ScanStatus.SUCCESS
    assert summary.counts == SeverityCounts(high=5, medium=15, low=2, unknown=1, none=100)
    assert summary.counts_unit == "packages"
    assert summary.scanned_at is not None and summary.extra["job_id"] == "17"


@pytest.mark.parametrize(("status", "expected"), [
    ("pending", ScanStatus.PENDING), ("running", ScanStatus.RUNNING),
    ("error", ScanStatus.ERROR), ("stopped", ScanStatus.STOPPED),
    ("retrying", ScanStatus.PENDING), ("canceled", ScanStatus.STOPPED)])
def test_v1_unfinished_scans_have_no_counts(status: str, expected: ScanStatus) -> None:
    summary = summary_from_v1(v1_overview(None, status))
    assert summary.status is expected and summary.counts is None


def test_v1_absent_overview_is_not_scanned() -> None:
    assert summary_from_v1(None).status is ScanStatus.NOT_SCANNED


def test_v1_odd_severity_numbers_count_as_unknown() -> None:
    summary = summary_from_v1(v1_overview([{"severity": 0, "count": 2},
                                           {"severity": 9, "count": 1}]))
    assert summary.counts == SeverityCounts(unknown=3)


async def test_v1_inventory(fake: FakeHarbor) -> None:
    fake.route("/api/projects", paged([{"project_id": 1, "name": "library"},
                                       {"project_id": 2, "name": "other"}]))

    def repositories(request: httpx.Request) -> httpx.Response:
        if query(request)["project_id"] == "1":
            return json_response([{"id": 1, "name": "library/nginx", "tags_count": 3},
                                  {"id": 2, "name": "library/team/app", "tags_count": 1},
                                  {"id": 3, "name": "library/empty", "tags_count": 0},
                                  {"id": 4, "name": "library/$(boom)", "tags_count": 1}],
                                 total=4)
        return json_response([], total=0)

    fake.route("/api/repositories", repositories)
    fake.route("/api/repositories/library/nginx/tags", [
        v1_tag("1.13", DIGEST_A, v1_overview([{"severity": 5, "count": 5}])),
        v1_tag("latest", DIGEST_A, v1_overview([{"severity": 5, "count": 5}])),
        v1_tag("1.12", DIGEST_B),
        v1_tag("bad tag", DIGEST_B)])
    fake.route("/api/repositories/library/team/app/tags", [v1_tag("2.0", DIGEST_B)])
    observer = RecordingObserver()
    harbor = HarborV1Client(settings(), transport=fake.transport(), observer=observer)
    found = {(a.repository, a.digest): a async for a in harbor.artifacts()}
    await harbor.aclose()
    assert set(found) == {("library/nginx", DIGEST_A), ("library/nginx", DIGEST_B),
                          ("library/team/app", DIGEST_B)}
    multi = found[("library/nginx", DIGEST_A)]
    assert multi.tags == ("1.13", "latest") and multi.scan.counts == SeverityCounts(high=5)
    assert multi.registry == HOST
    assert found[("library/nginx", DIGEST_B)].scan.status is ScanStatus.NOT_SCANNED
    # Raw repository names, slashes unencoded; v1 pages up to 500.
    assert "/api/repositories/library/team/app/tags" in fake.raw_paths()
    assert all(query(r)["page_size"] == "500" for r in fake.requests
               if r.url.path in ("/api/projects", "/api/repositories"))
    assert not any("empty" in p or "boom" in p for p in fake.paths())
    assert len(observer.of_kind("warning")) == 2


async def test_v1_project_filter(fake: FakeHarbor) -> None:
    fake.route("/api/projects", paged([{"project_id": 1, "name": "library"}]))
    fake.route("/api/repositories", paged([]))
    observer = RecordingObserver()
    harbor = HarborV1Client(settings(), transport=fake.transport(), observer=observer)
    found = [a async for a in harbor.artifacts(["nope"])]
    await harbor.aclose()
    assert found == [] and "/api/repositories" not in fake.paths()
    assert any("nope" in w for w in observer.of_kind("warning"))


async def test_v1_scan_summary_and_tags_only(fake: FakeHarbor) -> None:
    fake.route("/api/repositories/library/team/app/tags/2.0",
               v1_tag("2.0", DIGEST_B, v1_overview([{"severity": 4, "count": 3}])))
    harbor = HarborV1Client(settings(), transport=fake.transport())
    summary = await harbor.scan_summary(ImageReference.parse("library/team/app:2.0"))
    assert summary.counts == SeverityCounts(medium=3)
    with pytest.raises(UsageError):  # 1.x scans by tag (its writes: test_harbor_v1_writes)
        await harbor.request_scan(ImageReference.parse(f"library/app@{DIGEST_A}"))
    with pytest.raises(UsageError):
        await harbor.scan_summary(ImageReference.parse(f"library/app@{DIGEST_A}"))
    await harbor.aclose()


async def test_v1_plain_text_errors(fake: FakeHarbor, sleep: RecordingSleep) -> None:
    fake.route("/api/projects", lambda r: httpx.Response(
        401, text="Unauthorized\n", headers={"Content-Type": "text/plain; charset=utf-8"}))
    harbor = HarborV1Client(settings(), transport=fake.transport(), sleep=sleep)
    with pytest.raises(ServiceError) as caught:
        [a async for a in harbor.artifacts()]
    await harbor.aclose()
    assert "401" in str(caught.value) and "Unauthorized" in str(caught.value)
    assert "CAREEN_HARBOR_PASSWORD" in (caught.value.hint or "")
