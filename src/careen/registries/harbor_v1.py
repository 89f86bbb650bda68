"""Harbor 1.x (1.2 to 1.9), read only, through its API at ``/api`` (NOTES section 9).

The seed's Harbor. Projects, then each project's repositories (``?project_id=N``, paged up
to 500), then each repository's tags (one unpaged call). The repository name goes into the
path raw, slashes unencoded (a beego wildcard route). Errors are plain text.

Scan summaries are Clair's ``scan_overview``: wire key ``image_digest``, integer severities
1 none .. 5 high (the numbering :class:`careen.scan.Severity` keeps), ``components.summary``
as ``[{severity, count}]`` in any order, lower-case statuses. Its counts are **packages**
(each package once, under its worst finding), not vulnerabilities, so summaries carry
``counts_unit="packages"``: the seed's "medium >= 3" meant three packages.

Tags that share a digest in one repository are one :class:`Artifact` with several tags, as
Harbor 2.x reports them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import httpx

from careen.details import Finding, parse_v1_details
from careen.errors import ServiceError, UsageError
from careen.events import NULL_OBSERVER, Observer
from careen.inventory import Artifact
from careen.reference import ImageReference
from careen.registries.harbor_v2 import (
    Emit,
    SystemInfo,
    check_project_name,
    parse_time,
    stream,
    valid_reference,
)
from careen.registries.http import (
    EventHook,
    HarborClientBase,
    HarborHttp,
    HarborSettings,
    Sleep,
    crawl_pages,
    shown,
)
from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts

API_V1: Final = "/api"


def summary_from_v1(overview: Any) -> ScanSummary:
    """A v1 tag's ``scan_overview`` to a :class:`ScanSummary` (absent: not scanned)."""
    if not isinstance(overview, dict):
        return ScanSummary.not_scanned()
    status = ScanStatus.from_harbor(overview.get("scan_status"))
    counts = None
    components = overview.get("components")
    if status is ScanStatus.SUCCESS and isinstance(components, dict):
        totals: dict[Severity, int] = {}
        for entry in components.get("summary") or ():
            if not isinstance(entry, dict):
                continue
            level, count = entry.get("severity"), entry.get("count")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                continue
            # 1..5 are Severity's own numbers; 0 ("not scanned") or anything else is unknown.
            severity = (Severity(level) if isinstance(level, int)
                        and Severity.NONE <= level <= Severity.HIGH else Severity.UNKNOWN)
            totals[severity] = totals.get(severity, 0) + count
        counts = SeverityCounts.of(totals)
    extra = {k: str(overview[k]) for k in ("job_id", "severity") if overview.get(k) is not None}
    return ScanSummary(status=status, counts=counts, scanner="Clair" if counts else None,
                       scanned_at=parse_time(overview.get("update_time")),
                       counts_unit="packages", extra=extra)


