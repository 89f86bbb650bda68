"""Harbor 2.x's JSON, read into Careen's model: artifacts, scan summaries, vulnerability
reports, system info, schedules. Pure functions of a decoded body; nothing here sends a request
(the client is :mod:`careen.registries.harbor_v2`).

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
  warning, never turned into an :class:`~careen.reference.ImageReference`, and never ends
  the crawl.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

from careen.errors import CareenError, UsageError
from careen.inventory import Artifact, Platform
from careen.reference import ImageReference
from careen.reference import _digest_problem as digest_problem
from careen.registries.text import one_line, shown
from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts, read_count

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
    raw_status = native.get("scan_status")
    status = (_status_of(raw_status) if isinstance(raw_status, str)
              else ScanStatus.from_harbor(raw_status))
    extra = {"mime_type": mime}
    for key in ("report_id", "severity", "complete_percent"):
        value = native.get(key)
        if value is not None:
            extra[key] = value if type(value) is str else str(value)
    scanner = native.get("scanner")
    scanner_name = None
    if isinstance(scanner, dict) and scanner.get("name"):
        scanner_name = _scanner_name(scanner)
    counts = fixable_total = None
    summary = native.get("summary")
    if status is ScanStatus.SUCCESS and isinstance(summary, dict):
        per_severity = summary.get("summary")
        # Harbor sends ``null`` (a nil Go map) for a scan with no findings.
        per_severity = {} if per_severity is None else per_severity
        if not isinstance(per_severity, dict):
            return ScanSummary.unreadable(
                f"summary.summary is a JSON {type(per_severity).__name__}, not a map",
                extra)
        items = tuple(per_severity.items())
        for _, value in items:
            if type(value) is not int or value < 0:
                break
        else:  # every count a whole number >= 0 (JSON keys are strings): the common case
            return ScanSummary(status=status, counts=_severity_counts(items),
                               fixable_total=read_count(summary.get("fixable")),
                               scanner=scanner_name,
                               scanned_at=parse_time(native.get("end_time")), extra=extra)
        read = {str(k): read_count(v) for k, v in per_severity.items()}
        bad = [k for k, v in read.items() if v is None]
        if bad:
            shown_value = _shown_json(per_severity[bad[0]])
            return ScanSummary.unreadable(
                f"severity count {shown(bad[0], 40)} is {shown_value}, not a whole number "
                ">= 0", extra)
        counts = _severity_counts(tuple((k, v) for k, v in read.items() if v is not None))
        fixable_total = read_count(summary.get("fixable"))
    return ScanSummary(status=status, counts=counts, fixable_total=fixable_total,
                       scanner=scanner_name, scanned_at=parse_time(native.get("end_time")),
                       extra=extra)


@functools.lru_cache(maxsize=64)
def _status_of(value: str) -> ScanStatus:
    # A fleet's statuses are a handful of words: map each once.
    return ScanStatus.from_harbor(value)


def _scanner_name(scanner: dict[str, Any]) -> str:
    """``name version`` of a report's scanner (whose ``name`` is set)."""
    name, version = scanner["name"], scanner.get("version")
    if type(name) is str and type(version) is str:
        return _scanner_words(name, version)
    return " ".join(str(scanner[k]) for k in ("name", "version") if scanner.get(k))


@functools.lru_cache(maxsize=256)
def _scanner_words(name: str, version: str) -> str:
    # A fleet is scanned by one or two scanners: one string each, shared.
    return f"{name} {version}" if version else name


