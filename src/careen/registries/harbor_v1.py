"""Harbor 1.x (1.2 to 1.10) through its API at ``/api`` (NOTES section 9): reads, scans and
the scan-all.

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

Writes (the seed's "scan every image daily at 00:00"): a tag is scanned with ``POST
…/tags/{tag}/scan``; everything with ``POST /api/repositories/scanAll`` up to 1.7 and a
``Manual`` schedule from 1.8. The daily scan-all is ``scan_all_policy`` in
``/api/configurations`` up to 1.7 (``daily_time``: seconds after 00:00 UTC, NOTES 9.4) and
``/api/system/scanAll/schedule`` from 1.8 (``harbor-v1.10-swagger.yaml``); which one is
chosen by the version ``/api/systeminfo`` reports. Both are read and set as
:class:`ScanAllSchedule` values with a 6-field cron in UTC, as on Harbor 2.x.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

import httpx

from careen.details import Finding, parse_v1_details
from careen.errors import ServiceError, UsageError
from careen.events import NULL_OBSERVER, Observer
from careen.inventory import Artifact
from careen.reference import ImageReference
from careen.registries.http import (
    EventHook,
    HarborClientBase,
    HarborHttp,
    HarborSettings,
    Sleep,
)
from careen.registries.interface import wait_for_final_scans
from careen.registries.paging import crawl_pages, listing_of
from careen.registries.streaming import Emit, stream
from careen.registries.text import shown
from careen.registries.wire import (
    ScanAllSchedule,
    SystemInfo,
    check_project_name,
    parse_time,
    schedule_body,
    summary_from_overview,
    valid_reference,
    warn_unreadable,
)
from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts, read_count

API_V1: Final = "/api"
#: The first 1.x release with ``/api/system/scanAll/schedule`` (before it: configurations).
SCHEDULE_API_SINCE: Final = (1, 8)
SCAN_ALL_PERMISSION: Final = "scan-all (system admin)"
_VERSION = re.compile(r"v?(\d+)\.(\d+)")
_DAILY_CRON = re.compile(r"(\d{1,2}) (\d{1,2}) (\d{1,2}) \* \* \*\Z")


def summary_from_v1(overview: Any) -> ScanSummary:
    """A v1 tag's ``scan_overview`` to a :class:`ScanSummary` (absent: not scanned)."""
    if not isinstance(overview, dict):
        return ScanSummary.not_scanned()
    if "scan_status" not in overview and any("/" in str(key) for key in overview):
        # 1.10: keyed by MIME type, a v2 NativeReportSummary (NOTES 9.3).
        return summary_from_overview(overview)
    status = ScanStatus.from_harbor(overview.get("scan_status"))
    counts = None
    components = overview.get("components")
    if status is ScanStatus.SUCCESS and isinstance(components, dict):
        totals: dict[Severity, int] = {}
        entries = components.get("summary") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return ScanSummary.unreadable("components.summary is not a list of "
                                          "{severity, count}", counts_unit="packages")
        for entry in entries:
            level, count = entry.get("severity"), read_count(entry.get("count"))
            if count is None:
                extra = {k: str(overview[k]) for k in ("job_id", "severity")
                         if overview.get(k) is not None}
                return ScanSummary.unreadable(
                    f"a count of severity {shown(str(level), 20)} is not a whole number >= 0",
                    extra, counts_unit="packages")
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
    """Harbor 1.x. Implements :class:`careen.registries.interface.ScanSource`, and the scan
    and scan-all methods :class:`~careen.registries.harbor_v2.HarborV2Client` has."""

    api_version: Final = "v1"
    #: Capabilities (:class:`~careen.registries.interface.ScanSource`): rescans name tags
    #: (the 1.x scan API names tags only).
    rescans_by_digest: Final = False
    api_root = API_V1

    def __init__(self, settings: HarborSettings, *, observer: Observer = NULL_OBSERVER,
                 transport: httpx.AsyncBaseTransport | None = None,
                 event_hooks: Mapping[str, list[EventHook]] | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self.observer = observer
        self.http = HarborHttp(settings, observer=observer, transport=transport,
                               event_hooks=event_hooks, sleep=sleep)
        self.registry = settings.host
        self._sleep = sleep
        self._version: tuple[int, int] | None = None
        self._schedule_api: bool | None = None

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

        await crawl_pages(self.http, f"{API_V1}/projects", {}, null_is_empty=True,
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
                # A repository that claims tags must list them: ``null`` is then no answer.
                group.create_task(self._crawl_repository(
                    name, emit, repo_slots,
                    null_is_empty=not (isinstance(count, int) and count > 0)))

        await crawl_pages(self.http, f"{API_V1}/repositories", {"project_id": ident},
                          null_is_empty=True,
                          page_size=self.settings.v1_page_size, on_page=spawn,
                          slots=asyncio.Semaphore(1), permission=f"reading project {project}")

    def _tags_path(self, repository: str) -> str:
        # Raw, slashes unencoded: v1 routes the repository with a wildcard.
        return f"{API_V1}/repositories/{quote(repository, safe='/')}/tags"

    async def _crawl_repository(self, repository: str, emit: Emit,
                                repo_slots: asyncio.Semaphore, *,
                                null_is_empty: bool = True) -> None:
        try:
            path = self._tags_path(repository)
            response = await self.http.request("GET", path, permission=f"reading {repository}")
            tags = listing_of(self.http, response, path, null_is_empty=null_is_empty)
            for artifact in self._artifacts_of(repository, tags):
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
        found = [Artifact(repository=repository, digest=digest, tags=tuple(names),
                          scan=summary_from_v1(overview), registry=self.registry)
                 for digest, (names, overview) in by_digest.items()]
        for artifact in found:
            warn_unreadable(artifact, self.observer.warning)
        return found

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

    # -- scans (NOTES 9.1) ------------------------------------------------------------------------

    async def request_scan(self, image: ImageReference) -> None:
        """``POST /api/repositories/{repo}/tags/{tag}/scan``, the repository raw with its
        slashes. 200 (1.x) or 202 (1.10) means accepted; Harbor 1.x scans by tag only."""
        if image.tag is None:
            raise UsageError(f"cannot scan {image.short}: Harbor 1.x scans images by tag, "
                             "not by digest", hint="name the image by its tag")
        await self.http.request(
            "POST", f"{self._tags_path(image.repository)}/{quote(image.tag, safe='')}/scan",
            accept=(200, 202), permission="scanning (project admin)")

    async def wait_for_scans(self, images: Sequence[ImageReference], *, timeout: float,
                             interval: float = 5.0) -> dict[ImageReference, ScanSummary]:
        """Poll each tag's ``scan_overview`` until final or ``timeout``."""
        return await wait_for_final_scans(self, images, timeout=timeout, interval=interval,
                                          observer=self.observer, sleep=self._sleep)

    # -- scan-all (NOTES 9.1, 9.4) ---------------------------------------------------------------

    async def harbor_version(self) -> tuple[int, int] | None:
        """``(major, minor)`` of ``/api/systeminfo``'s ``harbor_version`` (``v1.6.3-ab12``),
        or ``None`` when it says none."""
        if self._version is None:
            text = (await self.systeminfo()).harbor_version or ""
            match = _VERSION.match(text)
            if match is None:
                return None
            self._version = (int(match[1]), int(match[2]))
        return self._version

    async def has_schedule_api(self) -> bool:
        """Whether this Harbor has ``/api/system/scanAll/schedule`` (1.8 on); a Harbor that
        does not say its version is asked the path itself."""
        if self._schedule_api is None:
            version = await self.harbor_version()
            if version is not None:
                self._schedule_api = version >= SCHEDULE_API_SINCE
            else:
                response = await self.http.request(
                    "GET", f"{API_V1}/system/scanAll/schedule", accept=(200, 401, 403, 404))
                self._schedule_api = response.status_code != 404
        return self._schedule_api

    async def trigger_scan_all(self) -> bool:
        """Scan every image now: ``POST /api/repositories/scanAll`` (up to 1.7) or a
        ``Manual`` schedule (1.8 on); ``False`` when a scan-all is already running."""
        if not await self.has_schedule_api():
            await self.http.request("POST", f"{API_V1}/repositories/scanAll", accept=(202,),
                                    permission=SCAN_ALL_PERMISSION)
            return True
        response = await self.http.request(
            "POST", f"{API_V1}/system/scanAll/schedule",
            json_body={"schedule": {"type": "Manual"}}, accept=(200, 201, 409),
            permission=SCAN_ALL_PERMISSION)
        return response.status_code != 409

    async def scan_all_schedule(self) -> ScanAllSchedule | None:
        """The daily (or, from 1.8, any) scan-all schedule, its cron in UTC; ``None`` when
        there is none."""
        if await self.has_schedule_api():
            body = await self.http.get_json(f"{API_V1}/system/scanAll/schedule",
                                            permission=SCAN_ALL_PERMISSION)
            schedule = body.get("schedule") if isinstance(body, dict) else None
            kind = schedule.get("type") if isinstance(schedule, dict) else None
            if not isinstance(schedule, dict) or not kind or kind == "None":
                return None
            cron = schedule.get("cron")
            return ScanAllSchedule(type=str(kind), cron=str(cron) if cron else None)
        body = await self.http.get_json(f"{API_V1}/configurations",
                                        permission=SCAN_ALL_PERMISSION)
        item = body.get("scan_all_policy") if isinstance(body, dict) else None
        # Read back as {"value", "editable"} (NOTES 9.4); the bare policy is taken too.
        policy = item.get("value", item) if isinstance(item, dict) else None
        return schedule_of_policy(policy)

    async def set_scan_all_schedule(self, kind: str, cron: str | None = None) -> None:
        """Set the scan-all schedule (``kind`` ``None`` removes it). Up to 1.7 Harbor keeps
        only a daily time: ``cron`` must be a daily one (``S M H * * *``, UTC)."""
        if not await self.has_schedule_api():
            policy = policy_of_schedule(kind, cron)
            await self.http.request("PUT", f"{API_V1}/configurations",
                                    json_body={"scan_all_policy": policy},
                                    permission=SCAN_ALL_PERMISSION)
            return
        body = {"schedule": schedule_body(kind, cron)}
        current = await self.scan_all_schedule()
        if kind == "None" and current is None:
            return
        method = "POST" if current is None else "PUT"
        await self.http.request(method, f"{API_V1}/system/scanAll/schedule", json_body=body,
                                accept=(200, 201), permission=SCAN_ALL_PERMISSION)


def schedule_of_policy(policy: Any) -> ScanAllSchedule | None:
    """A 1.6-1.7 ``scan_all_policy`` as a schedule: ``daily`` at ``daily_time`` seconds after
    00:00 UTC is ``Daily`` with the cron of that UTC time; ``none`` (or nothing) is ``None``."""
    if not isinstance(policy, dict) or policy.get("type") != "daily":
        return None
    parameter = policy.get("parameter")
    seconds = parameter.get("daily_time") if isinstance(parameter, dict) else None
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        seconds = 0  # 1.x's UI default: a daily policy without a time runs at 00:00 UTC
    seconds %= 86400
    return ScanAllSchedule(
        type="Daily", cron=f"{seconds % 60} {seconds // 60 % 60} {seconds // 3600} * * *")


def policy_of_schedule(kind: str, cron: str | None) -> dict[str, Any]:
    """The 1.6-1.7 ``scan_all_policy`` for a schedule: ``none``, or ``daily`` with
    ``daily_time`` from a daily cron (``S M H * * *``, UTC)."""
    if kind == "None":
        return {"type": "none"}
    match = _DAILY_CRON.match(" ".join((cron or ("0 0 0 * * *" if kind == "Daily" else ""))
                                       .split()))
    seconds = (int(match[3]) * 3600 + int(match[2]) * 60 + int(match[1])
               if match is not None else -1)
    if match is None or not 0 <= seconds < 86400 or int(match[2]) > 59 or int(match[1]) > 59:
        raise UsageError(f"Harbor before 1.8 keeps only a daily scan-all time; "
                         f"{kind} {shown(cron or '')} is not one",
                         hint="give --daily HH:MM (or --utc HH:MM)")
    return {"type": "daily", "parameter": {"daily_time": seconds}}
