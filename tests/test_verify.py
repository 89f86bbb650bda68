"""Verify: rescans of pushed digests, and each rebuild judged before/after."""

from __future__ import annotations

import asyncio

from careen.reference import ImageReference
from careen.registries.http import HarborApiError
from careen.scan import ScanStatus, ScanSummary, SeverityCounts
from careen.verify import rescan


class SlowHarbor:
    """A ScanSource that does not know a pushed digest for a while (404), then scans it
    slowly; ``never`` images never finish."""

    def __init__(self, unknown_for: int, never: set[str]) -> None:
        self.unknown_for = unknown_for
        self.never = never
        self.asked: list[str] = []
        self.looks = 0

    async def request_scan(self, image: ImageReference) -> None:
        self.asked.append(image.short)
        if self.asked.count(image.short) <= self.unknown_for:
            raise HarborApiError("harbor.test", "not found", status=404, code="NOT_FOUND",
                                 request_id=None)

    async def scan_summary(self, image: ImageReference) -> ScanSummary:
        self.looks += 1
        if image.repository in self.never or self.looks < 3:
            return ScanSummary(ScanStatus.RUNNING)
        return ScanSummary(ScanStatus.SUCCESS, counts=SeverityCounts())


def test_rescan_asks_again_until_harbor_knows_the_digest_and_waits_for_final_scans() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    source = SlowHarbor(unknown_for=2, never={"library/stuck"})
    done = ImageReference("library/base", None, "sha256:" + "1" * 64)
    stuck = ImageReference("library/stuck", None, "sha256:" + "2" * 64)
    results = asyncio.run(rescan(source, [done, stuck], timeout=30, interval=1,  # type: ignore[arg-type]
                                 clock=lambda: now[0], sleep=sleep))
    assert source.asked.count(done.short) == 3  # 404, 404, accepted
    assert results[done].status is ScanStatus.SUCCESS
    assert results[stuck].status is ScanStatus.RUNNING  # still running at the deadline
    assert 30 <= now[0] < 32
