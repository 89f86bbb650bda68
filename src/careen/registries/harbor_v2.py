"""Harbor 2.x, read through its REST API v2.0 (``/api/v2.0``).

Reads a whole Harbor's inventory and scan summaries in a few concurrent paged listings instead
of the seed's one ``harbor show`` per image: projects, then per project either the
project-wide artifact listing (Harbor 2.12+) or its repositories and each repository's
artifacts. Results stream through a bounded queue, so memory stays flat however large the
fleet is.

Mapping choices (Harbor NOTES sections 6 and 8):

- ``scan_overview`` is keyed by report MIME type; both known keys are read, the newer first.
  An absent overview is :attr:`ScanStatus.NOT_SCANNED` (never scanned, queued, or not
  scannable: Harbor does not tell these apart).
- An image index without an overview of its own gets the children's summaries combined:
  **the worst count per severity** across the children that succeeded. The children are the
  same software built for several platforms, so a finding usually appears in each of them;
  adding them up would count one CVE once per platform, while the maximum is what the worst
  platform carries (and what one rebuild fixes). The status is Success when any child
  succeeded; ``extra["children_scanned"]`` says how many did.
- Repository names and tags come from the server and are untrusted. One that is not a valid
  image reference (``;``, ``$(..)``, spaces, ``../``, newlines, huge) is skipped with a
  warning through the :class:`~careen.events.Observer`, never turned into an
  :class:`~careen.reference.ImageReference`, and never ends the crawl.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import httpx

from careen.details import Finding, parse_v2_report
from careen.errors import CareenError, ServiceError, UsageError
from careen.events import NULL_OBSERVER, Observer
from careen.inventory import Artifact, Platform
from careen.reference import ImageReference
from careen.registries.http import (
    EventHook,
    HarborApiError,
    HarborClientBase,
    HarborHttp,
    HarborSettings,
    Sleep,
    crawl_pages,
    shown,
)
from careen.registries.interface import wait_for_final_scans
from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts

API_V2: Final = "/api/v2.0"
MIME_V11: Final = "application/vnd.security.vulnerability.report; version=1.1"
MIME_V10: Final = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
#: Report types Careen reads, preferred first; sent as ``X-Accept-Vulnerabilities``.
REPORT_MIME_TYPES: Final = (MIME_V11, MIME_V10)
ACCEPT_VULNERABILITIES: Final = ", ".join(REPORT_MIME_TYPES)
#: First Harbor with ``GET /projects/{p}/artifacts`` (NOTES section 1).
PROJECT_LISTING_SINCE: Final = (2, 12)
#: Harbor's project name rule (``^[a-z0-9]+(?:[._-][a-z0-9]+)*$``).
_PROJECT_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")
_HARBOR_VERSION = re.compile(r"v?(\d+)\.(\d+)")
#: Schedule types of ``ScheduleObj.type`` a periodic schedule may have.
PERIODIC_TYPES: Final = ("Hourly", "Daily", "Weekly", "Custom", "Schedule")
#: The cron the Harbor UI sends for each preset type: 6 fields, seconds first and 0.
DEFAULT_CRON: Final = {"Hourly": "0 0 * * * *", "Daily": "0 0 0 * * *",
                       "Weekly": "0 0 0 * * 0"}
_ZERO_TIME = "0001-01-01"
#: How often (in artifacts) the crawl reports progress to the observer.
PROGRESS_EVERY: Final = 100


# -- values -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Vulnerability:
    """One finding of an artifact's vulnerability report."""

    id: str
    package: str
    version: str
    fix_version: str | None
    severity: Severity
    description: str = ""
    links: tuple[str, ...] = ()

    @property
    def fixable(self) -> bool:
        return bool(self.fix_version)


