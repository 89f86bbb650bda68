"""The simulator's fleet file: what a simulated Harbor holds when it starts.

A fleet is plain data (frozen values); :class:`careen.sim.harbor.state.SimState` turns it into
the live, mutable model the HTTP app serves. Format (YAML or JSON; every key but ``projects``
is optional)::

    harbor_version: "2.14.0"        # "1.x.y" selects the v1 API (NOTES §9)
    users: {admin: Harbor12345}     # name: password (``admin`` is the system admin), or
                                    # name: {password: .., admin: false, projects: [library]}
    robots:                         # system robot robot$careen, project robot robot$library+ci
      - {name: "robot$careen", secret: "s3cret", permissions: [read, scan]}
    scanner:                        # null: no scanner configured (scan -> 412, NOTES §6.5)
      {name: Trivy, vendor: Aqua Security, version: v0.50.1,
       mime: "application/vnd.security.vulnerability.report; version=1.1"}
    scan_results:                   # what a (re)scan finds, keyed "repo:tag" or digest;
      "library/activemq:5.14.4": {high: 0, low: 1}   # "default" for anything else (clean)
      default: {}
    projects:
      - name: library
        public: false
        repositories:
          - name: activemq          # may be nested: team/app
            artifacts:
              - tags: ["5.14.4"]
                scan: {high: 6, medium: 2, fixable: 5}   # counts per severity; status, mime,
                                                           # start_time, end_time optional
              - tags: []            # untagged
                scan: null          # never scanned
              - tags: ["multi"]
                platforms: [{os: linux, architecture: amd64}, {os: linux, architecture: arm64}]

Artifact keys: ``digest`` (generated deterministically when absent), ``tags``, ``push_time``
(RFC 3339), ``size``, ``media_type``, ``manifest_media_type``, ``extra_attrs``, ``platforms``
(an image index; its children become untagged artifacts with the same scan unless they give
their own ``scan``), ``scan``. A scan with ``status`` ``Pending``/``Running``/``Error`` has no
counts (NOTES §6.4).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from careen.errors import InputFileError

MIME_V11 = "application/vnd.security.vulnerability.report; version=1.1"
MIME_V10 = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
SCAN_MIMES = (MIME_V11, MIME_V10)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

#: Harbor's severity words, highest first, with the fleet-file key of each.
SEVERITY_WORDS: tuple[tuple[str, str], ...] = (
    ("critical", "Critical"), ("high", "High"), ("medium", "Medium"), ("low", "Low"),
    ("unknown", "Unknown"), ("none", "None"),
)
SCAN_STATUSES = ("Success", "Pending", "Running", "Error", "Stopped")
ROBOT_PERMISSIONS = frozenset({"read", "scan", "addition", "scan-all"})
_EPOCH_2024 = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one scan found: counts per Harbor severity word (only non-zero kept), how many
    have a fixed version, and a package total for the v1 view (NOTES §9.2)."""

    counts: tuple[tuple[str, int], ...] = ()
    fixable: int = 0
    packages: int | None = None

    @classmethod
    def of(cls, counts: Mapping[str, int], fixable: int = 0,
           packages: int | None = None) -> ScanResult:
        ordered = tuple((word, int(counts[word])) for _, word in SEVERITY_WORDS
                        if int(counts.get(word, 0)) > 0)
        return cls(ordered, fixable, packages)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.counts)

    def count(self, word: str) -> int:
        return dict(self.counts).get(word, 0)

    @property
    def severity(self) -> str:
        """Overall severity: the highest word present, ``None`` for a clean result."""
        return self.counts[0][0] if self.counts else "None"


CLEAN = ScanResult()


@dataclass(frozen=True, slots=True)
class ScanSpec:
    """An artifact's scan state at start: ``status`` ``Success`` with a result, or a
    non-final/failed status without one. ``mime`` picks the overview key (NOTES §6.4)."""

    status: str = "Success"
    result: ScanResult | None = CLEAN
    mime: str | None = None
    start_time: float | None = None
    end_time: float | None = None


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    os: str
    architecture: str
    variant: str | None = None
    digest: str | None = None
    scan: ScanSpec | None = None


