"""A run with one image of every outcome, untrusted text planted where scanners and builders
put theirs, and a few nights of trend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from careen.attention import AttentionItem, AttentionKind
from careen.details import Finding
from careen.reference import ImageReference
from careen.results import ImageResult, Outcome, RunResult
from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts
from careen.state.store import RunKind, TrendPoint

PLANTED = "<script>alert('x')</script>"
STARTED = datetime(2017, 12, 8, 2, 0, 1, tzinfo=UTC)
#: Scanner text is untrusted: markup, quotes, a terminal escape, a bell, a NUL.
PLANTED_CVE = "CVE-2017-<script>\"q\"</script>\x1b[31m\x07\x00"
PLANTED_PACKAGE = "<img src=x onerror=alert(1)>|pkg"

# Findings in the shape Trivy gives Harbor (NOTES §6.6): ids, packages, versions, fixes.
OPENSSL_OLD = Finding("CVE-2017-3735", "openssl", "1.0.2k-r0", Severity.HIGH, "1.0.2m-r0",
                      cvss=7.5, links=("https://avd.aquasec.com/nvd/cve-2017-3735",),
                      description="OpenSSL IPAddressFamily one-byte overread")
ZLIB_UNFIXED = Finding("CVE-2016-9843", "zlib", "1.2.8-r2", Severity.CRITICAL, None, cvss=9.8,
                       links=("javascript:alert(1)",), description=f"crc32_big {PLANTED}")
MUSL_FIXED = Finding("CVE-2017-15650", "musl", "1.1.16-r13", Severity.HIGH, "1.1.16-r14",
                     cvss=7.5)
PLANTED_FINDING = Finding(PLANTED_CVE, PLANTED_PACKAGE, "1'\"<b>", Severity.MEDIUM,
                          "2&amp;<i>", links=("https://example.invalid/?a=\"><script>",),
                          description=f"{PLANTED} \x1b[2J")


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def scan(**counts: int) -> ScanSummary:
    return ScanSummary(ScanStatus.SUCCESS, SeverityCounts(**counts), fixable_total=2,
                       scanner="Trivy", scanned_at=STARTED - timedelta(hours=2))


def sample_result() -> RunResult:
    base, jre, tomcat = ref("library/base:1.0"), ref("library/jre:8u191"), ref(
        "library/tomcat:8.5")
    images = (
        ImageResult(base, Outcome.FIXED, "high 2 > 0", "passes the policy now (high 2 -> 0)",
                    level=0, before=scan(high=2, medium=1), before_digest="sha256:" + "a" * 64,
                    after=scan(low=1), after_digest="sha256:" + "b" * 64, duration=12.5,
                    log_path="/logs/base.log", log_tail=("step 1/3", "done"),
                    cves_before=(MUSL_FIXED, OPENSSL_OLD), cves_after=()),
        ImageResult(jre, Outcome.NOT_HELPED, "child of library/base:1.0",
                    f"rebuild did not help: CVE-2017-1 {PLANTED} | pipe", level=1,
                    parents=(base,), selected=False, before=scan(critical=1, high=6, medium=3),
                    after=scan(critical=1, high=6, medium=3), duration=30.0,
                    log_tail=("\x1b[31mRUN apk upgrade\x1b[0m", f"warning: {PLANTED}"),
                    cves_before=(ZLIB_UNFIXED, OPENSSL_OLD, MUSL_FIXED),
                    cves_after=(ZLIB_UNFIXED, OPENSSL_OLD, PLANTED_FINDING)),
        ImageResult(tomcat, Outcome.FAILED, f"child of library/jre:8u191 {PLANTED}",
                    "build failed", level=2, parents=(jre,), selected=False,
                    before=scan(high=1), duration=3.25, log_path="/logs/tomcat.log",
                    log_tail=("ERROR: failed to solve: \x00bad byte", f"]]> {PLANTED}")),
        ImageResult(ref("library/httpd:2.4"), Outcome.IMPROVED, "medium 5 >= 3",
                    "fewer findings (medium 5 -> 4) but still breaks the policy", level=0,
                    before=scan(medium=5), after=scan(medium=4), duration=8.0),
        ImageResult(ref("library/nginx:1.13"), Outcome.RESCAN_MISSING, "high 1 > 0",
                    "pushed, but Harbor's rescan gave running", level=0, before=scan(high=1),
                    after=ScanSummary(ScanStatus.RUNNING), duration=5.0),
        ImageResult(ref("apps/grafana:4.1.2"), Outcome.SKIPPED,
                    f"no Dockerfile folder for it under /tree {PLANTED}", "no_folder",
                    selected=True,
                    before=scan(high=6), cves_before=(OPENSSL_OLD,)),
    )
    return RunResult(
        run_id="run-20171208-020001-abcd", started_at=STARTED,
        finished_at=STARTED + timedelta(minutes=17, seconds=3), policy="medium >= 3 or high > 0",
        images=images, plan_id="plan-20171208-020001-beef", tree_commit="0123abc",
        harbor="https://registry.abc.com", registry="registry.abc.com",
        unscanned=(("library/alpine:latest", f"scan error {PLANTED}"),), judged=42,
        attention=(AttentionItem(AttentionKind.UNREADABLE_LINE, "vulnerable.list:7",
                                 f"not an image reference: {PLANTED}"),),
        fleet={"judged": 42, "breaking": 6, "passing": 34, "unscanned": 1, "untagged": 0,
               "ignored": 1},
    )


def sample_trend(nights: int = 5) -> list[TrendPoint]:
    return [
        TrendPoint(run_id=f"run-{night}", kind=RunKind.RUN,
                   started_at=STARTED + timedelta(days=night),
                   date=date(2017, 12, 8) + timedelta(days=night), images=40, scanned=39,
                   counts=SeverityCounts(critical=3 - night % 3, high=20 - night,
                                         medium=30 + night, low=50, unknown=night, none=10))
        for night in range(nights)
    ]
