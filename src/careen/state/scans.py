"""The part of :class:`careen.state.store.StateStore` for verdicts and scans."""

from __future__ import annotations

from collections.abc import Iterable

from careen.inventory import Image
from careen.policy import Verdict
from careen.reference import ImageReference
from careen.scan import ScanSummary
from careen.state.database import Database
from careen.state.records import ScanPhase
from careen.state.rows import INSERT_SCAN, enum_value, image_text, scan_row


class Scans(Database):
    """Verdicts and scan summaries recorded under a run, one or a whole fleet
    per transaction."""

    def record_verdict(self, run_id: str, image: ImageReference | str, *,
                       digest: str | None, kind: str, reason: str) -> None:
        self._insert_many(
            "INSERT INTO verdicts (run_id, image, digest, kind, reason) VALUES (?, ?, ?, ?, ?)",
            run_id, [(run_id, image_text(image), digest, str(kind), reason)],
        )

    def record_verdicts(self, run_id: str, judged: Iterable[tuple[Image, Verdict]]) -> int:
        """Record many verdicts (``policy.Judged`` pairs) in one transaction; return how
        many."""
        rows = [
            (run_id, image.reference.short, image.digest, verdict.kind.value, verdict.reason)
            for image, verdict in judged
        ]
        self._insert_many(
            "INSERT INTO verdicts (run_id, image, digest, kind, reason) VALUES (?, ?, ?, ?, ?)",
            run_id, rows,
        )
        return len(rows)

    def record_scan(self, run_id: str, image: ImageReference | str, *,
                    phase: ScanPhase | str, summary: ScanSummary,
                    digest: str | None = None) -> None:
        self._insert_many(INSERT_SCAN, run_id, [
            scan_row(run_id, image_text(image), digest, enum_value(ScanPhase, phase, "phase"),
                      summary),
        ])

    def record_scans(self, run_id: str, images: Iterable[Image], *,
                     phase: ScanPhase | str) -> int:
        """Record every image's scan summary in one transaction; return how many. The
        ``before`` scans of every image (passing ones too) are what :meth:`trend` sums."""
        scan_phase = enum_value(ScanPhase, phase, "phase")
        rows = [
            scan_row(run_id, image.reference.short, image.digest, scan_phase, image.scan)
            for image in images
        ]
        self._insert_many(INSERT_SCAN, run_id, rows)
        return len(rows)
