"""Vulnerability details (issue 14): parsing Harbor's answers, reading them bounded and only
once refused, keeping them in the state, and before/after explained from them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from careen.details import (
    Finding,
    diff_findings,
    explain_not_helped,
    parse_v1_details,
    parse_v2_report,
    read_details,
)
from careen.events import RecordingObserver
from careen.inventory import Image
from careen.plan import Plan, PlanStep, SkippedImage, SkipReason, StepReason
from careen.reference import ImageReference
from careen.registries.harbor_v1 import HarborV1Client
from careen.registries.harbor_v2 import REPORT_MIME_TYPES, HarborV2Client
from careen.registries.http import HarborApiError, HarborSettings
from careen.results import ImageResult, Outcome
from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from careen.state.details import DetailsStore
from careen.state.store import RunKind, ScanPhase, StateStore
from tests.reports.sample import OPENSSL_OLD, ZLIB_UNFIXED

MIME = REPORT_MIME_TYPES[0]


def trivy_item(cve: str, package: str, version: str, fix: str, severity: str,
               score: float | None = None) -> dict[str, Any]:
    """One item as Harbor's Trivy adapter writes it (NOTES §6.6, pkg/scan/vuln/report.go)."""
    return {
        "id": cve, "package": package, "version": version, "fix_version": fix,
        "severity": severity, "status": "fixed" if fix else "affected",
        "description": f"{package}: a flaw", "links": [
            f"https://avd.aquasec.com/nvd/{cve.lower()}"],
        "artifact_digests": ["sha256:" + "4" * 64],
        "preferred_cvss": {"score_v3": score, "score_v2": None,
                           "vector_v3": "CVSS:3.1/AV:N/AC:L" if score else "", "vector_v2": ""},
        "cwe_ids": ["CWE-787"], "vendor_attributes": {"CVSS": {}},
    }


def test_a_trivy_report_parses_with_scores_and_fixes() -> None:
    body = {MIME: {
        "generated_at": "2024-05-02T10:12:17.000Z",
        "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
        "severity": "Critical",
        "vulnerabilities": [
            trivy_item("CVE-2023-0286", "libssl3", "3.0.7-r0", "3.0.8-r0", "High", 7.4),
            trivy_item("CVE-2022-37434", "zlib", "1.2.12-r1", "", "Critical", 9.8),
            {"package": "no-id"},  # no id: not a finding
        ]}}
    findings = parse_v2_report(body, REPORT_MIME_TYPES)
    assert findings is not None
    assert [(f.id, f.severity, f.cvss, f.fix_version) for f in findings] == [
        ("CVE-2022-37434", Severity.CRITICAL, 9.8, None),
        ("CVE-2023-0286", Severity.HIGH, 7.4, "3.0.8-r0")]
    assert findings[1].links == ("https://avd.aquasec.com/nvd/cve-2023-0286",)
    assert parse_v2_report({}, REPORT_MIME_TYPES) is None  # never scanned (NOTES §6.6)


def test_a_harbor_1_details_list_parses() -> None:
    """NOTES §9.1: integer severities 1 none .. 5 high, ``link``, ``fixedVersion``."""
    body = [{"id": "CVE-2017-3735", "severity": 5, "package": "openssl",
             "version": "1.0.2k-r0", "description": "overread",
             "link": "https://security-tracker.debian.org/tracker/CVE-2017-3735",
             "fixedVersion": "1.0.2m-r0"},
            {"id": "CVE-2016-9843", "severity": 9, "package": "zlib", "version": "1.2.8",
             "fixedVersion": ""}]
    findings = parse_v1_details(body)
    assert findings is not None
    assert [(f.id, f.severity, f.fix_version) for f in findings] == [
        ("CVE-2017-3735", Severity.HIGH, "1.0.2m-r0"),
        ("CVE-2016-9843", Severity.UNKNOWN, None)]


