"""The simulator's scanner: what a (re)scan of an artifact finds.

The interface is one method, :meth:`Scanner.scan`, so a scanner that reads package lists from
image layers can replace the table scanner without touching the HTTP app
(:mod:`careen.sim.harbor.package_scanner` does). A scanner that needs the image's content
also implements :class:`ContentScanner`: the registry mirror hands it each new manifest, in
the event loop, before the artifact appears, so ``scan`` itself never does I/O. A scan that
cannot be done raises :class:`ScanError` (the report's status becomes ``Error``), and a
result that carries its findings (:class:`DetailedScanResult`) is listed as those findings by
:func:`vulnerability_items`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from careen.sim.harbor.fleet import CLEAN, SEVERITY_WORDS, ScannerSpec, ScanResult

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True, slots=True)
class ScanTarget:
    """What the scanner is told about the artifact it scans. ``baseline`` is the result the
    fleet file declared for this very digest, if any (scanning the same image again finds
    the same thing)."""

    repository: str  # full name, project first
    digest: str
    tags: tuple[str, ...]
    baseline: ScanResult | None = None


class Scanner(Protocol):
    info: ScannerSpec

    def scan(self, target: ScanTarget) -> ScanResult:
        """The summary of one scan of ``target``."""
        ...


class ScanError(Exception):
    """The scanner cannot scan this artifact (content not read, unreadable layers); the scan
    ends with status ``Error``, as Harbor's does when Trivy fails."""


@runtime_checkable
class ContentScanner(Protocol):
    """A scanner that reads what an image contains from the registry."""

    async def inspect_manifest(self, client: httpx.AsyncClient, repository: str, digest: str,
                               manifest: Mapping[str, Any]) -> None:
        """Read what ``digest`` (its ``manifest`` already fetched) contains, through
        ``client`` (based at the registry, logged in). Called once per new digest; raises
        only ``httpx.HTTPError`` for a failure worth retrying at the next refresh."""
        ...


@dataclass(frozen=True, slots=True)
class Finding:
    """One vulnerability found in one installed package. ``severity`` is Harbor's word
    (``High``); ``fix_version`` is empty when no fixed version exists."""

    id: str
    package: str
    version: str
    severity: str
    fix_version: str = ""
    description: str = ""
    links: tuple[str, ...] = ()

    @property
    def fixable(self) -> bool:
        return bool(self.fix_version)


_SEVERITY_RANK = {word: rank for rank, (_, word) in enumerate(SEVERITY_WORDS)}


@dataclass(frozen=True, slots=True)
class DetailedScanResult(ScanResult):
    """A result together with the findings it counts (always consistent: build it with
    :meth:`from_findings`)."""

    findings: tuple[Finding, ...] = ()

    @classmethod
    def from_findings(cls, findings: Iterable[Finding],
                      packages: int | None = None) -> DetailedScanResult:
        ordered = tuple(sorted(findings, key=lambda f: (_SEVERITY_RANK.get(f.severity, 99),
                                                        f.package, f.id, f.version)))
        unknown = sorted({f.severity for f in ordered} - set(_SEVERITY_RANK))
        if unknown:
            raise ValueError(f"unknown severity words: {', '.join(unknown)}")
        tally: dict[str, int] = {}
        for finding in ordered:
            tally[finding.severity] = tally.get(finding.severity, 0) + 1
        counts = ScanResult.of(tally).counts
        return cls(counts, sum(1 for f in ordered if f.fixable), packages, ordered)


class TableScanner:
    """Looks results up by digest, then the fleet's baseline for the digest, then by
    ``repository:tag`` (any tag of the artifact), and otherwise returns ``default``
    (clean unless configured)."""

    def __init__(self, info: ScannerSpec, table: Mapping[str, ScanResult] | None = None,
                 default: ScanResult = CLEAN) -> None:
        self.info = info
        self.table = dict(table or {})
        self.default = default

    def scan(self, target: ScanTarget) -> ScanResult:
        found = self.table.get(target.digest)
        if found is not None:
            return found
        if target.baseline is not None:
            return target.baseline
        for tag in target.tags:
            found = self.table.get(f"{target.repository}:{tag}")
            if found is not None:
                return found
        return self.default


_PACKAGES = ("openssl", "zlib", "libxml2", "curl", "glibc", "busybox", "expat", "sqlite",
             "ncurses", "libpng", "bash", "tar", "gnutls", "krb5", "pcre2", "libssh2")


def vulnerability_items(result: ScanResult, digest: str) -> list[dict[str, Any]]:
    """A vulnerability list consistent with ``result``: ``total`` items, as many per severity
    as the counts say, the first ``fixable`` of them with a ``fix_version`` (NOTES §6.6).
    Deterministic for a digest so repeated reads agree. A :class:`DetailedScanResult` is
    listed as its own findings."""
    if isinstance(result, DetailedScanResult):
        return [_finding_item(finding, digest) for finding in result.findings]
    items: list[dict[str, Any]] = []
    seed = int(hashlib.sha256(digest.encode()).hexdigest()[:8], 16)
    n = 0
    for word, count in result.counts:
        for _ in range(count):
            package = _PACKAGES[(seed + n) % len(_PACKAGES)]
            cve = f"CVE-{2017 + (seed + n) % 8}-{10000 + (seed // 7 + n * 37) % 89999}"
            fixable = n < result.fixable
            items.append({
                "id": cve,
                "package": package,
                "version": f"1.{(seed + n) % 20}.0",
                "fix_version": f"1.{(seed + n) % 20}.1" if fixable else "",
                "severity": word,
                "status": "fixed" if fixable else "affected",
                "description": f"{word} severity issue in {package} (simulated)",
                "links": [f"https://avd.aquasec.com/nvd/{cve.lower()}"],
                "artifact_digests": [digest],
                "preferred_cvss": {"score_v3": None, "score_v2": None, "vector_v3": "",
                                   "vector_v2": ""},
                "cwe_ids": None,
                "vendor_attributes": None,
            })
            n += 1
    return items


def _finding_item(finding: Finding, digest: str) -> dict[str, Any]:
    return {
        "id": finding.id,
        "package": finding.package,
        "version": finding.version,
        "fix_version": finding.fix_version,
        "severity": finding.severity,
        "status": "fixed" if finding.fixable else "affected",
        "description": finding.description,
        "links": list(finding.links),
        "artifact_digests": [digest],
        "preferred_cvss": {"score_v3": None, "score_v2": None, "vector_v3": "", "vector_v2": ""},
        "cwe_ids": None,
        "vendor_attributes": None,
    }
