"""The small interface every registry adapter implements.

A new registry (another Harbor version, Quay, ...) is one new module implementing
:class:`ScanSource`. The core only ever sees :class:`careen.inventory.Artifact` values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

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