@dataclass(frozen=True, slots=True)
class VulnerabilityReport:
    """``additions/vulnerabilities`` of one artifact: which report type, which scanner, and
    the findings."""

    mime_type: str
    vulnerabilities: tuple[Vulnerability, ...]
    scanner: str | None = None
    generated_at: datetime | None = None

    @property
    def counts(self) -> SeverityCounts:
        return _count_by_severity(self.vulnerabilities)

    @property
    def fixable(self) -> SeverityCounts:
        """Per-severity counts of findings with a fixed version (for
        :meth:`ScanSummary.with_fixable`)."""
        return _count_by_severity(v for v in self.vulnerabilities if v.fixable)


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """``GET /systeminfo``. ``harbor_version`` is ``None`` for an anonymous caller: Harbor
    shows it only to authenticated ones, which is how rejected credentials are noticed."""

    harbor_version: str | None
    auth_mode: str | None = None
    registry_url: str | None = None

    @property
    def version(self) -> tuple[int, int] | None:
        if self.harbor_version is None:
            return None
        match = _HARBOR_VERSION.match(self.harbor_version.strip())
        return (int(match[1]), int(match[2])) if match else None


@dataclass(frozen=True, slots=True)
class ScanAllSchedule:
    """The scan-all schedule (``type`` one of :data:`PERIODIC_TYPES`), as Harbor reports it."""

    type: str
    cron: str | None = None
    status: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class ScanAllMetrics:
    """``GET /scans/all/metrics``: the latest scan-all execution's progress."""

    total: int
    completed: int
    ongoing: bool
    metrics: Mapping[str, int] = field(default_factory=dict)
    trigger: str | None = None


# -- mapping Harbor JSON to the model ---------------------------------------------------------

def _count_by_severity(items: Iterable[Vulnerability]) -> SeverityCounts:
    totals: dict[Severity, int] = {}
    for item in items:
        totals[item.severity] = totals.get(item.severity, 0) + 1
    return SeverityCounts.of(totals)