@dataclass(frozen=True, slots=True)
class ArtifactSpec:
    digest: str
    tags: tuple[str, ...] = ()
    push_time: float = _EPOCH_2024
    size: int = 0
    manifest_media_type: str = DOCKER_MANIFEST
    media_type: str = DOCKER_CONFIG
    extra_attrs: Mapping[str, Any] | None = None
    platforms: tuple[PlatformSpec, ...] = ()
    scan: ScanSpec | None = None


@dataclass(frozen=True, slots=True)
class RepositorySpec:
    name: str  # without the project, may be nested ("team/app")
    artifacts: tuple[ArtifactSpec, ...] = ()
    pull_count: int = 0
    description: str = ""


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    name: str
    public: bool = False
    repositories: tuple[RepositorySpec, ...] = ()


@dataclass(frozen=True, slots=True)
class UserSpec:
    name: str
    password: str = field(repr=False)
    admin: bool = False
    projects: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RobotSpec:
    """A robot account. ``robot$name`` is system level (``projects`` limits it, empty means
    all); ``robot$project+name`` belongs to one project (NOTES §2)."""

    name: str
    secret: str = field(repr=False)
    permissions: frozenset[str] = frozenset({"read"})
    projects: tuple[str, ...] = ()
    disabled: bool = False
    expires_at: float = -1


@dataclass(frozen=True, slots=True)
class ScannerSpec:
    name: str = "Trivy"
    vendor: str = "Aqua Security"
    version: str = "v0.50.1"
    mime: str = MIME_V11