class HarborV1Client(HarborClientBase):
    """Harbor 1.x, read only. Implements :class:`careen.registries.interface.ScanSource`;
    :meth:`request_scan` refuses (rescans need Harbor 2.x)."""

    api_version: Final = "v1"

    def __init__(self, settings: HarborSettings, *, observer: Observer = NULL_OBSERVER,
                 transport: httpx.AsyncBaseTransport | None = None,
                 event_hooks: Mapping[str, list[EventHook]] | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self.observer = observer
        self.http = HarborHttp(settings, observer=observer, transport=transport,
                               event_hooks=event_hooks, sleep=sleep)
        self.registry = settings.host

    async def systeminfo(self) -> SystemInfo:
        body = await self.http.get_json(f"{API_V1}/systeminfo")
        body = body if isinstance(body, dict) else {}
        version = body.get("harbor_version")
        return SystemInfo(harbor_version=str(version) if version else None,
                          auth_mode=str(body["auth_mode"]) if body.get("auth_mode") else None)

    async def projects(self) -> list[tuple[str, int]]:
        """``(name, project_id)`` of every visible project."""
        found: list[tuple[str, int]] = []

        async def keep(items: list[Any]) -> None:
            for item in items:
                name = item.get("name") if isinstance(item, dict) else None
                ident = item.get("project_id") if isinstance(item, dict) else None
                try:
                    check_project_name(str(name))
                except UsageError:
                    self.observer.warning(f"skipped project {shown(str(name))}: not a valid "
                                          "project name")
                    continue
                if isinstance(ident, int):
                    found.append((str(name), ident))

        await crawl_pages(self.http, f"{API_V1}/projects", {},
                          page_size=self.settings.v1_page_size, on_page=keep,
                          slots=asyncio.Semaphore(1), permission="listing projects")
        return found

    def artifacts(self, projects: Sequence[str] | None = None) -> AsyncIterator[Artifact]:
        wanted = {check_project_name(p) for p in projects} if projects is not None else None
        return stream(lambda emit: self._crawl(wanted, emit), self.settings.queue_size)

    async def _crawl(self, wanted: set[str] | None, emit: Emit) -> None:
        known = await self.projects()
        chosen = [(n, i) for n, i in known if wanted is None or n in wanted]
        for missing in sorted((wanted or set()) - {n for n, _ in chosen}):
            self.observer.warning(f"Harbor at {self.registry}: project {missing} not found or "
                                  "not visible to this account")
        repo_slots = asyncio.Semaphore(self.settings.concurrency)
        async with asyncio.TaskGroup() as group:
            for name, ident in chosen:
                group.create_task(self._crawl_project(name, ident, emit, repo_slots, group))

    async def _crawl_project(self, project: str, ident: int, emit: Emit,
                             repo_slots: asyncio.Semaphore, group: asyncio.TaskGroup) -> None:
        async def spawn(items: list[Any]) -> None:
            for item in items:
                name = item.get("name") if isinstance(item, dict) else None
                count = item.get("tags_count") if isinstance(item, dict) else None
                if not isinstance(name, str) or not name.startswith(project + "/") or (
                        not valid_reference(name, tag="latest", registry=self.registry)):
                    self.observer.warning(f"skipped repository {shown(str(name))}: not a "
                                          "valid repository name")
                    continue
                if count == 0:
                    continue
                await repo_slots.acquire()
                group.create_task(self._crawl_repository(name, emit, repo_slots))

        await crawl_pages(self.http, f"{API_V1}/repositories", {"project_id": ident},
                          page_size=self.settings.v1_page_size, on_page=spawn,
                          slots=asyncio.Semaphore(1), permission=f"reading project {project}")

    def _tags_path(self, repository: str) -> str:
        # Raw, slashes unencoded: v1 routes the repository with a wildcard.
        return f"{API_V1}/repositories/{quote(repository, safe='/')}/tags"

    async def _crawl_repository(self, repository: str, emit: Emit,
                                repo_slots: asyncio.Semaphore) -> None:
        try:
            body = await self.http.get_json(self._tags_path(repository),
                                            permission=f"reading {repository}")
            for artifact in self._artifacts_of(repository, body if isinstance(body, list)
                                               else []):
                await emit(artifact)
        finally:
            repo_slots.release()

    def _artifacts_of(self, repository: str, tags: list[Any]) -> list[Artifact]:
        by_digest: dict[str, tuple[list[str], Any]] = {}
        for raw in tags:
            if not isinstance(raw, dict):
                self.observer.warning(f"skipped a tag of {repository}: not a JSON object")
                continue
            name, digest = raw.get("name"), raw.get("digest")
            if not isinstance(name, str) or not valid_reference(
                    repository, tag=name, registry=self.registry):
                self.observer.warning(f"skipped tag {shown(str(name))} of {repository}: not a "
                                      "valid tag")
                continue
            if not isinstance(digest, str) or not valid_reference(
                    repository, digest=digest, registry=self.registry):
                self.observer.warning(f"skipped {repository}:{name}: digest "
                                      f"{shown(str(digest))} is not valid")
                continue
            names, _ = by_digest.setdefault(digest, ([], raw.get("scan_overview")))
            names.append(name)
        return [Artifact(repository=repository, digest=digest, tags=tuple(names),
                         scan=summary_from_v1(overview), registry=self.registry)
                for digest, (names, overview) in by_digest.items()]

    async def scan_summary(self, image: ImageReference) -> ScanSummary:
        if image.tag is None:
            raise UsageError(f"{image.short}: Harbor 1.x finds images by tag, not by digest")
        body = await self.http.get_json(
            f"{self._tags_path(image.repository)}/{quote(image.tag, safe='')}",
            permission=f"reading {image.repository}")
        if not isinstance(body, dict):
            raise ServiceError("Harbor", self.registry, f"{image.short}: unexpected answer")
        return summary_from_v1(body.get("scan_overview"))

    async def scan_summary_with_fixable(self, image: ImageReference) -> ScanSummary:
        """The plain summary: Harbor 1.x counts packages, and per-severity fixable counts
        of vulnerabilities would not compare with them, so they stay unknown (the policy
        treats rules that need them as undecided)."""
        return await self.scan_summary(image)

    async def vulnerability_details(self, image: ImageReference) -> tuple[Finding, ...] | None:
        """``GET …/tags/{tag}/vulnerability/details`` (issue 14, NOTES §9.1)."""
        if image.tag is None:
            raise UsageError(f"{image.short}: Harbor 1.x finds images by tag, not by digest")
        body = await self.http.get_json(
            f"{self._tags_path(image.repository)}/{quote(image.tag, safe='')}"
            "/vulnerability/details", permission=f"reading {image.repository}")
        return parse_v1_details(body)

    async def request_scan(self, image: ImageReference) -> None:
        raise UsageError(f"cannot rescan {image.short}: Careen reads Harbor 1.x but does not "
                         "drive its scans",
                         hint="scan from Harbor's UI, or upgrade Harbor to 2.x")
