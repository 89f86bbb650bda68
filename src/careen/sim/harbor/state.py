"""The simulator's live model: projects, repositories, artifacts, tags, scans and scan-all.

Built from a :class:`~careen.sim.harbor.fleet.Fleet`; the HTTP app reads and changes it, and
tests may change it directly (``sim.state``) to add artifacts, move tags or finish scans.
Every public method takes the state's lock, so a test thread and the server thread can share
it. Scans advance lazily: a job records when it was asked for, and its status (Pending ->
Running -> Success) is worked out from the clock whenever someone looks, so no background
task is needed and 100,000 idle artifacts cost nothing.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from careen.sim.harbor.fleet import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    ArtifactSpec,
    Fleet,
    PlatformSpec,
    RobotSpec,
    ScannerSpec,
    ScanResult,
    ScanSpec,
    UserSpec,
)
from careen.sim.harbor.scanner import ScanError, Scanner, ScanTarget, TableScanner

INDEX_MEDIA_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
FINAL_STATUSES = frozenset({"Success", "Error", "Stopped"})


class SimError(Exception):
    """A Harbor error the app turns into ``{"errors":[{code, message}]}`` (NOTES §4)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Clock:
    """Wall time plus an offset tests can advance (``state.clock.advance(5)``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass(frozen=True, slots=True)
class ScanDelays:
    """How long a requested scan stays Pending, then Running, before it ends."""

    pending: float = 0.1
    running: float = 0.2


class ScanRecord:
    """An artifact's latest report: final (``result`` set for Success) or in progress."""

    __slots__ = ("_initial_of", "_report_id", "end", "fail", "mime", "pending_until", "result",
                 "running_until", "start", "status")

    def __init__(self, status: str, result: ScanResult | None, mime: str, start: float,
                 end: float | None, report_id: str) -> None:
        self.status = status
        self.result = result
        self.mime = mime
        self.start = start
        self.end = end  # None: zero time
        self._report_id: str | None = report_id
        self._initial_of = ""
        self.pending_until = 0.0
        self.running_until = 0.0
        self.fail = False

    @classmethod
    def initial(cls, digest: str, status: str, result: ScanResult | None, mime: str,
                start: float, end: float | None) -> ScanRecord:
        """The report artifact ``digest`` has at start. Its id (a ``uuid5`` of the digest) is
        worked out when first read: most reports of a large fleet are never read, and working
        them out at load was a third of loading 10,000 artifacts (under tracemalloc)."""
        record = cls(status, result, mime, start, end, "")
        record._report_id = None
        record._initial_of = digest
        return record

    @property
    def report_id(self) -> str:
        if self._report_id is None:
            self._report_id = _report_id(self._initial_of, 0)
        return self._report_id


class Tag:
    __slots__ = ("artifact", "id", "immutable", "name", "pull_time", "push_time")

    def __init__(self, tag_id: int, name: str, push_time: float, artifact: Artifact) -> None:
        self.id = tag_id
        self.name = name
        self.push_time = push_time
        self.pull_time = 0.0
        self.immutable = False
        self.artifact = artifact


class Artifact:
    __slots__ = ("baseline", "cache", "children", "digest", "extra_attrs", "id",
                 "manifest_media_type", "media_type", "parents", "pull_time", "push_time",
                 "repo", "scan", "scanned_once", "size", "tags")

    def __init__(self, art_id: int, repo: Repository, spec: ArtifactSpec) -> None:
        self.id = art_id
        self.repo = repo
        self.digest = spec.digest
        self.push_time = spec.push_time
        self.pull_time = 0.0
        self.size = spec.size
        self.manifest_media_type = spec.manifest_media_type
        self.media_type = spec.media_type
        self.extra_attrs = spec.extra_attrs
        self.tags: list[Tag] = []
        self.children: list[tuple[Artifact, PlatformSpec]] = []
        self.parents = 0
        self.scan: ScanRecord | None = None
        self.scanned_once = False
        self.baseline: ScanResult | None = None
        self.cache: dict[str, Any] | None = None

    @property
    def is_index(self) -> bool:
        return self.manifest_media_type in INDEX_MEDIA_TYPES

    def touch(self) -> None:
        self.cache = None