def _shown_json(value: Any) -> str:
    """A JSON value as a message quotes it (bounded, escaped)."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return one_line(text, 40)


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
    unreadable = next((c for c in children if c.unreadable_reason is not None), None)
    if unreadable is not None:
        # One platform's counts are unknown: the index is not known to be clean.
        return ScanSummary.unreadable(f"a child's {unreadable.unreadable_reason}",
                                      {"combined_from": "children"})
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


def _valid_digest(digest: object) -> bool:
    # Unique per artifact, so not cached: the reference grammar's digest check alone, the
    # one the reference constructor applies to the digest part (tests check the two agree).
    return isinstance(digest, str) and digest_problem(digest) is None


Warn = Callable[[str], None]


def artifact_from_json(raw: Any, *, registry: str | None, warn: Warn,
                       repository: str | None = None) -> Artifact | None:
    """One Harbor artifact to an :class:`Artifact`, or ``None`` (with a warning) when its
    repository name or digest is not valid. Invalid tags are dropped one by one; an artifact
    whose tags are all invalid is dropped too (it must not pass for an untagged one).

    The checks are :func:`valid_reference`'s, made part by part: the repository name once
    (cached), then the digest, each tag and each child digest on their own (a valid name is
    valid with any valid tag or digest)."""
    if not isinstance(raw, dict):
        warn("Harbor sent an artifact that is not a JSON object; skipped")
        return None
    get = raw.get
    name = get("repository_name") or repository
    digest = get("digest")
    if not isinstance(name, str) or not _valid_repository(name, registry):
        warn(f"skipped an artifact of repository {shown(str(name))}: not a valid repository "
             "name")
        return None
    if not isinstance(digest, str) or digest_problem(digest) is not None:
        warn(f"skipped an artifact of {name}: digest {shown(str(digest))} is not valid")
        return None
    tags: list[str] = []
    immutable: list[str] = []
    raw_tags = get("tags") or []
    for raw_tag in raw_tags if isinstance(raw_tags, list) else []:
        tag = raw_tag.get("name") if isinstance(raw_tag, dict) else None
        if not isinstance(tag, str) or not _valid_tag(tag):
            warn(f"skipped tag {shown(str(tag))} of {name}@{digest}: not a valid tag")
            continue
        if tag in tags:
            continue
        tags.append(tag)
        if raw_tag.get("immutable") is True:
            immutable.append(tag)
    if raw_tags and not tags:
        warn(f"skipped {name}@{digest}: none of its tags is valid")
        return None
    children: list[str] = []
    platforms: list[Platform] = []
    for ref in get("references") or ():
        if not isinstance(ref, dict):
            continue
        child = ref.get("child_digest")
        if isinstance(child, str) and digest_problem(child) is None:
            children.append(child)
        platform = ref.get("platform")
        if isinstance(platform, dict) and platform.get("os") and platform.get("architecture"):
            platforms.append(Platform(str(platform["os"]), str(platform["architecture"]),
                                      str(platform["variant"]) if platform.get("variant")
                                      else None))
    media_type = get("manifest_media_type")
    if not isinstance(media_type, str):
        media_type = None
    is_index = bool(children) or (media_type is not None and (
        "manifest.list" in media_type or "image.index" in media_type))
    size = get("size")
    push_time = get("push_time")
    return Artifact(
        repository=name, digest=digest, tags=tuple(tags),
        scan=summary_from_overview(get("scan_overview")), registry=registry,
        media_type=media_type, is_index=is_index,
        platforms=tuple(platforms), children=tuple(children), immutable_tags=tuple(immutable),
        push_time=parse_time(push_time) if push_time is not None else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        labels=config_labels(get("extra_attrs")))


#: The labels of an image config that has none (shared: it is read-only).
_NO_LABELS: Final[Mapping[str, str]] = MappingProxyType({})


def config_labels(extra_attrs: Any) -> Mapping[str, str] | None:
    """The image config's labels from an artifact's ``extra_attrs.config.Labels`` (Docker's
    config spelling; ``{}`` when the config has none), or ``None`` when the listing has no
    image config (an index, an older Harbor): then nothing is known of them."""
    config = extra_attrs.get("config") if isinstance(extra_attrs, dict) else None
    if not isinstance(config, dict):
        return None
    labels = config.get("Labels")
    if not isinstance(labels, dict):
        return _NO_LABELS
    return MappingProxyType({str(k): v for k, v in labels.items() if isinstance(v, str)})


def warn_unreadable(artifact: Artifact, warn: Warn) -> None:
    """Say so when ``artifact``'s scan counts could not be read (it is then judged as a
    failed scan: listed as needing attention, never clean)."""
    reason = artifact.scan.unreadable_reason
    if reason is not None:
        warn(f"{artifact.repository}@{artifact.digest}: Harbor's scan summary is unreadable "
             f"({reason}); judged as not scanned, never clean")


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
