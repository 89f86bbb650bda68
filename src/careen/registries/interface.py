"""The small interface every registry adapter implements.

A new registry (another Harbor version, Quay, ...) is one new module implementing
:class:`ScanSource`. The core only ever sees :class:`careen.inventory.Artifact` values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from careen.events import NULL_OBSERVER, Observer
from careen.inventory import Artifact
from careen.reference import ImageReference
from careen.scan import ScanSummary

if TYPE_CHECKING:
    from careen.registries.harbor_v2 import ScanAllSchedule


class ScanSource(Protocol):
    """A registry with a vulnerability scanner.

    What differs between registries (Harbor versions) is a capability read here, never the
    adapter's class: :attr:`rescans_by_digest`."""

    @property
    def rescans_by_digest(self) -> bool:
        """Whether a rescan can name the pushed digest, so the scan judged is the new image's
        even if the tag moves again (Harbor 2.x); otherwise rescans name tags (Harbor 1.x,
        whose scan API names tags only)."""
        ...

    def artifacts(self, projects: Sequence[str] | None = None) -> AsyncIterator[Artifact]:
        """Stream every artifact (all projects, or only ``projects``) with its scan summary."""
        ...

    async def scan_summary(self, image: ImageReference) -> ScanSummary:
        """The current scan summary of one image (by tag or digest)."""
        ...

    async def scan_summary_with_fixable(self, image: ImageReference) -> ScanSummary:
        """The summary with per-severity fixable counts, from the image's vulnerability list
        (for rules that use ``fixable_high`` and the like)."""
        ...

    async def request_scan(self, image: ImageReference) -> None:
        """Ask the registry to (re)scan one image; returns once the request is accepted."""
        ...

    async def aclose(self) -> None:
        ...


class ScanControl(ScanSource, Protocol):
    """A registry whose scans Careen drives (``careen scan``, ``careen schedule``, the
    nightly rescans): Harbor 2.x and Harbor 1.x alike."""

    async def wait_for_scans(self, images: Sequence[ImageReference], *, timeout: float,
                             interval: float = 5.0) -> dict[ImageReference, ScanSummary]:
        """Poll until each image's scan is final or ``timeout``; the latest summaries."""
        ...

    async def trigger_scan_all(self) -> bool:
        """Scan every image now; ``False`` when a scan-all is already running."""
        ...

    async def scan_all_schedule(self) -> ScanAllSchedule | None:
        """The scan-all schedule (its cron in UTC), or ``None``."""
        ...

    async def set_scan_all_schedule(self, kind: str, cron: str | None = None) -> None:
        """Set the scan-all schedule; ``kind`` ``"None"`` removes it."""
        ...


Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


async def wait_for_final_scans(
    source: ScanSource, images: Sequence[ImageReference], *, timeout: float,
    interval: float = 5.0, observer: Observer = NULL_OBSERVER,
    clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
) -> dict[ImageReference, ScanSummary]:
    """Poll until every image's scan is final (Success, Error, Stopped) or ``timeout``
    seconds passed; the latest summary of each. A summary that is still not scanned
    (Harbor shows no overview while a scan is queued) counts as not final."""
    results: dict[ImageReference, ScanSummary] = {}
    waiting = list(dict.fromkeys(images))
    deadline = clock() + timeout
    while waiting:
        summaries = await asyncio.gather(*(source.scan_summary(i) for i in waiting))
        for image, summary in zip(waiting, summaries, strict=True):
            results[image] = summary
        waiting = [i for i in waiting if not results[i].status.is_final]
        observer.progress("scans", len(results) - len(waiting), len(results))
        if not waiting or clock() >= deadline:
            break
        await sleep(min(interval, max(0.0, deadline - clock())))
    return results
