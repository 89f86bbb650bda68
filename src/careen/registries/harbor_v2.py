"""Harbor 2.x, read through its REST API v2.0 (``/api/v2.0``): the client.

Reads a whole Harbor's inventory and scan summaries in a few concurrent paged listings instead
of the seed's one ``harbor show`` per image: projects, then per project either the
project-wide artifact listing (Harbor 2.12+) or its repositories and each repository's
artifacts. Results stream through a bounded queue, so memory stays flat however large the
fleet is.

What Harbor's JSON means is :mod:`careen.registries.wire`; paging is
:mod:`careen.registries.paging`; the stream of artifacts :mod:`careen.registries.streaming`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final
from urllib.parse import quote

import httpx

from careen.details import Finding, parse_v2_report
from careen.errors import ServiceError, UsageError
from careen.events import NULL_OBSERVER, Observer
from careen.inventory import Artifact
from careen.reference import ImageReference
from careen.registries.http import (
    EventHook,
    HarborApiError,
    HarborClientBase,
    HarborHttp,
    HarborSettings,
    Sleep,
)
from careen.registries.interface import wait_for_final_scans
from careen.registries.paging import crawl_pages
from careen.registries.streaming import Emit, first_error, stream
from careen.registries.text import shown
from careen.registries.wire import (
    _PROJECT_NAME,
    ACCEPT_VULNERABILITIES,
    API_V2,
    DEFAULT_CRON,
    MIME_V10,
    MIME_V11,
    PERIODIC_TYPES,
    PROGRESS_EVERY,
    PROJECT_LISTING_SINCE,
    REPORT_MIME_TYPES,
    ScanAllMetrics,
    ScanAllSchedule,
    SystemInfo,
    Vulnerability,
    VulnerabilityReport,
    artifact_from_json,
    check_project_name,
    combine_children,
    config_labels,
    parse_time,
    parse_vulnerabilities,
    parses_as_reference,
    repository_segment,
    schedule_body,
    summary_from_overview,
    valid_reference,
    warn_unreadable,
)
from careen.scan import ScanStatus, ScanSummary, read_count

#: Kept importable from here: the wire names callers knew this module by.
__all__ = [
    "ACCEPT_VULNERABILITIES", "API_V2", "DEFAULT_CRON", "MIME_V10", "MIME_V11",
    "PERIODIC_TYPES", "PROJECT_LISTING_SINCE", "REPORT_MIME_TYPES", "Emit", "HarborV2Client",
    "ScanAllMetrics", "ScanAllSchedule", "SystemInfo", "Vulnerability", "VulnerabilityReport",
    "artifact_from_json", "check_project_name", "combine_children", "config_labels",
    "first_error",
    "parse_time", "parse_vulnerabilities", "parses_as_reference", "repository_segment",
    "schedule_body", "stream", "summary_from_overview", "valid_reference",
]




class HarborV2Client(HarborClientBase):
    """Harbor 2.x. Implements :class:`careen.registries.interface.ScanSource`, plus scan-all,
    vulnerability lists, system info. ``stats`` counts the requests sent.

    Use as ``async with HarborV2Client(settings) as harbor: ...`` or call :meth:`aclose`.
    """

    api_version: Final = "v2"
    #: Capabilities (:class:`~careen.registries.interface.ScanSource`).
    rescans_by_digest: Final = True
    api_root = API_V2

    def __init__(self, settings: HarborSettings, *, observer: Observer = NULL_OBSERVER,
                 transport: httpx.AsyncBaseTransport | None = None,
                 event_hooks: Mapping[str, list[EventHook]] | None = None,
                 sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.observer = observer
        self.http = HarborHttp(settings, observer=observer, transport=transport,
                               event_hooks=event_hooks, sleep=sleep)
        self.registry = settings.host
        self._sleep = sleep
        self._clock = clock
        #: Whether ``GET /projects/{p}/artifacts`` exists; ``None`` until known.
        self.project_listing: bool | None = None
        #: ``False`` when credentials were given but Harbor answered as anonymous.
        self.credentials_accepted: bool | None = None
        self._system: SystemInfo | None = None

    # -- system -----------------------------------------------------------------------------

    async def ping(self) -> bool:
        response = await self.http.request("GET", f"{API_V2}/ping",
                                           headers={"Accept": "text/plain"})
        return response.text.strip() == "Pong"

    async def answers_as_user(self) -> bool | None:
        """As :meth:`HarborClientBase.answers_as_user`, from ``/systeminfo`` first (Harbor
        shows ``harbor_version`` to authenticated callers only); a locked-down or pre-2.2
        Harbor has none to give, and ``/users/current`` is asked instead."""
        if self.credentials_accepted is None:
            with contextlib.suppress(HarborApiError):
                await self.systeminfo()
        if self.credentials_accepted is not None:
            return self.credentials_accepted
        return await super().answers_as_user()

    async def systeminfo(self) -> SystemInfo:
        body = await self.http.get_json(f"{API_V2}/systeminfo")
        body = body if isinstance(body, dict) else {}
        version = body.get("harbor_version")
        info = SystemInfo(
            harbor_version=str(version) if version else None,
            auth_mode=str(body["auth_mode"]) if body.get("auth_mode") else None,
            registry_url=str(body["registry_url"]) if body.get("registry_url") else None)
        self._system = info
        if self.settings.has_credentials:
            self.credentials_accepted = info.harbor_version is not None
        if self.project_listing is None and info.version is not None:
            self.project_listing = info.version >= PROJECT_LISTING_SINCE
        return info

    # -- listings ---------------------------------------------------------------------------

    async def projects(self) -> list[str]:
        """Names of the projects the caller can see (valid names only; others are warned
        about and skipped). Projects are few, so this is a list."""
        names: list[str] = []

        async def keep(items: list[Any]) -> None:
            for item in items:
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str) and _PROJECT_NAME.match(name):
                    names.append(name)
                else:
                    self.observer.warning(f"skipped project {shown(str(name))}: not a valid "
                                          "project name")

        await crawl_pages(self.http, f"{API_V2}/projects", {"with_detail": False},
                          page_size=self.settings.page_size, on_page=keep,
                          slots=asyncio.Semaphore(self.settings.concurrency),
                          permission="listing projects")
        return names

    async def repositories(self, project: str | None = None) -> AsyncIterator[tuple[str, int]]:
        """``(full name, artifact_count)`` of every repository of ``project``, or of every
        project the caller may read (``GET /repositories``, Harbor 2.3+)."""
        path = (f"{API_V2}/repositories" if project is None
                else f"{API_V2}/projects/{quote(check_project_name(project), safe='')}"
                     "/repositories")
        found: list[tuple[str, int]] = []

        async def keep(items: list[Any]) -> None:
            found.extend(self._repository_entries(items, project))

        # Repositories are small records, a page of them at a time.
        await crawl_pages(self.http, path, {}, page_size=self.settings.page_size,
                          on_page=keep, slots=asyncio.Semaphore(1),
                          permission=f"reading project {project}" if project else None)
        for entry in found:
            yield entry

    def _repository_entries(self, items: list[Any],
                            project: str | None) -> list[tuple[str, int]]:
        entries: list[tuple[str, int]] = []
        for item in items:
            name = item.get("name") if isinstance(item, dict) else None
            count = item.get("artifact_count") if isinstance(item, dict) else None
            if not isinstance(name, str) or not valid_reference(
                    name, tag="latest", registry=self.registry) or (
                    project is not None and not name.startswith(project + "/")):
                self.observer.warning(f"skipped repository {shown(str(name))}: not a valid "
                                      "repository name")
                continue
            entries.append((name, count if isinstance(count, int) and count >= 0 else -1))
        return entries

    def artifacts(self, projects: Sequence[str] | None = None) -> AsyncIterator[Artifact]:
        """Stream every artifact of ``projects`` (default: every visible project) with its
        tags and scan summary. Pages are read concurrently within one limit
        (``settings.concurrency``); ``settings.queue_size`` artifacts at most wait for the
        consumer."""
        wanted = [check_project_name(p) for p in projects] if projects is not None else None
        return stream(lambda emit: self._crawl(wanted, emit), self.settings.queue_size)

    async def _crawl(self, projects: list[str] | None, deliver: Emit) -> None:
        if self._system is None:
            # Very old or locked down: the listings below still tell what works.
            with contextlib.suppress(HarborApiError):
                await self.systeminfo()
        names = projects if projects is not None else await self.projects()
        listed = 0

        async def emit(artifact: Artifact) -> None:
            nonlocal listed
            await deliver(artifact)
            listed += 1
            if listed % PROGRESS_EVERY == 0:
                self.observer.progress("inventory", listed, None)

        # Pages waiting for the consumer: bounded, whichever listing they come from.
        buffers = asyncio.Semaphore(self.settings.concurrency)
        if names and self.project_listing is None:
            await self._probe_project_listing(names[0])
        async with asyncio.TaskGroup() as group:
            for name in names:
                group.create_task(self._crawl_project(name, emit, buffers))
        self.observer.progress("inventory", listed, listed)
        if self.credentials_accepted is False:
            self.observer.warning(
                f"Harbor at {self.registry}: credentials were not accepted; Harbor answered "
                "as anonymous, so only public projects were listed — check [harbor] user and "
                "CAREEN_HARBOR_PASSWORD")

    async def _probe_project_listing(self, project: str) -> None:
        """Harbor's version is unknown (anonymous caller): ask for one artifact of the
        project-wide listing; 404 means the Harbor predates it."""
        try:
            await self.http.request(
                "GET", f"{API_V2}/projects/{quote(project, safe='')}/artifacts",
                params={"page": 1, "page_size": 1, "with_tag": False},
                headers={"X-Is-Resource-Name": "true"},
                permission=f"reading project {project}")
        except HarborApiError as error:
            if error.status != 404:
                raise
            self.project_listing = False
        else:
            self.project_listing = True

    def _artifact_params(self) -> dict[str, str | int | bool]:
        return {"with_tag": True, "with_scan_overview": True, "with_immutable_status": True}

    def _artifact_headers(self) -> dict[str, str]:
        return {"X-Accept-Vulnerabilities": ACCEPT_VULNERABILITIES}

    def _emitter(self, emit: Emit, repository: str | None = None) -> Callable[
            [list[Any]], Awaitable[None]]:
        async def on_page(items: list[Any]) -> None:
            for raw in items:
                artifact = artifact_from_json(raw, registry=self.registry,
                                              warn=self.observer.warning,
                                              repository=repository)
                if artifact is None:
                    continue
                if (artifact.is_index and artifact.children
                        and artifact.scan.status is ScanStatus.NOT_SCANNED):
                    artifact = replace(artifact, scan=await self._children_summary(artifact))
                warn_unreadable(artifact, self.observer.warning)
                await emit(artifact)
        return on_page

    async def _crawl_project(self, project: str, emit: Emit,
                             buffers: asyncio.Semaphore) -> None:
        quoted = quote(project, safe="")
        if self.project_listing:
            await crawl_pages(
                self.http, f"{API_V2}/projects/{quoted}/artifacts", self._artifact_params(),
                page_size=self.settings.page_size, on_page=self._emitter(emit), slots=buffers,
                headers={**self._artifact_headers(), "X-Is-Resource-Name": "true"},
                permission=f"reading project {project}")
            return
        repo_slots = asyncio.Semaphore(self.settings.concurrency)
        async with asyncio.TaskGroup() as group:
            async def spawn(items: list[Any]) -> None:
                for name, count in self._repository_entries(items, project):
                    if count == 0:
                        continue  # nothing to read: artifact_count says it is empty
                    await repo_slots.acquire()
                    group.create_task(self._crawl_repository(
                        project, name, None if count < 0 else count, emit=emit,
                        buffers=buffers, repo_slots=repo_slots))

            await crawl_pages(
                self.http, f"{API_V2}/projects/{quoted}/repositories", {},
                page_size=self.settings.page_size, on_page=spawn,
                slots=asyncio.Semaphore(self.settings.concurrency),
                permission=f"reading project {project}")

    async def _crawl_repository(self, project: str, repository: str, count: int | None, *,
                                emit: Emit, buffers: asyncio.Semaphore,
                                repo_slots: asyncio.Semaphore) -> None:
        try:
            path = (f"{API_V2}/projects/{quote(project, safe='')}/repositories/"
                    f"{repository_segment(repository, project)}/artifacts")
            await crawl_pages(
                self.http, path, self._artifact_params(), page_size=self.settings.page_size,
                on_page=self._emitter(emit, repository), slots=buffers, known_total=count,
                headers=self._artifact_headers(), permission=f"reading project {project}")
        finally:
            repo_slots.release()

    async def repository_artifacts(self, repository: str) -> list[Artifact]:
        """Every artifact of one repository with its scan summary (issue 14: the tags of a
        base image's proxy-cache or mirror repository); ``[]`` when Harbor has none."""
        found: list[Artifact] = []

        async def keep(artifact: Artifact) -> None:
            found.append(artifact)

        slots = asyncio.Semaphore(1)
        await slots.acquire()  # the crawl releases its repository slot when done
        try:
            await self._crawl_repository(
                check_project_name(repository.partition("/")[0]), repository, None,
                emit=keep, buffers=asyncio.Semaphore(self.settings.concurrency),
                repo_slots=slots)
        except HarborApiError as error:
            if error.status in (403, 404):
                return []
            raise
        return found

    # -- one artifact -----------------------------------------------------------------------

    def _artifact_path(self, image: ImageReference, suffix: str = "") -> str:
        project = image.project
        if project is None:
            raise UsageError(f"{image.short}: Harbor images are named project/repository",
                             hint="add the Harbor project, e.g. library/" + image.short)
        reference = image.digest or image.tag or "latest"
        return (f"{API_V2}/projects/{quote(project, safe='')}/repositories/"
                f"{repository_segment(image.repository, project)}/artifacts/"
                f"{quote(reference, safe=':')}{suffix}")

    async def artifact(self, image: ImageReference) -> Artifact:
        """``getArtifact`` with tags and scan overview (an index without an overview gets its
        children's combined)."""
        body = await self.http.get_json(
            self._artifact_path(image),
            params={**self._artifact_params()},
            headers=self._artifact_headers(),
            permission=f"reading project {image.project}")
        artifact = artifact_from_json(body, registry=self.registry,
                                      warn=self.observer.warning,
                                      repository=image.repository)
        if artifact is None:
            raise ServiceError("Harbor", self.registry,
                               f"the artifact {image.short} has an invalid name or digest")
        if (artifact.is_index and artifact.children
                and artifact.scan.status is ScanStatus.NOT_SCANNED):
            artifact = replace(artifact, scan=await self._children_summary(artifact))
        return artifact

    async def scan_summary(self, image: ImageReference) -> ScanSummary:
        return (await self.artifact(image)).scan

    async def _children_summary(self, index: Artifact) -> ScanSummary:
        async def child(digest: str) -> ScanSummary:
            reference = ImageReference(index.repository, None, digest, self.registry)
            body = await self.http.get_json(
                self._artifact_path(reference), params={"with_scan_overview": True,
                                                        "with_tag": False},
                headers=self._artifact_headers(),
                permission=f"reading project {index.project}")
            return summary_from_overview(body.get("scan_overview")
                                         if isinstance(body, dict) else None)

        # In batches of ``concurrency``: an index may list any number of children, and a
        # task per child up front would cost memory in proportion (issue 18).
        summaries: list[ScanSummary] = []
        step = self.settings.concurrency
        for start in range(0, len(index.children), step):
            summaries += await asyncio.gather(
                *(child(d) for d in index.children[start:start + step]))
        return combine_children(summaries)

    async def vulnerabilities(self, image: ImageReference) -> VulnerabilityReport | None:
        """The findings of one image's latest report; ``None`` when it was never scanned."""
        body = await self.http.get_json(
            self._artifact_path(image, "/additions/vulnerabilities"),
            headers=self._artifact_headers(),
            permission="artifact-addition read (a robot account needs it granted)")
        return parse_vulnerabilities(body)

    async def vulnerability_details(self, image: ImageReference) -> tuple[Finding, ...] | None:
        """The findings of one image's latest report with CVSS scores (issue 14, NOTES §6.6);
        ``None`` when it was never scanned."""
        body = await self.http.get_json(
            self._artifact_path(image, "/additions/vulnerabilities"),
            headers=self._artifact_headers(),
            permission="artifact-addition read (a robot account needs it granted)")
        return parse_v2_report(body, REPORT_MIME_TYPES)

    async def scan_summary_with_fixable(self, image: ImageReference) -> ScanSummary:
        """The summary with per-severity fixable counts from the vulnerability list."""
        summary = await self.scan_summary(image)
        if not summary.succeeded:
            return summary
        report = await self.vulnerabilities(image)
        return summary if report is None else summary.with_fixable(report.fixable)

    # -- scanning ---------------------------------------------------------------------------

    async def request_scan(self, image: ImageReference) -> None:
        """Ask Harbor to scan one image. 202 accepted; 409 means a scan is already pending or
        running, which is as good."""
        response = await self.http.request(
            "POST", self._artifact_path(image, "/scan"), accept=(202, 409),
            permission="scan create (project maintainer or admin, or a robot with scan "
                       "permission)")
        if response.status_code == 409:
            self.observer.info(f"{image.short}: a scan is already pending or running")

    async def wait_for_scans(self, images: Sequence[ImageReference], *, timeout: float,
                             interval: float = 5.0) -> dict[ImageReference, ScanSummary]:
        """:func:`~careen.registries.interface.wait_for_final_scans` on this client's clock."""
        return await wait_for_final_scans(self, images, timeout=timeout, interval=interval,
                                          observer=self.observer, clock=self._clock,
                                          sleep=self._sleep)

    async def scan_all_metrics(self) -> ScanAllMetrics:
        body = await self.http.get_json(f"{API_V2}/scans/all/metrics",
                                        permission="scan-all (system admin or system robot)")
        body = body if isinstance(body, dict) else {}
        metrics = body.get("metrics") or {}
        return ScanAllMetrics(
            # Counts that are no whole numbers >= 0 are not trusted as progress.
            total=read_count(body.get("total")) or 0,
            completed=read_count(body.get("completed")) or 0,
            ongoing=bool(body.get("ongoing")),
            metrics={str(k): n for k, v in (metrics.items() if isinstance(metrics, dict) else ())
                     if (n := read_count(v)) is not None},
            trigger=str(body["trigger"]) if body.get("trigger") else None)

    async def scan_all_schedule(self) -> ScanAllSchedule | None:
        """The scan-all schedule, or ``None`` when there is none (Harbor's empty body, or
        type ``None``)."""
        body = await self.http.get_json(f"{API_V2}/system/scanAll/schedule",
                                        permission="scan-all (system admin or system robot)")
        if not isinstance(body, dict) or not isinstance(body.get("schedule"), dict):
            return None
        schedule = body["schedule"]
        kind = schedule.get("type")
        if not kind or kind == "None":
            return None
        return ScanAllSchedule(
            type=str(kind), cron=str(schedule["cron"]) if schedule.get("cron") else None,
            status=str(body["status"]) if body.get("status") else None,
            id=body["id"] if isinstance(body.get("id"), int) else None)

    async def set_scan_all_schedule(self, kind: str, cron: str | None = None) -> None:
        """Set the scan-all schedule: ``kind`` one of :data:`PERIODIC_TYPES` (``cron`` defaults
        to the UI's for Hourly/Daily/Weekly) or ``"None"`` to remove it. POST creates, PUT
        updates, ``None`` deletes (NOTES section 6.7)."""
        body = {"schedule": schedule_body(kind, cron)}
        current = await self.scan_all_schedule()
        permission = "scan-all (system admin or system robot)"
        if kind == "None":
            if current is not None:
                await self.http.request("PUT", f"{API_V2}/system/scanAll/schedule",
                                        json_body=body, permission=permission)
            return
        if current is None:
            await self.http.request("POST", f"{API_V2}/system/scanAll/schedule",
                                    json_body=body, accept=(201,), permission=permission)
        else:
            await self.http.request("PUT", f"{API_V2}/system/scanAll/schedule",
                                    json_body=body, permission=permission)

    async def trigger_scan_all(self) -> bool:
        """Start a scan of every artifact now; ``False`` when one is already running."""
        response = await self.http.request(
            "POST", f"{API_V2}/system/scanAll/schedule",
            json_body={"schedule": {"type": "Manual"}}, accept=(201, 409),
            permission="scan-all (system admin or system robot)")
        return response.status_code == 201
