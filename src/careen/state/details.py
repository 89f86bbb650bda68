"""The CVEs of a run's images, kept in the state database (table ``findings``, schema v2).

A store of its own over the :class:`~careen.state.store.StateStore`'s connection: a run's
plan images before, and its rebuilt digests after, one row per finding — so ``careen report
RUN`` shows the same CVE lists weeks later, and a run's details can be compared with another's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from careen.details import Finding, sort_findings
from careen.reference import ImageReference
from careen.scan import Severity
from careen.state.store import ScanPhase, StateStore

__all__ = ["DetailsStore"]

_INSERT = ("INSERT INTO findings (run_id, image, digest, phase, cve, package, version, "
           "fix_version, severity, cvss, links, description) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class DetailsStore:
    """Findings per run, image and phase. Every write commits before it returns."""

    def __init__(self, store: StateStore) -> None:
        # The same connection (and so the same file, lock and transactions) as ``store``.
        self._db = store._db
        self._write = store._write

    def record(self, run_id: str, phase: ScanPhase,
               details: Mapping[ImageReference, Iterable[Finding] | None],
               digests: Mapping[ImageReference, str | None] | None = None) -> int:
        """Keep each image's findings (images whose details are ``None`` are left out); the
        number of rows written. Recording an image again for the same run and phase replaces
        its earlier rows."""
        rows: list[tuple[Any, ...]] = []
        images: list[str] = []
        reads: list[tuple[str, str, str, str | None]] = []
        for image, findings in details.items():
            if findings is None:
                continue
            images.append(image.short)
            digest = (digests or {}).get(image) or image.digest
            reads.append((run_id, image.short, phase.value, digest))
            rows.extend((run_id, image.short, digest, phase.value, f.id, f.package, f.version,
                         f.fix_version, f.severity.label, f.cvss, json.dumps(list(f.links)),
                         f.description) for f in findings)
        with self._write():
            self._db.executemany(
                "DELETE FROM findings WHERE run_id = ? AND phase = ? AND image = ?",
                [(run_id, phase.value, image) for image in images])
            self._db.executemany(_INSERT, rows)
            self._db.executemany(
                "INSERT OR REPLACE INTO finding_reads (run_id, image, phase, digest) "
                "VALUES (?, ?, ?, ?)", reads)
        return len(rows)

    def findings(self, run_id: str, phase: ScanPhase) -> dict[str, tuple[Finding, ...]]:
        """Each image whose details were read (its ``short`` name) -> its findings, worst
        first (empty for a clean image)."""
        out: dict[str, list[Finding]] = {
            row["image"]: [] for row in self._db.execute(
                "SELECT image FROM finding_reads WHERE run_id = ? AND phase = ?",
                (run_id, phase.value))}
        for row in self._db.execute(
                "SELECT image, cve, package, version, fix_version, severity, cvss, links, "
                "description FROM findings WHERE run_id = ? AND phase = ? ORDER BY id",
                (run_id, phase.value)):
            out.setdefault(row["image"], []).append(Finding(
                id=row["cve"], package=row["package"], version=row["version"],
                severity=Severity.from_name(row["severity"]),
                fix_version=row["fix_version"], cvss=row["cvss"],
                links=tuple(json.loads(row["links"])), description=row["description"]))
        return {image: sort_findings(found) for image, found in out.items()}