class Repository:
    __slots__ = ("_ordered", "artifacts", "by_digest", "by_tag", "creation_time",
                 "description", "id", "name", "project", "pull_count", "update_time")

    def __init__(self, repo_id: int, project: Project, name: str, created: float) -> None:
        self.id = repo_id
        self.project = project
        self.name = name  # full, project first
        self.description = ""
        self.pull_count = 0
        self.creation_time = created
        self.update_time = created
        self.artifacts: list[Artifact] = []
        self.by_digest: dict[str, Artifact] = {}
        self.by_tag: dict[str, Tag] = {}
        self._ordered: list[Artifact] | None = None

    @property
    def short_name(self) -> str:
        return self.name[len(self.project.name) + 1:]

    def ordered(self) -> list[Artifact]:
        """Artifacts by push_time desc, then id desc (NOTES §5)."""
        if self._ordered is None:
            self._ordered = sorted(self.artifacts, key=lambda a: (a.push_time, a.id),
                                   reverse=True)
        return self._ordered

    def changed(self) -> None:
        self._ordered = None
        self.project.changed()


class Project:
    __slots__ = ("_ordered", "creation_time", "id", "name", "public", "repos")

    def __init__(self, project_id: int, name: str, public: bool, created: float) -> None:
        self.id = project_id
        self.name = name
        self.public = public
        self.creation_time = created
        self.repos: dict[str, Repository] = {}
        self._ordered: list[Artifact] | None = None

    def ordered_artifacts(self) -> list[Artifact]:
        if self._ordered is None:
            self._ordered = sorted((a for r in self.repos.values() for a in r.artifacts),
                                   key=lambda a: (a.push_time, a.id), reverse=True)
        return self._ordered

    def changed(self) -> None:
        self._ordered = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: anonymous, a user or a robot (NOTES §2)."""

    kind: str  # "anonymous" | "user" | "robot"
    name: str = ""
    admin: bool = False
    projects: tuple[str, ...] = ()  # member projects; for robots: () means all (system robot)
    permissions: frozenset[str] = frozenset()

    @property
    def authenticated(self) -> bool:
        return self.kind != "anonymous"


ANONYMOUS = Identity("anonymous")


class ScanAllExecution:
    __slots__ = ("artifact_ids", "conflicts", "id", "start", "stopped", "trigger")

    def __init__(self, exec_id: int, trigger: str, start: float) -> None:
        self.id = exec_id
        self.trigger = trigger
        self.start = start
        self.artifact_ids: list[int] = []
        self.conflicts = 0
        self.stopped = False


class SimState:
    """The live Harbor. Thread-safe through one re-entrant lock (``with state.lock``)."""

    def __init__(self, fleet: Fleet, *, scanner: Scanner | None = None,
                 scan_delays: ScanDelays = ScanDelays(), clock: Clock | None = None) -> None:
        self.lock = threading.RLock()
        self.fleet = fleet
        self.clock = clock or Clock()
        self.scan_delays = scan_delays
        self.harbor_version = fleet.harbor_version.lstrip("v")
        self.scanner: Scanner | None = scanner
        if scanner is None and fleet.scanner is not None:
            self.scanner = TableScanner(fleet.scanner, fleet.scan_results, fleet.default_result)
        self.users: dict[str, UserSpec] = {u.name: u for u in fleet.users}
        self.robots: dict[str, RobotSpec] = {r.name: r for r in fleet.robots}
        self.projects: dict[str, Project] = {}
        self.projects_by_id: dict[int, Project] = {}
        self.repos: dict[str, Repository] = {}
        self.artifacts: dict[int, Artifact] = {}
        self.schedule: dict[str, Any] | None = None
        #: Harbor 1.6-1.7's daily scan-all, in ``/api/configurations`` (NOTES §9.4).
        self.scan_all_policy: dict[str, Any] = {"type": "none"}
        self.executions: list[ScanAllExecution] = []
        self._next = {"project": 1, "repo": 1, "artifact": 1, "tag": 1, "schedule": 1,
                      "execution": 1}
        self._ordered_repos: list[Repository] | None = None
        self._ordered_projects: list[Project] | None = None
        self.started = self.clock.now()
        for project in fleet.projects:
            proj = self.add_project(project.name, public=project.public)
            for repo in project.repositories:
                for spec in repo.artifacts:
                    self.add_artifact(f"{proj.name}/{repo.name}", spec, initial=True)
                record = self.repos.get(f"{proj.name}/{repo.name}")
                if record is None:
                    record = self._repository(f"{proj.name}/{repo.name}", self.started)
                record.pull_count = repo.pull_count
                record.description = repo.description

    def copy(self) -> SimState:
        """A copy to start over from, later and more than once: a test prepares a state once
        (runs a night against it, say) and gives each case a copy of it, instead of preparing
        it again per case. The copy has a lock of its own; the fleet and the scanner, which
        requests never change, are shared."""
        with self.lock:
            memo: dict[int, Any] = {id(self.lock): threading.RLock(), id(self.fleet): self.fleet,
                                    id(self.scanner): self.scanner}
            return copy.deepcopy(self, memo)

    # ---- ids and versions -------------------------------------------------------------------

    def _id(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] = value + 1
        return value

    def version_at_least(self, major: int, minor: int) -> bool:
        parts = self.harbor_version.split("-")[0].split(".")
        try:
            return (int(parts[0]), int(parts[1])) >= (major, minor)
        except (IndexError, ValueError):
            return True

    @property
    def scanner_info(self) -> ScannerSpec | None:
        return self.scanner.info if self.scanner is not None else None

    # ---- building -------------------------------------------------------------------------------

    def add_project(self, name: str, *, public: bool = False) -> Project:
        with self.lock:
            existing = self.projects.get(name)
            if existing is not None:
                return existing
            project = Project(self._id("project"), name, public, self.clock.now())
            self.projects[name] = project
            self.projects_by_id[project.id] = project
            self._ordered_projects = None
            return project

    def _repository(self, full_name: str, created: float) -> Repository:
        repo = self.repos.get(full_name)
        if repo is None:
            project_name = full_name.split("/", 1)[0]
            project = self.projects.get(project_name) or self.add_project(project_name)
            repo = Repository(self._id("repo"), project, full_name, created)
            project.repos[full_name] = repo
            self.repos[full_name] = repo
            self._ordered_repos = None
        return repo

    def add_artifact(self, repository: str, spec: ArtifactSpec, *,
                     initial: bool = False) -> Artifact:
        """Add an artifact (and, for an index, its children) to ``repository`` (full name;
        project and repository are created when missing). Tags already on another artifact
        move to this one, as a push does. Returns the new artifact."""
        with self.lock:
            repo = self._repository(repository, spec.push_time)
            children = []
            for platform in spec.platforms:
                child_spec = ArtifactSpec(
                    digest=platform.digest or "", push_time=spec.push_time,
                    size=spec.size // max(1, len(spec.platforms)),
                    manifest_media_type=DOCKER_MANIFEST,
                    extra_attrs={"architecture": platform.architecture, "os": platform.os},
                    scan=platform.scan)
                child = repo.by_digest.get(child_spec.digest) or self._insert(repo, child_spec,
                                                                              initial)
                child.parents += 1
                children.append((child, platform))
            artifact = repo.by_digest.get(spec.digest)
            if artifact is None:
                artifact = self._insert(repo, spec, initial)
            artifact.children = children
            for tag in spec.tags:
                self._tag(artifact, tag, spec.push_time)
            return artifact

    def _insert(self, repo: Repository, spec: ArtifactSpec, initial: bool) -> Artifact:
        artifact = Artifact(self._id("artifact"), repo, spec)
        if spec.scan is not None:
            mime = spec.scan.mime or (self.scanner.info.mime if self.scanner else
                                      ScannerSpec().mime)
            start = spec.scan.start_time or spec.push_time + 5
            final = spec.scan.status in FINAL_STATUSES
            end = spec.scan.end_time or (start + 12 if final else None)
            artifact.scan = ScanRecord.initial(spec.digest, spec.scan.status, spec.scan.result,
                                               mime, start, end)
            artifact.scanned_once = True
            if spec.scan.status == "Success" and initial:
                artifact.baseline = spec.scan.result
            if not final:  # a scan already in progress at start: let it finish normally
                artifact.scan.pending_until = self.clock.now() + self.scan_delays.pending
                artifact.scan.running_until = (artifact.scan.pending_until
                                               + self.scan_delays.running)
                if spec.scan.status == "Running":
                    artifact.scan.pending_until = self.clock.now()
        repo.artifacts.append(artifact)
        repo.by_digest[artifact.digest] = artifact
        repo.update_time = max(repo.update_time, spec.push_time)
        self.artifacts[artifact.id] = artifact
        repo.changed()
        return artifact

    def _tag(self, artifact: Artifact, name: str, push_time: float) -> None:
        repo = artifact.repo
        old = repo.by_tag.get(name)
        if old is not None:
            if old.artifact is artifact:
                return
            old.artifact.tags.remove(old)
            old.artifact.touch()
        tag = Tag(self._id("tag"), name, push_time, artifact)
        artifact.tags.append(tag)
        artifact.tags.sort(key=lambda t: (t.push_time, t.id), reverse=True)
        artifact.touch()
        repo.by_tag[name] = tag

    def push(self, repository: str, tag: str, digest: str, *, size: int = 2_000_000,
             manifest_media_type: str = DOCKER_MANIFEST) -> Artifact:
        """Simulate a push: ``tag`` now names a new artifact ``digest`` with no scan overview
        (NOTES §11.8); the old artifact stays, untagged if this was its last tag."""
        with self.lock:
            return self.add_artifact(repository, ArtifactSpec(
                digest=digest, tags=(tag,), push_time=self.clock.now(), size=size,
                manifest_media_type=manifest_media_type))

    def untag(self, repository: str, tag: str) -> None:
        with self.lock:
            repo = self.repos[repository]
            record = repo.by_tag.pop(tag, None)
            if record is not None:
                record.artifact.tags.remove(record)
                record.artifact.touch()

    # ---- look-ups -------------------------------------------------------------------------------

    def ordered_projects(self) -> list[Project]:
        """Projects by name (Harbor's project list default)."""
        if self._ordered_projects is None:
            self._ordered_projects = sorted(self.projects.values(), key=lambda p: p.name)
        return self._ordered_projects

    def ordered_repositories(self) -> list[Repository]:
        """Repositories by creation_time desc, then id desc (NOTES §5)."""
        if self._ordered_repos is None:
            self._ordered_repos = sorted(self.repos.values(),
                                         key=lambda r: (r.creation_time, r.id), reverse=True)
        return self._ordered_repos

    def find_artifact(self, repository: str, reference: str) -> Artifact | None:
        repo = self.repos.get(repository)
        if repo is None:
            return None
        if reference.startswith("sha256:"):
            return repo.by_digest.get(reference)
        tag = repo.by_tag.get(reference)
        return tag.artifact if tag is not None else None

    # ---- identity and permissions (NOTES §2) ----------------------------------------------------

    def authenticate(self, username: str, password: str) -> Identity:
        """The identity for basic-auth credentials; bad ones fall back to anonymous."""
        robot = self.robots.get(username)
        if robot is not None:
            if (robot.disabled or robot.secret != password
                    or (robot.expires_at != -1 and robot.expires_at < self.clock.now())):
                return ANONYMOUS
            body = robot.name[len("robot$"):]
            if "+" in body:
                return Identity("robot", robot.name, projects=(body.split("+", 1)[0],),
                                permissions=robot.permissions - {"scan-all"})
            return Identity("robot", robot.name, projects=robot.projects,
                            permissions=robot.permissions)
        user = self.users.get(username)
        if user is None or user.password != password:
            return ANONYMOUS
        return Identity("user", user.name, admin=user.admin, projects=user.projects)

    def allowed(self, who: Identity, project: Project | None, action: str) -> bool:
        """``action``: ``read``, ``scan``, ``addition`` (artifact-addition read)."""
        if who.admin:
            return True
        if project is None:
            return False
        if who.kind == "robot":
            in_scope = not who.projects or project.name in who.projects
            if action == "read":
                return project.public or (in_scope and "read" in who.permissions)
            return in_scope and action in who.permissions
        member = who.kind == "user" and project.name in who.projects
        if action in ("read", "addition"):
            return project.public or member
        return member

    def system_allowed(self, who: Identity) -> bool:
        return who.admin or (who.kind == "robot" and not who.projects
                             and "scan-all" in who.permissions)

    def visible_projects(self, who: Identity) -> Iterable[Project]:
        return (p for p in self.ordered_projects() if self.allowed(who, p, "read"))

    # ---- scans (NOTES §6.4, §6.5) ---------------------------------------------------------------

    def current_scan(self, artifact: Artifact) -> ScanRecord | None:
        """The artifact's report with its status brought up to the clock."""
        record = artifact.scan
        if record is None or record.status in FINAL_STATUSES:
            return record
        now = self.clock.now()
        if now >= record.running_until:
            self._finish(artifact, record, record.running_until)
        elif now >= record.pending_until and record.status != "Running":
            record.status = "Running"
            record.start = record.pending_until
            artifact.touch()
        return record

    def _finish(self, artifact: Artifact, record: ScanRecord, when: float) -> None:
        if record.fail or self.scanner is None:
            record.status, record.result = "Error", None
        else:
            try:
                record.result = self._scan_result(artifact)
                record.status = "Success"
            except ScanError:  # the scanner could not read the image: Harbor shows Error
                record.status, record.result = "Error", None
        record.end = when
        artifact.touch()

    def _scan_result(self, artifact: Artifact) -> ScanResult:
        assert self.scanner is not None  # noqa: S101 - checked by the caller
        if artifact.children:
            totals: dict[str, int] = {}
            fixable = 0
            for child, _ in artifact.children:
                result = self.scanner.scan(_target(child))
                fixable += result.fixable
                for word, n in result.counts:
                    totals[word] = totals.get(word, 0) + n
            return ScanResult.of(totals, fixable)
        return self.scanner.scan(_target(artifact))

    def request_scan(self, artifact: Artifact, *, fail: bool = False) -> None:
        """Queue a scan; raise :class:`SimError` 409/412/400 as Harbor does."""
        with self.lock:
            if self.scanner is None:
                raise SimError(412, "PRECONDITION",
                               f"no available scanner for project: {artifact.repo.project.id}")
            if artifact.manifest_media_type not in (DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
                                                    OCI_INDEX,
                                                    "application/vnd.oci.image.manifest.v1+json"):
                raise SimError(400, "BAD_REQUEST",
                               f"the configured scanner {self.scanner.info.name} does not "
                               "support scanning artifact with mime type "
                               f"{artifact.manifest_media_type}")
            current = self.current_scan(artifact)
            if current is not None and current.status not in FINAL_STATUSES:
                raise SimError(409, "CONFLICT",
                               f"a previous scan process is {current.status}")
            now = self.clock.now()
            record = ScanRecord("Pending", None, self.scanner.info.mime, now, None,
                                str(uuid.uuid4()))
            record.pending_until = now + self.scan_delays.pending
            record.running_until = record.pending_until + self.scan_delays.running
            record.fail = fail
            artifact.scan = record
            artifact.touch()
            for child, _ in artifact.children:
                current = self.current_scan(child)
                if current is None or current.status in FINAL_STATUSES:
                    self.request_scan(child, fail=fail)

    def finish_scans(self) -> int:
        """Finish every scan in progress now (tests). Returns how many finished."""
        with self.lock:
            done = 0
            now = self.clock.now()
            for artifact in self.artifacts.values():
                record = artifact.scan
                if record is not None and record.status not in FINAL_STATUSES:
                    self._finish(artifact, record, now)
                    done += 1
            return done

    def set_scan(self, repository: str, reference: str, result: ScanResult | None, *,
                 status: str = "Success") -> None:
        """Replace an artifact's report (tests); ``None`` with Success means never scanned."""
        with self.lock:
            artifact = self.find_artifact(repository, reference)
            if artifact is None:
                raise KeyError(f"{repository}:{reference}")
            if result is None and status == "Success":
                artifact.scan = None
            else:
                now = self.clock.now()
                mime = self.scanner.info.mime if self.scanner else ScannerSpec().mime
                artifact.scan = ScanRecord(status, result, mime, now, now, str(uuid.uuid4()))
            artifact.touch()

    # ---- scan-all (NOTES §6.7) ------------------------------------------------------------------

    def start_scan_all(self, trigger: str) -> ScanAllExecution:
        with self.lock:
            execution = ScanAllExecution(self._id("execution"), trigger, self.clock.now())
            for artifact in list(self.artifacts.values()):
                if artifact.parents and not artifact.tags:
                    continue  # index children are scanned through their index
                try:
                    self.request_scan(artifact)
                except SimError:
                    execution.conflicts += 1
                    continue
                execution.artifact_ids.append(artifact.id)
            self.executions.append(execution)
            return execution

    def execution_stats(self, execution: ScanAllExecution | None) -> dict[str, Any]:
        if execution is None:
            return {"total": 0, "completed": 0, "ongoing": False}
        metrics = {"Pending": 0, "Running": 0, "Success": 0, "Error": 0, "Stopped": 0}
        for art_id in execution.artifact_ids:
            artifact = self.artifacts.get(art_id)
            record = self.current_scan(artifact) if artifact is not None else None
            status = record.status if record is not None else "Stopped"
            metrics[status if status in metrics else "Error"] += 1
        total = len(execution.artifact_ids)
        completed = metrics["Success"] + metrics["Error"] + metrics["Stopped"]
        return {"total": total, "completed": completed, "metrics": metrics,
                "ongoing": total != completed, "trigger": execution.trigger}

    def running_manual_execution(self) -> ScanAllExecution | None:
        for execution in reversed(self.executions):
            if execution.trigger == "Manual":
                return execution if self.execution_stats(execution)["ongoing"] else None
        return None

    def stop_scan_all(self) -> None:
        with self.lock:
            if not self.executions:
                raise SimError(400, "BAD_REQUEST", "no scan all job is found currently")
            execution = self.executions[-1]
            execution.stopped = True
            now = self.clock.now()
            for art_id in execution.artifact_ids:
                artifact = self.artifacts[art_id]
                record = self.current_scan(artifact)
                if record is not None and record.status not in FINAL_STATUSES:
                    record.status, record.result, record.end = "Stopped", None, now
                    artifact.touch()


def _target(artifact: Artifact) -> ScanTarget:
    return ScanTarget(artifact.repo.name, artifact.digest,
                      tuple(t.name for t in artifact.tags), artifact.baseline)


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes


def _report_id(digest: str, n: int) -> str:
    """``str(uuid5(NAMESPACE_URL, "DIGEST/N"))``, worked out here: :func:`uuid.uuid5`
    imports :mod:`hashlib` on every call and builds a :class:`uuid.UUID`, which was most of
    the cost of loading a large fleet (one report id per scanned artifact)."""
    name = f"{digest}/{n}".encode()
    raw = bytearray(hashlib.sha1(_URL_NAMESPACE + name, usedforsecurity=False).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_ISO_CACHE: dict[float, str] = {}


def _iso(moment: float | None) -> str:
    """RFC 3339 with milliseconds, ``Z``; the zero time for ``None``/0 (NOTES §1)."""
    if not moment:
        return "0001-01-01T00:00:00.000Z"
    text = _ISO_CACHE.get(moment)
    if text is None:
        whole = int(moment)
        millis = round((moment - whole) * 1000)
        if millis == 1000:
            whole, millis = whole + 1, 0
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"
        if len(_ISO_CACHE) < 500_000:
            _ISO_CACHE[moment] = text
    return text


iso_time = _iso


def native_report_summary(record: ScanRecord) -> dict[str, Any]:
    """A report's ``NativeReportSummary`` as 1.10 and 2.x write it (NOTES §6.4, §9.3): the
    report's id, status and times always; ``duration`` when not zero; ``severity`` and the
    counts once it succeeded. (2.x adds its scanner and ``complete_percent`` to a success.)"""
    summary: dict[str, Any] = {"report_id": record.report_id, "scan_status": record.status,
                               "start_time": iso_time(record.start),
                               "end_time": iso_time(record.end)}
    duration = round((record.end or record.start) - record.start)
    if duration > 0:
        summary["duration"] = duration
    if record.status == "Success" and record.result is not None:
        result = record.result
        summary["severity"] = result.severity
        summary["summary"] = {"total": result.total, "fixable": result.fixable,
                              "summary": dict(result.counts)}
    return summary


def scan_spec_of(result: ScanResult | None, status: str = "Success") -> ScanSpec:
    return ScanSpec(status=status, result=result)


def mapping_of_counts(result: ScanResult) -> Mapping[str, int]:
    return dict(result.counts)