def test_diff_and_why_the_rebuild_did_not_help() -> None:
    musl_old = Finding("CVE-2017-15650", "musl", "1.1.16-r13", Severity.HIGH, "1.1.16-r14")
    curl_new = Finding("CVE-2018-1000120", "curl", "7.58.0-r0", Severity.CRITICAL, None)
    changes = diff_findings([ZLIB_UNFIXED, OPENSSL_OLD, musl_old],
                            [ZLIB_UNFIXED, OPENSSL_OLD, curl_new])
    assert [f.id for f in changes.fixed] == ["CVE-2017-15650"]
    assert [f.id for f in changes.remaining] == ["CVE-2016-9843", "CVE-2017-3735"]
    assert [f.id for f in changes.new] == ["CVE-2018-1000120"]
    why = explain_not_helped(changes.remaining, ["Dockerfile line 4: FROM alpine:3.6"])
    assert why == ("a fix exists but the rebuilt image still has openssl 1.0.2k-r0 (fixed in "
                   "1.0.2m-r0): the base image holds it (Dockerfile line 4: FROM alpine:3.6); "
                   "no fix upstream yet for zlib 1.2.8-r2")
    pinned = explain_not_helped(changes.remaining, ["Dockerfile line 4: FROM alpine:3.6"],
                                {"openssl": "Dockerfile line 5: RUN apk add openssl=1.0.2k-r0"})
    assert pinned.startswith("openssl 1.0.2k-r0 is pinned (Dockerfile line 5: RUN apk add "
                             "openssl=1.0.2k-r0) though 1.0.2m-r0 fixes it; no fix upstream")
    assert explain_not_helped([]) == ""


class _Source:
    """Counts requests at once; refuses with ``status`` after ``refuse_after`` answers."""

    def __init__(self, status: int | None = None) -> None:
        self.status = status
        self.calls = 0
        self.running = 0
        self.peak = 0

    async def vulnerability_details(self, image: ImageReference) -> tuple[Finding, ...] | None:
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0)
        self.running -= 1
        if self.status is not None:
            raise HarborApiError("h", f"HTTP {self.status}", status=self.status, code=None,
                                 request_id=None)
        return (OPENSSL_OLD,) if image.tag != "clean" else ()


async def test_reading_is_bounded_and_a_refusal_is_said_once() -> None:
    images = [ImageReference("library/app", str(n)) for n in range(30)]
    source = _Source()
    found = await read_details(source, images, what="plan images", concurrency=4)
    assert len(found) == 30 and source.peak <= 4
    refusing = _Source(403)
    observer = RecordingObserver()
    assert await read_details(refusing, images, what="plan images", concurrency=4,
                              observer=observer) == {}
    (warning,) = observer.of_kind("warning")
    assert "counts only" in warning and "artifact-addition" in warning
    assert refusing.calls <= 4  # stopped asking after the first refusals


async def test_an_unreachable_harbor_never_fails_the_night() -> None:
    """Details explain a night; Harbor gone after its retries leaves the images without
    them, in one warning, and nothing raises."""
    from careen.errors import ServiceError

    class Gone:
        async def vulnerability_details(self,
                                        image: ImageReference) -> tuple[Finding, ...] | None:
            raise ServiceError("Harbor", "h", "connection refused (after 5 attempts)")

    observer = RecordingObserver()
    images = [ImageReference("library/app", str(n)) for n in range(3)]
    found = await read_details(Gone(), images, what="plan images", observer=observer)
    assert found == dict.fromkeys(images)
    (warning,) = observer.of_kind("warning")
    assert warning.startswith("vulnerability details of 3 of the plan images not read")


FLEET: dict[str, Any] = {
    "harbor_version": "2.14.0",
    "users": {"admin": "Harbor12345"},
    "robots": [{"name": "robot$careen", "secret": "s3cret", "permissions": ["read", "scan"]},
               {"name": "robot$reader", "secret": "s3cret",
                "permissions": ["read", "scan", "addition"]}],
    "projects": [{"name": "library", "repositories": [
        {"name": "activemq", "artifacts": [
            {"tags": ["5.14.4"], "scan": {"high": 6, "medium": 2, "fixable": 5}},
            {"tags": ["never"], "scan": None}]},
    ]}],
}


def settings(url: str, user: str = "admin", password: str = "Harbor12345") -> HarborSettings:  # noqa: S107
    return HarborSettings(url=url, user=user, password=SecretStr(password),
                          backoff_initial=0.01, backoff_max=0.05)