def parse_time(value: Any) -> datetime | None:
    """Harbor's RFC 3339 times; the zero time (``0001-01-01T...``, "never") is ``None``."""
    if not isinstance(value, str) or not value or value.startswith(_ZERO_TIME):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def pick_report(keyed: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The first report type Careen knows that ``keyed`` holds, else any other one."""
    for mime in REPORT_MIME_TYPES:
        if isinstance(keyed.get(mime), dict):
            return mime, keyed[mime]
    for mime, value in keyed.items():
        if isinstance(value, dict):
            return mime, value
    return None


def summary_from_overview(overview: Any) -> ScanSummary:
    """``scan_overview`` (keyed by MIME type) to a :class:`ScanSummary`. Absent or empty is
    not scanned; a non-Success overview has no counts (Harbor omits them)."""
    if not isinstance(overview, dict):
        return ScanSummary.not_scanned()
    picked = pick_report(overview)
    if picked is None:
        return ScanSummary.not_scanned()
    mime, native = picked
    status = ScanStatus.from_harbor(native.get("scan_status"))
    extra = {"mime_type": mime}
    for key in ("report_id", "severity", "complete_percent"):
        if native.get(key) is not None:
            extra[key] = str(native[key])
    scanner = native.get("scanner")
    scanner_name = None
    if isinstance(scanner, dict) and scanner.get("name"):
        scanner_name = " ".join(str(scanner[k]) for k in ("name", "version") if scanner.get(k))
    counts = fixable_total = None
    summary = native.get("summary")
    if status is ScanStatus.SUCCESS and isinstance(summary, dict):
        per_severity = summary.get("summary") or {}
        if isinstance(per_severity, dict):
            counts = _severity_counts(tuple(
                (str(k), int(v)) for k, v in per_severity.items() if isinstance(v, int)))
        if isinstance(summary.get("fixable"), int):
            fixable_total = summary["fixable"]
    return ScanSummary(status=status, counts=counts, fixable_total=fixable_total,
                       scanner=scanner_name, scanned_at=parse_time(native.get("end_time")),
                       extra=extra)


@functools.lru_cache(maxsize=4096)
def _severity_counts(items: tuple[tuple[str, int], ...]) -> SeverityCounts:
    # A fleet's summaries repeat (many images carry the same counts), and the value is
    # immutable: build each distinct one once.
    return SeverityCounts.from_mapping(dict(items))


_IN_PROGRESS_ORDER = (ScanStatus.RUNNING, ScanStatus.PENDING, ScanStatus.ERROR,
                      ScanStatus.STOPPED)


def combine_children(children: Sequence[ScanSummary]) -> ScanSummary:
    """An image index's summary from its children's (see the module docstring): the worst
    count per severity across the children that succeeded."""
    done = [c for c in children if c.succeeded and c.counts is not None]
    if not done:
        for status in _IN_PROGRESS_ORDER:
            if any(c.status is status for c in children):
                return ScanSummary(status=status)
        return ScanSummary.not_scanned()
    worst = {s: max(c.counts.get(s) for c in done if c.counts is not None) for s in Severity}
    fixables = [c.fixable_total for c in done if c.fixable_total is not None]
    newest = max((c.scanned_at for c in done if c.scanned_at is not None), default=None)
    return ScanSummary(
        status=ScanStatus.SUCCESS, counts=SeverityCounts.of(worst),
        fixable_total=max(fixables) if fixables else None,
        scanner=next((c.scanner for c in done if c.scanner), None), scanned_at=newest,
        extra={"combined_from": "children",
               "children_scanned": f"{len(done)}/{len(children)}"})


def parse_vulnerabilities(body: Any) -> VulnerabilityReport | None:
    """``additions/vulnerabilities``: ``{mime: report}``, or ``{}`` for a never-scanned
    artifact (``None`` here)."""
    if not isinstance(body, dict):
        return None
    picked = pick_report(body)
    if picked is None:
        return None
    mime, report = picked
    items: list[Vulnerability] = []
    for raw in report.get("vulnerabilities") or ():
        if not isinstance(raw, dict):
            continue
        links = raw.get("links") or ()
        items.append(Vulnerability(
            id=str(raw.get("id", "")), package=str(raw.get("package", "")),
            version=str(raw.get("version", "")),
            fix_version=str(raw["fix_version"]) if raw.get("fix_version") else None,
            severity=Severity.from_name(str(raw.get("severity", "Unknown"))),
            description=str(raw.get("description") or ""),
            links=tuple(str(link) for link in links if isinstance(link, str))))
    scanner = report.get("scanner")
    scanner_name = None
    if isinstance(scanner, dict) and scanner.get("name"):
        scanner_name = " ".join(str(scanner[k]) for k in ("name", "version") if scanner.get(k))
    return VulnerabilityReport(mime_type=mime, vulnerabilities=tuple(items),
                               scanner=scanner_name,
                               generated_at=parse_time(report.get("generated_at")))


def valid_reference(repository: str, *, tag: str | None = None, digest: str | None = None,
                    registry: str | None = None) -> bool:
    """Whether untrusted parts make a valid image reference.

    A listing asks this three times or more per artifact (its repository, its digest, each
    tag), for names that repeat across a repository's artifacts, and parsing a whole reference
    each time was a seventh of a crawl's CPU. So the parts are judged apart, each as
    :meth:`ImageReference.of` would judge it (tests check the two agree on arbitrary text):
    the repository name once per distinct name (cached), a tag on a fixed one-letter name
    (cached: tags repeat across repositories) and a digest with the grammar's digest check.
    """
    if not isinstance(repository, str) or (tag is None and digest is None):
        return False
    if (tag is not None and digest is not None) or not (
            isinstance(registry, str | None) and isinstance(tag, str | None)):
        return parses_as_reference(repository, tag=tag, digest=digest, registry=registry)
    if not _valid_repository(repository, registry):
        return False
    if tag is not None:
        return _valid_tag(tag)
    return _valid_digest(digest)


def parses_as_reference(repository: str, *, tag: str | None = None, digest: str | None = None,
                        registry: str | None = None) -> bool:
    """Whether ``ImageReference.of`` accepts the parts, asked directly (the slow path of
    :func:`valid_reference`, and its reference in tests)."""
    if not isinstance(repository, str) or (tag is None and digest is None):
        return False
    try:
        ImageReference.of(repository, tag=tag, digest=digest, registry=registry)
    except (CareenError, ValueError, TypeError):
        return False
    return True


#: Distinct names remembered; a fleet's repositories and tags repeat far more than this.
_NAME_CACHE_SIZE: Final = 16_384


@functools.lru_cache(maxsize=_NAME_CACHE_SIZE)
def _valid_repository(repository: str, registry: str | None) -> bool:
    # A name valid with ``latest`` is valid with any valid tag or digest: the grammar checks
    # the name and the tag or digest apart, and neither part may hold the other's separators.
    return parses_as_reference(repository, tag="latest", registry=registry)


@functools.lru_cache(maxsize=_NAME_CACHE_SIZE)
def _valid_tag(tag: str) -> bool:
    return parses_as_reference("x", tag=tag)


_DIGEST_HOLDER: Final = ImageReference("x")


def _valid_digest(digest: object) -> bool:
    # Unique per artifact, so not cached; the digest grammar is the whole check
    # (``with_digest`` applies it alone, without parsing a whole reference).
    if not isinstance(digest, str):
        return False
    try:
        _DIGEST_HOLDER.with_digest(digest)
    except (CareenError, ValueError, TypeError):
        return False
    return True


Warn = Callable[[str], None]


def artifact_from_json(raw: Any, *, registry: str | None, warn: Warn,
                       repository: str | None = None) -> Artifact | None:
    """One Harbor artifact to an :class:`Artifact`, or ``None`` (with a warning) when its
    repository name or digest is not valid. Invalid tags are dropped one by one; an artifact
    whose tags are all invalid is dropped too (it must not pass for an untagged one)."""
    if not isinstance(raw, dict):
        warn("Harbor sent an artifact that is not a JSON object; skipped")
        return None
    name = raw.get("repository_name") or repository
    digest = raw.get("digest")
    if not isinstance(name, str) or not valid_reference(name, tag="latest", registry=registry):
        warn(f"skipped an artifact of repository {shown(str(name))}: not a valid repository "
             "name")
        return None
    if not isinstance(digest, str) or not valid_reference(name, digest=digest,
                                                          registry=registry):
        warn(f"skipped an artifact of {name}: digest {shown(str(digest))} is not valid")
        return None
    tags: list[str] = []
    immutable: list[str] = []
    raw_tags = raw.get("tags") or []
    for raw_tag in raw_tags if isinstance(raw_tags, list) else []:
        tag = raw_tag.get("name") if isinstance(raw_tag, dict) else None
        if not isinstance(tag, str) or not valid_reference(name, tag=tag, registry=registry):
            warn(f"skipped tag {shown(str(tag))} of {name}@{digest}: not a valid tag")
            continue
        if tag in tags:
            continue
        tags.append(tag)
        if isinstance(raw_tag, dict) and raw_tag.get("immutable") is True:
            immutable.append(tag)
    if raw_tags and not tags:
        warn(f"skipped {name}@{digest}: none of its tags is valid")
        return None
    children: list[str] = []
    platforms: list[Platform] = []
    for ref in raw.get("references") or ():
        if not isinstance(ref, dict):
            continue
        child = ref.get("child_digest")
        if isinstance(child, str) and valid_reference(name, digest=child, registry=registry):
            children.append(child)
        platform = ref.get("platform")
        if isinstance(platform, dict) and platform.get("os") and platform.get("architecture"):
            platforms.append(Platform(str(platform["os"]), str(platform["architecture"]),
                                      str(platform["variant"]) if platform.get("variant")
                                      else None))
    media_type = raw.get("manifest_media_type")
    is_index = bool(children) or (isinstance(media_type, str) and (
        "manifest.list" in media_type or "image.index" in media_type))
    size = raw.get("size")
    return Artifact(
        repository=name, digest=digest, tags=tuple(tags),
        scan=summary_from_overview(raw.get("scan_overview")), registry=registry,
        media_type=media_type if isinstance(media_type, str) else None, is_index=is_index,
        platforms=tuple(platforms), children=tuple(children), immutable_tags=tuple(immutable),
        push_time=parse_time(raw.get("push_time")),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None)


def repository_segment(repository: str, project: str) -> str:
    """The ``{repository_name}`` path segment: the name below the project, URL-encoded twice
    (Harbor's proxy decodes once, Harbor core once more; NOTES section 7)."""
    below = repository[len(project) + 1:] if repository.startswith(project + "/") else repository
    return quote(quote(below, safe=""), safe="")


def check_project_name(name: str) -> str:
    if not isinstance(name, str) or not _PROJECT_NAME.match(name) or len(name) > 255:
        raise UsageError(f"{shown(str(name))} is not a Harbor project name",
                         hint="project names are lower-case letters, digits and single "
                              "'.', '_' or '-' between them")
    return name


# -- streaming --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_DONE: Final = object()


def first_error(error: BaseException) -> BaseException:
    """The error to show from a (nested) exception group: a Careen error if there is one."""
    if isinstance(error, BaseExceptionGroup):
        found = [first_error(e) for e in error.exceptions]
        for inner in found:
            if isinstance(inner, CareenError):
                return inner
        return found[0] if found else error
    return error


Emit = Callable[[Artifact], Awaitable[None]]


async def stream(produce: Callable[[Emit], Awaitable[None]],
                 queue_size: int) -> AsyncIterator[Artifact]:
    """Run ``produce`` in the background and yield what it emits, through a queue of
    ``queue_size``: the producer waits when the consumer is slower, so memory stays bounded.
    Closing the iterator early cancels the producer."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)

    async def run() -> None:
        try:
            await produce(queue.put)
        except Exception as error:  # handed to the consumer, which raises it
            await queue.put(_Failed(first_error(error)))
        else:
            await queue.put(_DONE)

    task = asyncio.create_task(run())
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, Artifact):
                yield item
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# -- the client -------------------------------------------------------------------------------

class HarborV2Client(HarborClientBase):
    """Harbor 2.x. Implements :class:`careen.registries.interface.ScanSource`, plus scan-all,
    vulnerability lists, system info. ``stats`` counts the requests sent.

    Use as ``async with HarborV2Client(settings) as harbor: ...`` or call :meth:`aclose`.
    """

    api_version: Final = "v2"
    #: Capabilities (:class:`~careen.registries.interface.ScanSource`).
    rescans_by_digest: Final = True

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

        summaries = await asyncio.gather(*(child(d) for d in index.children))
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
            total=int(body.get("total") or 0), completed=int(body.get("completed") or 0),
            ongoing=bool(body.get("ongoing")),
            metrics={str(k): int(v) for k, v in metrics.items() if isinstance(v, int)},
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


def schedule_body(kind: str, cron: str | None) -> dict[str, str]:
    """A ``ScheduleObj`` for ``kind``, checked: 6-field cron whose seconds are 0."""
    if kind == "None":
        return {"type": "None"}
    if kind not in PERIODIC_TYPES:
        raise UsageError(f"scan-all schedule type {shown(kind)} is not one of "
                         f"{', '.join((*PERIODIC_TYPES, 'None'))}",
                         hint="to scan everything now, trigger a manual scan-all instead")
    cron = cron if cron is not None else DEFAULT_CRON.get(kind)
    if cron is None:
        raise UsageError(f"scan-all schedule type {kind} needs a cron expression",
                         hint="6 fields, seconds first and 0, e.g. '0 0 2 * * *' for 02:00")
    fields = cron.split()
    if len(fields) != 6 or fields[0] != "0":
        raise UsageError(f"scan-all cron {shown(cron)} must have 6 fields with seconds first "
                         "and 0", hint="e.g. '0 0 0 * * *' for daily at 00:00")
    return {"type": kind, "cron": " ".join(fields)}
