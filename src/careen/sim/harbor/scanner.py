"""The simulator's scanner: what a (re)scan of an artifact finds.

The interface is one method, :meth:`Scanner.scan`, so a scanner that reads package lists from
image layers can replace the table scanner later without touching the HTTP app.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from careen.sim.harbor.fleet import CLEAN, ScannerSpec, ScanResult


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
    Deterministic for a digest so repeated reads agree."""
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