async def test_details_from_the_simulator_and_a_robot_without_the_right() -> None:
    """NOTES §6.6: one finding per counted vulnerability, ``{}`` for a never-scanned
    artifact; a robot without artifact-addition read gets 403: counts only, said once."""
    image = ImageReference.parse("library/activemq:5.14.4")
    never = ImageReference.parse("library/activemq:never")
    with SimulatorServer(Fleet.from_dict(FLEET), SimOptions()) as server:
        async with HarborV2Client(settings(server.url)) as harbor:
            findings = await harbor.vulnerability_details(image)
            assert await harbor.vulnerability_details(never) is None
        async with HarborV2Client(settings(server.url, "robot$reader", "s3cret")) as harbor:
            assert await read_details(harbor, [image], what="plan images") != {}
        observer = RecordingObserver()
        async with HarborV2Client(settings(server.url, "robot$careen", "s3cret")) as harbor:
            refused = await read_details(harbor, [image, never], what="plan images",
                                         observer=observer)
    assert findings is not None and len(findings) == 8
    assert sum(1 for f in findings if f.severity is Severity.HIGH) == 6
    assert sum(1 for f in findings if f.fixable) == 5
    assert refused == {}
    assert len(observer.of_kind("warning")) == 1


async def test_harbor_1_details_from_the_simulator() -> None:
    fleet = {**FLEET, "harbor_version": "1.6.3"}
    with SimulatorServer(Fleet.from_dict(fleet), SimOptions()) as server:
        async with HarborV1Client(settings(server.url)) as harbor:
            findings = await harbor.vulnerability_details(
                ImageReference.parse("library/activemq:5.14.4"))
    assert findings is not None and len(findings) == 8
    assert {f.severity for f in findings} == {Severity.HIGH, Severity.MEDIUM}


def test_details_kept_in_the_state_with_clean_images(tmp_path: Path) -> None:
    app, clean = ImageReference.parse("library/app:1"), ImageReference.parse("library/c:1")
    with StateStore.open(tmp_path / "state.sqlite") as store:
        run = store.begin_run(RunKind.RUN)
        details = DetailsStore(store)
        assert details.record(run.id, ScanPhase.BEFORE, {app: (OPENSSL_OLD, ZLIB_UNFIXED),
                                                        clean: (), ImageReference.parse(
                                                            "library/unread:1"): None}) == 2
        details.record(run.id, ScanPhase.BEFORE, {app: (OPENSSL_OLD,)})  # replaces
        kept = details.findings(run.id, ScanPhase.BEFORE)
    assert kept == {"library/app:1": (OPENSSL_OLD,), "library/c:1": ()}


async def test_the_cve_step_explains_a_rebuild_that_did_not_help(tmp_path: Path) -> None:
    """The line that holds each package is named: the pin for a pinned one, else the FROM
    line that brings it."""
    from careen.cves import CveStep

    (tmp_path / "jre/8").mkdir(parents=True)
    (tmp_path / "jre/8/Dockerfile").write_text(
        "ARG REGISTRY\nFROM ${REGISTRY}/upstream/os:stable AS os\nFROM os\n"
        "# openssl=0.9 in a comment is no pin\nRUN apk add --no-cache zlib=1.2.8-r2 \\\n"
        "    curl\n")
    jre, lone = ImageReference.parse("library/jre:8"), ImageReference.parse("library/lone:1")
    plan = Plan(steps=(PlanStep(jre, 0, StepReason.SELECTED, "high 1 > 0", (), "jre/8",
                                "jre/8/Dockerfile"),),
                skipped=(SkippedImage(lone, SkipReason.NO_FOLDER, "no folder"),),
                tree_root=str(tmp_path), created_at=__import__("datetime").datetime.now())
    scanned = ScanSummary(ScanStatus.SUCCESS, SeverityCounts(high=1))

    class Source:
        async def vulnerability_details(self,
                                        image: ImageReference) -> tuple[Finding, ...] | None:
            return (OPENSSL_OLD, ZLIB_UNFIXED)

    step = CveStep(Source(), None, "run-1", by_digest=True)
    await step.before(plan, {jre: Image(jre, "sha256:" + "1" * 64, scanned),
                             lone: Image(lone, "sha256:" + "2" * 64, scanned)})
    await step.after(plan, {jre: ImageReference("library/jre", None, "sha256:" + "3" * 64)}, {})
    results = step.explain([
        ImageResult(jre, Outcome.NOT_HELPED, "high 1 > 0", "rebuild did not help: ...",
                    before_digest="sha256:" + "1" * 64, after_digest="sha256:" + "3" * 64),
        ImageResult(lone, Outcome.SKIPPED, "no folder", "no_folder")], plan)
    assert results[0].note == (
        "rebuild did not help: a fix exists but the rebuilt image still has openssl 1.0.2k-r0 "
        "(fixed in 1.0.2m-r0): the base image holds it (Dockerfile line 2: FROM "
        "${REGISTRY}/upstream/os:stable); no fix upstream yet for zlib 1.2.8-r2")
    assert results[1].cves_before == (ZLIB_UNFIXED, OPENSSL_OLD) or \
        results[1].cves_before == (OPENSSL_OLD, ZLIB_UNFIXED)
    assert results[1].cves_after is None


