"""Harbor 1.x API (NOTES §8(d), §9), served when the fleet says ``harbor_version: 1.x``
or ``SimOptions(api="v1")``: the API python-harborclient and the 2017 seed talked to.

Reads, and the writes the seed's scheme needed: ``POST /login`` (and ``/c/login``: form
``principal``, ``password``; answers with the ``beegosessionID`` cookie that later calls may
send instead of basic auth, NOTES §10), a tag's manifest, ``POST …/tags/{tag}/scan``, and the
scan-all: ``POST /api/repositories/scanAll`` and ``scan_all_policy`` in ``/api/configurations``
up to 1.7 (NOTES §9.4), ``/api/system/scanAll/schedule`` from 1.8 (harbor-v1.10-swagger.yaml).

Differences from v2 that matter to a client: base path ``/api``; repository names go raw in
the path (``/api/repositories/library/team/app/tags``); errors are plain text; paging
defaults to 500 and silently clamps to 500; ``Link`` entries are joined by ``", "``; a tag's
``scan_overview`` uses integer severities (1 none .. 5 high, critical counted as 5) and
``components`` counts *packages* under their worst finding.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from careen.sim.harbor.fleet import MIME_V10
from careen.sim.harbor.state import (
    Artifact,
    Identity,
    Project,
    SimError,
    SimState,
    iso_time,
    native_report_summary,
)
from careen.sim.harbor.wire import Call, Reply

#: Clair-era mapping (NOTES §9.2): high and critical -> 5, unknown -> 2.
V1_SEVERITY = {"None": 1, "Negligible": 1, "Unknown": 2, "Low": 3, "Medium": 4, "High": 5,
               "Critical": 5}
V1_STATUS = {"Pending": "pending", "Running": "running", "Success": "finished",
             "Error": "error", "Stopped": "stopped"}
V1_MAX_PAGE = 500
#: The session cookie of Harbor 1.x (beego); later releases also answer to ``sid``.
SESSION_COOKIES = ("beegosessionID", "sid")
_CRON_FIELD = re.compile(r"^[0-9*/,\-?A-Za-z]+$")
#: ``GET /api/configurations`` besides ``scan_all_policy``: ``{value, editable}`` items.
_CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "auth_mode": {"value": "db_auth", "editable": False},
    "project_creation_restriction": {"value": "everyone", "editable": True},
    "self_registration": {"value": False, "editable": True},
    "token_expiration": {"value": 30, "editable": True},
    "verify_remote_cert": {"value": True, "editable": True},
}


class Host(Protocol):
    """What the v1 API needs of the app serving it (``app.HarborApp``)."""

    state: SimState

    async def _refresh(self) -> None: ...


class V1Api:
    def __init__(self, app: Host) -> None:
        self.app = app
        self.state = app.state
        self.sessions: dict[str, Identity] = {}

    def text(self, status: int, message: str) -> Reply:
        return Reply(status, (message + "\n").encode(),
                     [(b"content-type", b"text/plain; charset=utf-8")])

    async def handle(self, call: Call, body: bytes) -> Reply:
        path = unquote(call.raw_path)
        call.query_items = parse_qsl(call.raw_query, keep_blank_values=True)
        call.query = dict(call.query_items)
        if not call.identity.authenticated:
            call.identity = self._session(call)
        try:
            if path.rstrip("/") in ("/login", "/c/login"):
                call.template = "/login"
                if call.method != "POST":
                    return self.text(405, "Method Not Allowed")
                return self.login(body)
            if not path.startswith("/api/"):
                return self.text(404, "404 page not found")
            rest = path[len("/api/"):].strip("/")
            if call.method not in ("GET", "HEAD", "POST", "PUT"):
                return self.text(405, "Method Not Allowed")
            if rest == "systeminfo":
                call.template = "/systeminfo"
                return self.systeminfo(call)
            if rest == "users/current":
                call.template = "/users/current"
                return self.current_user(call)
            if rest == "projects":
                call.template = "/projects"
                await self.app._refresh()
                return self.projects(call)
            if rest == "repositories":
                call.template = "/repositories"
                await self.app._refresh()
                return self.repositories(call)
            if rest == "repositories/scanAll" and not self.state.version_at_least(1, 8):
                call.template = "/repositories/scanAll"
                await self.app._refresh()
                return self.scan_all(call)
            if rest == "configurations":
                call.template = "/configurations"
                return self.configurations(call, body)
            if rest == "system/scanAll/schedule" and self.state.version_at_least(1, 8):
                call.template = "/system/scanAll/schedule"
                return self.schedule(call, body)
            if rest.startswith("repositories/") and "/tags" in rest:
                await self.app._refresh()
                return self.tag_routes(call, rest[len("repositories/"):])
        except SimError as err:
            return self.text(err.status, err.message)
        return self.text(404, "404 page not found")

    # ---- sessions (NOTES §10) -------------------------------------------------------------------

    def _session(self, call: Call) -> Identity:
        for part in call.cookies.split(";"):
            name, _, value = part.strip().partition("=")
            if name in SESSION_COOKIES and value in self.sessions:
                return self.sessions[value]
        return call.identity

    def login(self, body: bytes) -> Reply:
        """``POST /login`` with form fields ``principal`` and ``password``: 200 and a
        ``beegosessionID`` cookie, or 401."""
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        who = self.state.authenticate(form.get("principal", ""), form.get("password", ""))
        if not who.authenticated:
            return self.text(401, "Unauthorized")
        token = secrets.token_hex(16)
        self.sessions[token] = who
        return Reply(200, b"", [(b"set-cookie",
                                 f"beegosessionID={token}; Path=/; HttpOnly".encode())])

    def _require_admin(self, call: Call) -> None:
        if call.identity.admin:
            return
        if not call.identity.authenticated:
            raise SimError(401, "UNAUTHORIZED", "Unauthorized")
        raise SimError(403, "FORBIDDEN", "Forbidden")

    def _read(self, call: Call, project_name: str) -> Any:
        project = self.state.projects.get(project_name)
        if project is None:
            raise SimError(404, "NOT_FOUND", f"project {project_name} not found")
        if not self.state.allowed(call.identity, project, "read"):
            if not call.identity.authenticated:
                raise SimError(401, "UNAUTHORIZED", "Unauthorized")
            raise SimError(403, "FORBIDDEN", "Forbidden")
        return project

    def paged(self, call: Call, items: list[Any]) -> tuple[list[Any], list[tuple[bytes, bytes]]]:
        try:
            page = max(1, int(call.query.get("page", "1")))
            size = int(call.query.get("page_size", str(V1_MAX_PAGE)))
        except ValueError as exc:
            raise SimError(400, "BAD_REQUEST", f"invalid paging parameter: {exc}") from exc
        size = V1_MAX_PAGE if size <= 0 or size > V1_MAX_PAGE else size
        total = len(items)
        headers = [(b"x-total-count", str(total).encode())]
        links = []
        base = {k: v for k, v in call.query_items if k not in ("page", "page_size")}

        def url(p: int) -> str:
            query = "&".join(f"{k}={v}" for k, v in sorted({**base, "page": str(p),
                                                             "page_size": str(size)}.items()))
            return f"{call.raw_path}?{query}"

        if page > 1 and (page - 1) * size < total:
            links.append(f'<{url(page - 1)}>; rel="prev"')
        if page * size < total:
            links.append(f'<{url(page + 1)}>; rel="next"')
        if links:
            headers.append((b"link", ", ".join(links).encode()))
        return items[(page - 1) * size: page * size], headers

    def systeminfo(self, call: Call) -> Reply:
        info: dict[str, Any] = {"with_notary": False, "with_clair": self.state.scanner is not None,
                                "with_admiral": False, "auth_mode": "db_auth",
                                "self_registration": False, "has_ca_root": False,
                                "harbor_version": f"v{self.state.harbor_version}-simulated"}
        return Reply.json(info)

    def current_user(self, call: Call) -> Reply:
        """``GET /api/users/current``: 401 for an anonymous caller (bad credentials fall
        through to anonymous, NOTES §2), else the caller's profile (v1 spec ``User``)."""
        if not call.identity.authenticated:
            return self.text(401, "UnAuthorize")
        return Reply.json({"user_id": 1 if call.identity.admin else 2,
                           "username": call.identity.name, "email": "", "realname": "",
                           "comment": "", "deleted": False,
                           "has_admin_role": call.identity.admin})

    def projects(self, call: Call) -> Reply:
        projects = list(self.state.visible_projects(call.identity))
        if call.query.get("name"):
            projects = [p for p in projects if call.query["name"] in p.name]
        chunk, headers = self.paged(call, projects)
        return Reply.json([{
            "project_id": p.id, "owner_id": 1, "name": p.name,
            "creation_time": iso_time(p.creation_time), "update_time": iso_time(p.creation_time),
            "deleted": False, "owner_name": "", "togglable": call.identity.admin,
            "current_user_role_id": 1 if call.identity.admin else 0,
            "repo_count": len(p.repos),
            "metadata": {"public": "true" if p.public else "false"},
        } for p in chunk], headers=headers)

    def repositories(self, call: Call) -> Reply:
        raw = call.query.get("project_id")
        if not raw or not raw.isdigit():
            raise SimError(400, "BAD_REQUEST", "invalid project_id " + (raw or ""))
        project = self.state.projects_by_id.get(int(raw))
        if project is None:
            raise SimError(404, "NOT_FOUND", f"project {raw} not found")
        self._read(call, project.name)
        repos = sorted(project.repos.values(), key=lambda r: r.name)
        chunk, headers = self.paged(call, repos)
        return Reply.json([{
            "id": r.id, "name": r.name, "project_id": project.id, "description": r.description,
            "pull_count": r.pull_count, "star_count": 0,
            "tags_count": sum(len(a.tags) for a in r.artifacts), "labels": [],
            "creation_time": iso_time(r.creation_time), "update_time": iso_time(r.update_time),
        } for r in chunk], headers=headers)

    def tag_routes(self, call: Call, rest: str) -> Reply:
        # beego wildcard route /api/repositories/*/tags/:tag (NOTES §9.1): the repository is
        # everything before the last "/tags".
        repo_name, _, after = rest.rpartition("/tags")
        parts = [p for p in after.split("/") if p]
        project = self._read(call, repo_name.split("/", 1)[0])
        repo = self.state.repos.get(repo_name)
        if repo is None or repo.project is not project:
            raise SimError(404, "NOT_FOUND", f"repository {repo_name} not found")
        if not parts:
            call.template = "/repositories/{repo_name}/tags"
            tags = sorted((t for a in repo.artifacts for t in a.tags), key=lambda t: t.name)
            return Reply.json([self.tag_json(t.artifact, t.name) for t in tags])
        tag = repo.by_tag.get(parts[0])
        if tag is None:
            raise SimError(404, "NOT_FOUND", f"tag {parts[0]} not found")
        if len(parts) == 1 and call.method in ("GET", "HEAD"):
            call.template = "/repositories/{repo_name}/tags/{tag}"
            return Reply.json(self.tag_json(tag.artifact, tag.name))
        if parts[1:] == ["vulnerability", "details"] and call.method == "GET":
            call.template = "/repositories/{repo_name}/tags/{tag}/vulnerability/details"
            return Reply.json(self.details(tag.artifact))
        if parts[1:] == ["manifest"] and call.method in ("GET", "HEAD"):
            call.template = "/repositories/{repo_name}/tags/{tag}/manifest"
            return Reply.json(self.manifest(tag.artifact))
        if parts[1:] == ["scan"] and call.method == "POST":
            call.template = "/repositories/{repo_name}/tags/{tag}/scan"
            if self.state.scanner is None:
                raise SimError(503, "UNAVAILABLE", "Clair is not enabled")
            if not (call.identity.admin or self.state.allowed(call.identity, project, "scan")):
                if not call.identity.authenticated:
                    raise SimError(401, "UNAUTHORIZED", "Unauthorized")
                raise SimError(403, "FORBIDDEN", "Forbidden")
            try:
                self.state.request_scan(tag.artifact)
            except SimError as err:
                if err.status != 409:
                    raise
                # 1.x queues another job rather than refusing; the one running stands.
            # 1.10 answers 202 (NOTES §9.3); before it, 200 (§9.1).
            return Reply(202 if self.state.version_at_least(1, 10) else 200)
        raise SimError(404, "NOT_FOUND", "404 page not found")

    def details(self, artifact: Artifact) -> list[dict[str, Any]]:
        """NOTES §9.1: ``[{id, severity int, package, version, description, link,
        fixedVersion}]``; empty when never scanned."""
        from careen.sim.harbor.scanner import vulnerability_items

        record = self.state.current_scan(artifact)
        if record is None or record.result is None or self.state.scanner is None:
            return []
        return [{"id": item["id"], "severity": V1_SEVERITY.get(item["severity"], 2),
                 "package": item["package"], "version": item["version"],
                 "description": item["description"],
                 "link": (item["links"] or [""])[0], "fixedVersion": item["fix_version"]}
                for item in vulnerability_items(record.result, artifact.digest)]

    def manifest(self, artifact: Artifact) -> dict[str, Any]:
        """``GET …/tags/{tag}/manifest``: ``{manifest, config}``, the manifest's layers
        (three, made up from the digest) adding up to the tag's size."""
        seed = hashlib.sha256(artifact.digest.encode()).hexdigest()
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "created": iso_time(artifact.push_time - 60),
                             "config": {"Cmd": ["/bin/sh"]}})
        shares = (int(seed[:4], 16) % 50 + 25, int(seed[4:8], 16) % 30 + 10)
        first = artifact.size * shares[0] // 100
        second = artifact.size * shares[1] // 100
        sizes = (first, second, max(0, artifact.size - first - second))
        layers = [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                   "size": size,
                   "digest": "sha256:" + hashlib.sha256(f"{seed}/{i}".encode()).hexdigest()}
                  for i, size in enumerate(sizes)]
        return {"manifest": {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(config),
                       "digest": "sha256:" + hashlib.sha256(config.encode()).hexdigest()},
            "layers": layers}, "config": config}

    # ---- scan-all (NOTES §9.1, §9.4) -----------------------------------------------------------

    def scan_all(self, call: Call) -> Reply:
        """``POST /api/repositories/scanAll[?project_id=N]`` (up to 1.7): 202, system admin."""
        if call.method != "POST":
            return self.text(405, "Method Not Allowed")
        self._require_admin(call)
        if self.state.scanner is None:
            raise SimError(503, "UNAVAILABLE", "Clair is not enabled")
        raw = call.query.get("project_id")
        if raw is not None and not raw.isdigit():
            raise SimError(400, "BAD_REQUEST", f"invalid project_id {raw}")
        project = self.state.projects_by_id.get(int(raw)) if raw is not None else None
        if raw is not None and project is None:
            raise SimError(404, "NOT_FOUND", f"project {raw} not found")
        self._scan_everything(project)
        return Reply(202)

    def _scan_everything(self, project: Project | None) -> None:
        with self.state.lock:
            if project is None:
                self.state.start_scan_all("Manual")
                return
            for repo in project.repos.values():
                for artifact in repo.artifacts:
                    if artifact.tags:
                        try:
                            self.state.request_scan(artifact)
                        except SimError:
                            continue

    def configurations(self, call: Call, body: bytes) -> Reply:
        """``GET``/``PUT /api/configurations`` (system admin). Up to 1.7 ``scan_all_policy``
        is the daily scan-all: ``{"type": "none"}`` or ``{"type": "daily", "parameter":
        {"daily_time": N}}``, N seconds after 00:00 UTC (NOTES §9.4). Every item is read
        back as ``{"value", "editable"}``."""
        self._require_admin(call)
        keeps_policy = not self.state.version_at_least(1, 8)
        if call.method in ("GET", "HEAD"):
            out: dict[str, Any] = {k: dict(v) for k, v in _CONFIGURATIONS.items()}
            if keeps_policy:
                out["scan_all_policy"] = {"value": self.state.scan_all_policy,
                                          "editable": True}
            return Reply.json(out)
        if call.method != "PUT":
            return self.text(405, "Method Not Allowed")
        try:
            data = json.loads(body or b"null")
        except ValueError as exc:
            raise SimError(400, "BAD_REQUEST", f"invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SimError(400, "BAD_REQUEST", "the configurations must be a JSON object")
        known = set(_CONFIGURATIONS) | ({"scan_all_policy"} if keeps_policy else set())
        unknown = sorted(set(data) - known)
        if unknown:
            raise SimError(400, "BAD_REQUEST", f"unknown configuration {unknown[0]}")
        if "scan_all_policy" in data:
            self.state.scan_all_policy = _check_policy(data["scan_all_policy"])
        return Reply(200)

    def schedule(self, call: Call, body: bytes) -> Reply:
        """``/api/system/scanAll/schedule`` (1.8 to 1.10, harbor-v1.10-swagger.yaml):
        ``{"schedule": {"type", "cron"}}``; POST ``Manual`` scans everything now (409 while a
        manual scan-all runs), POST of a periodic type creates (409 when one exists), PUT
        replaces (``None`` removes); GET gives ``{}`` when there is none."""
        self._require_admin(call)
        state = self.state
        if call.method in ("GET", "HEAD"):
            current = state.schedule
            return Reply.json({"schedule": dict(current["schedule"])} if current else {})
        if call.method not in ("PUT", "POST"):
            return self.text(405, "Method Not Allowed")
        try:
            data = json.loads(body or b"null")
        except ValueError as exc:
            raise SimError(400, "BAD_REQUEST", f"invalid JSON: {exc}") from exc
        obj = data.get("schedule") if isinstance(data, dict) else None
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind not in ("Hourly", "Daily", "Weekly", "Custom", "Manual", "None"):
            raise SimError(400, "BAD_REQUEST", f"invalid schedule type: {kind}")
        assert isinstance(obj, dict)  # noqa: S101 - kind was read from it
        with state.lock:
            if kind == "Manual":
                if call.method == "PUT":
                    raise SimError(400, "BAD_REQUEST", "invalid schedule type: Manual")
                if state.scanner is None:
                    raise SimError(503, "UNAVAILABLE", "Clair is not enabled")
                running = state.running_manual_execution()
                if running is not None:
                    raise SimError(409, "CONFLICT", "a scan all job is in progress")
                state.start_scan_all("Manual")
                return Reply(200)
            if kind == "None":
                state.schedule = None
                return Reply(200)
            if call.method == "POST" and state.schedule is not None:
                raise SimError(409, "CONFLICT", "a schedule for scan all already exists")
            cron = _check_cron(obj.get("cron"))
            now = iso_time(state.clock.now())
            state.schedule = {"id": 1, "status": "Scheduled", "creation_time": now,
                              "update_time": now, "schedule": {"type": kind, "cron": cron}}
            return Reply(200)

    def tag_json(self, artifact: Artifact, name: str) -> dict[str, Any]:
        attrs = artifact.extra_attrs or {}
        out: dict[str, Any] = {
            "digest": artifact.digest, "name": name, "size": artifact.size,
            "architecture": attrs.get("architecture", "amd64"), "os": attrs.get("os", "linux"),
            "docker_version": "17.06.2-ce", "author": attrs.get("author", ""),
            "created": iso_time(artifact.push_time - 60), "config": {"labels": None},
            "signature": None,
        }
        overview = (self.overview_of_1_10(artifact) if self.state.version_at_least(1, 10)
                    else self.overview(artifact))
        if overview is not None:
            out["scan_overview"] = overview
        out["labels"] = []
        return out

    def overview_of_1_10(self, artifact: Artifact) -> dict[str, Any] | None:
        """NOTES §9.3: 1.10's overview is keyed by MIME type, a ``NativeReportSummary``
        (string severity, vulnerability counts, no scanner or complete_percent)."""
        record = self.state.current_scan(artifact)
        if record is None or self.state.scanner is None or (
                record.status == "Pending" and not artifact.scanned_once):
            return None
        return {MIME_V10: native_report_summary(record)}

    def overview(self, artifact: Artifact) -> dict[str, Any] | None:
        """NOTES §9.2: ``image_digest``, lower-case status, integer severity, ``components``
        counting packages under their worst finding, in random order; absent when never
        scanned or no scanner."""
        record = self.state.current_scan(artifact)
        if record is None or self.state.scanner is None:
            return None
        finished = record.status == "Success" and record.result is not None
        out: dict[str, Any] = {"image_digest": artifact.digest,
                               "scan_status": V1_STATUS.get(record.status, "error"),
                               "job_id": abs(hash(record.report_id)) % 100_000,
                               "severity": 0}
        if finished and record.result is not None:
            per_severity: dict[int, int] = {}
            for word, count in record.result.counts:
                # Counts become package counts: the seed-era numbers meant packages.
                level = V1_SEVERITY.get(word, 2)
                per_severity[level] = per_severity.get(level, 0) + count
            vulnerable = sum(per_severity.values())
            total = record.result.packages or vulnerable + 20 + len(artifact.digest) % 50
            per_severity[1] = per_severity.get(1, 0) + max(0, total - vulnerable)
            summary = [{"severity": s, "count": c} for s, c in per_severity.items() if c]
            seed = int(hashlib.sha256(artifact.digest.encode()).hexdigest()[:8], 16)
            random.Random(seed).shuffle(summary)  # noqa: S311  # Go map order: clients must not rely on it
            out["severity"] = max(per_severity)
            out["components"] = {"total": total, "summary": summary}
            out["details_key"] = hashlib.sha256(artifact.digest.encode()).hexdigest()
        else:
            out["details_key"] = ""
        out["creation_time"] = iso_time(record.start)
        out["update_time"] = iso_time(record.end or record.start)
        return out


def _check_policy(value: object) -> dict[str, Any]:
    """A 1.x ``scan_all_policy``: ``none``, or ``daily`` with ``daily_time`` in seconds
    (0 to 86399) after 00:00 UTC."""
    if not isinstance(value, dict) or value.get("type") not in ("none", "daily"):
        raise SimError(400, "BAD_REQUEST", "invalid scan_all_policy type")
    if value["type"] == "none":
        return {"type": "none"}
    parameter = value.get("parameter")
    seconds = parameter.get("daily_time") if isinstance(parameter, dict) else None
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds < 86400:
        raise SimError(400, "BAD_REQUEST", "invalid scan_all_policy daily_time")
    return {"type": "daily", "parameter": {"daily_time": seconds}}


def _check_cron(value: object) -> str:
    """6 fields, seconds first (Harbor 1.8+ cron)."""
    fields = value.split() if isinstance(value, str) else []
    if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
        raise SimError(400, "BAD_REQUEST", f"invalid cron string for scan all: {value}")
    return " ".join(fields)
