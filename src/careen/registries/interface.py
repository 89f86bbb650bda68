"""The small interface every registry adapter implements.

A new registry (another Harbor version, Quay, ...) is one new module implementing
:class:`ScanSource`. The core only ever sees :class:`careen.inventory.Artifact` values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from careen.events import NULL_OBSERVER, Observer
from careen.inventory import Artifact
from careen.reference import ImageReference
from careen.scan import ScanSummary


class ScanSource(Protocol):
    """A registry with a vulnerability scanner."""

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