@pytest.mark.parametrize("value", [None, "x", -1, 11, True])
def test_a_bad_cvss_score_is_dropped(value: object) -> None:
    item = trivy_item("CVE-1", "p", "1", "", "Low")
    item["preferred_cvss"]["score_v3"] = value
    (finding,) = parse_v2_report({MIME: {"vulnerabilities": [item]}}, REPORT_MIME_TYPES) or ()
    assert finding.cvss is None


def test_a_night_keeps_the_cves_and_skipped_images_show_their_real_scans(
        tmp_path: Path) -> None:
    """careen run against the simulator: the plan images' CVEs before, the rebuilt digests'
    after (the simulator scans a rebuilt digest clean), both kept in the state; lone (no
    folder) shows Harbor's scan of it, not "no scan" (issue 14)."""
    from tests.test_nightly import FLEET as NIGHT_FLEET
    from tests.test_nightly import PushingBuilder, make_config, run

    # Scans still go through Pending and Running, as in test_nightly's simulator, only
    # quicker than the default 0.3 s the rescan would wait out.
    quick_scans = SimOptions(scan_delay=ScanDelays(pending=0.02, running=0.02))
    with SimulatorServer(Fleet.from_dict(NIGHT_FLEET), quick_scans) as harbor:
        config = make_config(tmp_path, harbor)
        with StateStore.open(tmp_path / "state.sqlite") as store:
            outcome = run(config, store, PushingBuilder(harbor), tmp_path)
            before = DetailsStore(store).findings(str(outcome.run_id), ScanPhase.BEFORE)
            after = DetailsStore(store).findings(str(outcome.run_id), ScanPhase.AFTER)
    by_image = {r.image.short: r for r in outcome.result.images}
    base, lone = by_image["library/base:1.0"], by_image["library/lone:1"]
    assert base.cves_before is not None and len(base.cves_before) == 2
    assert base.cves_after == ()
    changes = base.cve_changes
    assert changes is not None and len(changes.fixed) == 2 and not changes.remaining
    assert lone.before is not None and lone.before.counts == SeverityCounts(high=1)
    assert lone.cves_before is not None and len(lone.cves_before) == 1
    assert set(before) == {"library/base:1.0", "library/app:1", "library/web:2",
                           "library/lone:1"}
    assert after["library/base:1.0"] == ()
    assert outcome.result.fleet["judged"] == 5 and outcome.result.fleet["breaking"] == 3


def test_pins_are_found_in_the_dockerfile(tmp_path: Path) -> None:
    from careen.cves import pinned_packages

    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11\n# openssl=0.9 only a comment\n"
        "RUN apt-get install -y openssl=3.0.11-1~deb12u1 libssl3\n"
        "RUN pip install requests==2.19.0 urllib3\nRUN apk add zlib@1.2.8\n")
    assert pinned_packages(dockerfile, {"openssl", "libssl3", "requests", "urllib3",
                                        "zlib", "ssl"}) == {
        "openssl": "Dockerfile line 3: RUN apt-get install -y openssl=3.0.11-1~deb12u1 libssl3",
        "requests": "Dockerfile line 4: RUN pip install requests==2.19.0 urllib3",
        "zlib": "Dockerfile line 5: RUN apk add zlib@1.2.8"}