@dataclass(frozen=True, slots=True)
class Fleet:
    """A whole simulated Harbor's starting content. Build with :meth:`from_file`,
    :meth:`from_dict` or :meth:`generate`."""

    projects: tuple[ProjectSpec, ...] = ()
    harbor_version: str = "2.14.0"
    users: tuple[UserSpec, ...] = (UserSpec("admin", "Harbor12345", admin=True),)
    robots: tuple[RobotSpec, ...] = ()
    scanner: ScannerSpec | None = ScannerSpec()
    scan_results: Mapping[str, ScanResult] = field(default_factory=dict)
    default_result: ScanResult = CLEAN
    source: str = "<fleet>"

    @property
    def artifact_count(self) -> int:
        return sum(len(a.platforms) + 1 for p in self.projects for r in p.repositories
                   for a in r.artifacts)

    @property
    def api(self) -> str:
        """``v1`` for a Harbor 1.x version, else ``v2.0``."""
        return "v1" if self.harbor_version.lstrip("v").startswith("1.") else "v2.0"

    @classmethod
    def from_file(cls, path: str | Path) -> Fleet:
        """Read a fleet file (YAML, or JSON which is YAML too)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputFileError(str(path), f"cannot read the fleet file: {exc.strerror}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.load(
                text, Loader=yaml.CSafeLoader)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise InputFileError(str(path), f"not valid YAML/JSON: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<fleet>") -> Fleet:
        """Build from parsed YAML/JSON; raise :class:`InputFileError` naming the bad key."""
        return _Parser(source).fleet(data)

    @classmethod
    def generate(
        cls, *, projects: int = 5, repos_per_project: int = 20, artifacts_per_repo: int = 10,
        seed: int = 0, vulnerable_share: float = 0.3, harbor_version: str = "2.14.0",
        robots: Sequence[RobotSpec] = (),
    ) -> Fleet:
        """A synthetic fleet of ``projects * repos_per_project * artifacts_per_repo``
        artifacts, deterministic for a seed: about ``vulnerable_share`` of them break the
        seed's policy (medium >= 3 or high > 0), a few are never scanned or untagged, the
        rest are clean or nearly so."""
        rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
        project_specs = []
        push = _EPOCH_2024
        for p in range(projects):
            pname = "library" if p == 0 else f"project{p:03d}"
            repos = []
            for r in range(repos_per_project):
                rname = f"app{r:04d}" if r % 4 else f"team{r % 7}/app{r:04d}"
                arts = []
                for a in range(artifacts_per_repo):
                    push += 1.0
                    roll = rng.random()
                    scan: ScanSpec | None
                    if roll < vulnerable_share:
                        high = rng.randint(0, 5)
                        medium = rng.randint(3 if high == 0 else 0, 12)
                        crit = rng.randint(0, 2) if rng.random() < 0.2 else 0
                        total = high + medium + crit
                        scan = ScanSpec(result=ScanResult.of(
                            {"Critical": crit, "High": high, "Medium": medium,
                             "Low": rng.randint(0, 20)},
                            fixable=rng.randint(0, total)))
                    elif roll < vulnerable_share + 0.05:
                        scan = None
                    else:
                        scan = ScanSpec(result=ScanResult.of(
                            {"Medium": rng.randint(0, 2), "Low": rng.randint(0, 8)}))
                    tags: tuple[str, ...] = (f"{a}.0",) if rng.random() > 0.05 else ()
                    if a == artifacts_per_repo - 1 and tags:
                        tags = (*tags, "latest")
                    arts.append(ArtifactSpec(
                        digest=synthetic_digest(pname, rname, a, seed), tags=tags,
                        push_time=push, size=1_000_000 + rng.randint(0, 50_000_000),
                        scan=scan))
                repos.append(RepositorySpec(rname, tuple(arts)))
            project_specs.append(ProjectSpec(pname, public=p % 3 == 2,
                                             repositories=tuple(repos)))
        return cls(projects=tuple(project_specs), harbor_version=harbor_version,
                   robots=tuple(robots), source=f"<generated seed={seed}>")


def synthetic_digest(*parts: object) -> str:
    """A deterministic, well-formed sha256 digest for generated artifacts."""
    text = "\x00".join(str(p) for p in parts)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def parse_time(value: object, where: str, source: str) -> float:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise InputFileError(source, f"{where}: {value!r} is not an RFC 3339 time")


class _Parser:
    """Turns the loose file format into specs, naming the path of any bad value."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> InputFileError:
        return InputFileError(self.source, f"{where}: {message}")

    def mapping(self, value: object, where: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def sequence(self, value: object, where: str) -> Sequence[Any]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value

    def string(self, value: object, where: str) -> str:
        if not isinstance(value, str | int | float) or isinstance(value, bool) or value == "":
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        return str(value)

    def count(self, value: object, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(where, f"expected a whole number >= 0, got {value!r}")
        return value

    def check_keys(self, data: Mapping[str, Any], allowed: set[str], where: str) -> None:
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(map(str, unknown))}; "
                                   f"allowed: {', '.join(sorted(allowed))}")

    def fleet(self, data: Any) -> Fleet:
        top = self.mapping(data, "fleet")
        self.check_keys(top, {"harbor_version", "users", "robots", "scanner", "scan_results",
                              "projects"}, "fleet")
        version = self.string(top.get("harbor_version", "2.14.0"), "harbor_version")
        users = tuple(self.user(name, value) for name, value in
                      self.mapping(top.get("users", {"admin": "Harbor12345"}), "users").items())
        robots = tuple(self.robot(r, f"robots[{i}]")
                       for i, r in enumerate(self.sequence(top.get("robots"), "robots")))
        scanner: ScannerSpec | None = ScannerSpec()
        if "scanner" in top:
            scanner = None if top["scanner"] is None else self.scanner(top["scanner"])
        results: dict[str, ScanResult] = {}
        default = CLEAN
        for key, value in self.mapping(top.get("scan_results"), "scan_results").items():
            result = self.result(self.mapping(value, f"scan_results.{key}"),
                                 f"scan_results.{key}")
            if key == "default":
                default = result
            else:
                results[str(key)] = result
        projects = []
        seen: set[str] = set()
        for i, p in enumerate(self.sequence(top.get("projects"), "projects")):
            project = self.project(p, f"projects[{i}]")
            if project.name in seen:
                raise self.fail(f"projects[{i}]", f"duplicate project {project.name!r}")
            seen.add(project.name)
            projects.append(project)
        return Fleet(projects=tuple(projects), harbor_version=version, users=users,
                     robots=robots, scanner=scanner, scan_results=results,
                     default_result=default, source=self.source)

    def user(self, name: str, value: object) -> UserSpec:
        where = f"users.{name}"
        if isinstance(value, Mapping):
            self.check_keys(value, {"password", "admin", "projects"}, where)
            return UserSpec(name, self.string(value.get("password"), f"{where}.password"),
                            admin=bool(value.get("admin", name == "admin")),
                            projects=tuple(str(p) for p in self.sequence(
                                value.get("projects"), f"{where}.projects")))
        return UserSpec(name, self.string(value, where), admin=name == "admin")

    def robot(self, value: object, where: str) -> RobotSpec:
        data = self.mapping(value, where)
        self.check_keys(data, {"name", "secret", "permissions", "projects", "disabled",
                               "expires_at"}, where)
        name = self.string(data.get("name"), f"{where}.name")
        if not name.startswith("robot$"):
            raise self.fail(f"{where}.name", f"{name!r} must start with 'robot$'")
        perms = frozenset(str(p) for p in self.sequence(
            data.get("permissions", ["read"]), f"{where}.permissions"))
        if perms - ROBOT_PERMISSIONS:
            raise self.fail(f"{where}.permissions", f"unknown {sorted(perms - ROBOT_PERMISSIONS)};"
                                                    f" use {sorted(ROBOT_PERMISSIONS)}")
        expires = data.get("expires_at", -1)
        return RobotSpec(name, self.string(data.get("secret"), f"{where}.secret"), perms,
                         tuple(str(p) for p in self.sequence(data.get("projects"),
                                                             f"{where}.projects")),
                         bool(data.get("disabled", False)),
                         -1 if expires == -1 else parse_time(expires, f"{where}.expires_at",
                                                             self.source))

    def scanner(self, value: object) -> ScannerSpec:
        data = self.mapping(value, "scanner")
        self.check_keys(data, {"name", "vendor", "version", "mime"}, "scanner")
        mime = str(data.get("mime", MIME_V11))
        if mime not in SCAN_MIMES:
            raise self.fail("scanner.mime", f"{mime!r} is not one of {list(SCAN_MIMES)}")
        return ScannerSpec(str(data.get("name", "Trivy")), str(data.get("vendor",
                           "Aqua Security")), str(data.get("version", "v0.50.1")), mime)

    def result(self, data: Mapping[str, Any], where: str,
               extra: frozenset[str] = frozenset()) -> ScanResult:
        words = dict(SEVERITY_WORDS)
        self.check_keys(data, {*words, "fixable", "packages", *extra}, where)
        counts = {words[k]: self.count(v, f"{where}.{k}") for k, v in data.items() if k in words}
        result = ScanResult.of(counts, self.count(data.get("fixable", 0), f"{where}.fixable"),
                               None if data.get("packages") is None else
                               self.count(data["packages"], f"{where}.packages"))
        if result.fixable > result.total:
            raise self.fail(f"{where}.fixable", f"{result.fixable} fixable but only "
                                                f"{result.total} vulnerabilities")
        return result

    def scan(self, value: object, where: str) -> ScanSpec | None:
        if value is None:
            return None
        data = self.mapping(value, where)
        status = str(data.get("status", "Success"))
        if status not in SCAN_STATUSES:
            raise self.fail(f"{where}.status", f"{status!r} is not one of {list(SCAN_STATUSES)}")
        result = self.result(data, where, frozenset({"status", "mime", "start_time",
                                                     "end_time"}))
        mime = data.get("mime")
        if mime is not None and mime not in SCAN_MIMES:
            raise self.fail(f"{where}.mime", f"{mime!r} is not one of {list(SCAN_MIMES)}")
        times = [None if data.get(k) is None else parse_time(data[k], f"{where}.{k}",
                                                             self.source)
                 for k in ("start_time", "end_time")]
        return ScanSpec(status, result if status == "Success" else None, mime, *times)

    def project(self, value: object, where: str) -> ProjectSpec:
        data = self.mapping(value, where)
        self.check_keys(data, {"name", "public", "repositories"}, where)
        name = self.string(data.get("name"), f"{where}.name")
        if "/" in name:
            raise self.fail(f"{where}.name", f"project name {name!r} cannot contain '/'")
        repos = tuple(self.repository(name, r, f"{where}.repositories[{i}]") for i, r in
                      enumerate(self.sequence(data.get("repositories"), f"{where}.repositories")))
        return ProjectSpec(name, bool(data.get("public", False)), repos)

    def repository(self, project: str, value: object, where: str) -> RepositorySpec:
        data = self.mapping(value, where)
        self.check_keys(data, {"name", "artifacts", "pull_count", "description"}, where)
        name = self.string(data.get("name"), f"{where}.name").strip("/")
        if name.startswith(project + "/"):
            name = name[len(project) + 1:]
        artifacts = []
        seen_tags: set[str] = set()
        for i, a in enumerate(self.sequence(data.get("artifacts"), f"{where}.artifacts")):
            spec = self.artifact(f"{project}/{name}", i, a, f"{where}.artifacts[{i}]")
            clash = seen_tags.intersection(spec.tags)
            if clash:
                raise self.fail(f"{where}.artifacts[{i}]", f"tag(s) {sorted(clash)} already "
                                                           "used in this repository")
            seen_tags.update(spec.tags)
            artifacts.append(spec)
        return RepositorySpec(name, tuple(artifacts),
                              self.count(data.get("pull_count", 0), f"{where}.pull_count"),
                              str(data.get("description", "")))

    def artifact(self, repo: str, index: int, value: object, where: str) -> ArtifactSpec:
        data = self.mapping(value, where)
        self.check_keys(data, {"digest", "tags", "push_time", "size", "media_type",
                               "manifest_media_type", "extra_attrs", "platforms", "scan"}, where)
        tags = tuple(self.string(t, f"{where}.tags") for t in
                     self.sequence(data.get("tags"), f"{where}.tags"))
        digest = str(data.get("digest") or synthetic_digest(repo, index, tags))
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise self.fail(f"{where}.digest", f"{digest!r} is not a sha256 digest")
        scan = self.scan(data.get("scan"), f"{where}.scan")
        platforms = []
        for i, p in enumerate(self.sequence(data.get("platforms"), f"{where}.platforms")):
            pdata = self.mapping(p, f"{where}.platforms[{i}]")
            self.check_keys(pdata, {"os", "architecture", "variant", "digest", "scan"},
                            f"{where}.platforms[{i}]")
            platforms.append(PlatformSpec(
                str(pdata.get("os", "linux")), str(pdata.get("architecture", "amd64")),
                None if pdata.get("variant") is None else str(pdata["variant"]),
                str(pdata.get("digest") or synthetic_digest(digest, i)),
                self.scan(pdata["scan"], f"{where}.platforms[{i}].scan") if "scan" in pdata
                else scan))
        default_mt = DOCKER_MANIFEST_LIST if platforms else DOCKER_MANIFEST
        return ArtifactSpec(
            digest=digest, tags=tags,
            push_time=parse_time(data["push_time"], f"{where}.push_time", self.source)
            if "push_time" in data else _EPOCH_2024 + index,
            size=self.count(data.get("size", 2_000_000 + index), f"{where}.size"),
            manifest_media_type=str(data.get("manifest_media_type", default_mt)),
            media_type=str(data.get("media_type", DOCKER_CONFIG)),
            extra_attrs=self.mapping(data["extra_attrs"], f"{where}.extra_attrs")
            if "extra_attrs" in data else None,
            platforms=tuple(platforms), scan=scan)