def test_a_failing_night_explained_from_data(tmp_path: Path) -> None:
    """End to end (tests/reports/failing_night.py): a pinned package is named with its pin;
    a package the base holds with the FROM line, and the newest tag of the base's proxy-cache
    repository in Harbor that passes the policy (12.8: 12.9 is newer but breaks it); a package
    with no fix upstream by name; the needs-attention list holds every image a person must
    act on."""
    from careen.attention import AttentionKind
    from careen.reports.wording import attention_items
    from tests.reports.failing_night import LONG, LONG_TAG, failing_night

    outcome = failing_night(tmp_path)
    by_image = {r.image.short: r for r in outcome.result.images}
    app = by_image["library/app:1"]
    assert app.outcome is Outcome.NOT_HELPED
    assert app.note == ("rebuild did not help: openssl 3.0.11-1~deb12u1 is pinned (Dockerfile "
                        "line 2: RUN apt-get install -y openssl=3.0.11-1~deb12u1) though "
                        "3.0.13-1~deb12u1 fixes it")
    long = by_image[f"{LONG}:{LONG_TAG}"]
    assert long.outcome is Outcome.IMPROVED
    assert long.note.endswith(
        "what remains: a fix exists but the rebuilt image still has curl 7.88.1-10+deb12u4 "
        "(fixed in 7.88.1-10+deb12u5): the base image holds it (Dockerfile line 1: FROM "
        "debian:12.5); no fix upstream yet for libxml2 2.9.14+dfsg-1.3; Harbor holds "
        "dockerhub/library/debian:12.8, which passes the policy: build FROM it instead of "
        "debian:12.5")
    assert [i.kind for i in attention_items(outcome.result)] == [
        AttentionKind.NO_FOLDER, AttentionKind.BUILD_FAILED, AttentionKind.IMPROVED,
        AttentionKind.NOT_HELPED]
    # The producers' items carry the reasons explained from the data.
    assert outcome.result.attention[-1].reason == app.note
    assert outcome.exit_code == 1


def test_a_dry_run_shows_skipped_images_with_their_real_scans(tmp_path: Path) -> None:
    from tests.test_nightly import FLEET as NIGHT_FLEET
    from tests.test_nightly import PushingBuilder, make_config, run

    with SimulatorServer(Fleet.from_dict(NIGHT_FLEET), SimOptions()) as harbor:
        config = make_config(tmp_path, harbor)
        with StateStore.open(tmp_path / "state.sqlite") as store:
            outcome = run(config, store, PushingBuilder(harbor), tmp_path, dry_run=True)
    lone = next(r for r in outcome.result.images if r.image.short == "library/lone:1")
    assert lone.outcome is Outcome.SKIPPED
    assert lone.before is not None and lone.before.counts == SeverityCounts(high=1)


def test_a_version_1_state_is_migrated_with_its_runs_kept(tmp_path: Path) -> None:
    """A state written before issue 14 (schema 1) opens as schema 2: its runs are kept and
    the findings tables are there."""
    import sqlite3

    from careen.state.schema import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version

    path = tmp_path / "state.sqlite"
    connection = sqlite3.connect(path, isolation_level=None)
    migrate(connection, str(path), MIGRATIONS[:1])
    connection.execute("INSERT INTO runs (id, kind, started_at, status, options) VALUES "
                       "('run-old', 'run', '2026-11-01T02:00:00+00:00', 'succeeded', '{}')")
    connection.close()
    with StateStore.open(path) as store:
        assert store.run("run-old").run.id == "run-old"
        DetailsStore(store).record("run-old", ScanPhase.BEFORE,
                                   {ImageReference.parse("library/a:1"): (OPENSSL_OLD,)})
    with sqlite3.connect(path) as connection:
        assert schema_version(connection) == SCHEMA_VERSION >= 2
        tables = {name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"findings", "finding_reads"} <= tables


def test_merged_shards_keep_their_cves_and_needs_attention() -> None:
    """careen report --merge: each shard's CVE lists and needs-attention items survive."""
    from dataclasses import replace

    from careen.shard import merge_results
    from tests.reports.sample import sample_result

    whole = sample_result()
    one = replace(whole, run_id="shard-1", images=whole.images[:3])
    two = replace(whole, run_id="shard-2", images=whole.images[3:])
    merged = merge_results([one, two])
    assert merged.attention == whole.attention  # the same item in both shards, once
    assert merged.fleet == whole.fleet
    by_image = {i.image.short: i for i in merged.images}
    assert by_image["library/jre:8u191"].cves_after == whole.images[1].cves_after
