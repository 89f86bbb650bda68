"""The simulator's HTTP app: Harbor's REST API v2.0 (and v1 read paths, see ``v1.py``).

A plain ASGI callable (Starlette's datastructures for headers and query strings): it needs
the raw path to model Harbor's double-encoded repository segment (NOTES §7) and the raw
connection to drop it for fault injection, and a hand-made router on path segments is the
fastest way to serve 10,000+ artifacts. Behaviour follows NOTES §11 point by point; each
point is cited where it is implemented.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from careen.sim.harbor.faults import Fault, FaultInjector
from careen.sim.harbor.options import SimOptions, SimStats
from careen.sim.harbor.scanner import vulnerability_items
from careen.sim.harbor.state import (
    ANONYMOUS,
    FINAL_STATUSES,
    Artifact,
    Identity,
    Project,
    SimError,
    SimState,
    iso_time,
    native_report_summary,
)
from careen.sim.harbor.v1 import V1Api
from careen.sim.harbor.wire import (
    TRUE,
    Call,
    Receive,
    Reply,
    Scope,
    Send,
    error_reply,
    paged,
    parse_query,
)

API_PREFIX = "/api/v2.0"
ICON = "sha256:0048162a053eef4d4ce3fe7518615bef084403614f8bca43b40ae2e762e11e06"
_CRON_FIELD = re.compile(r"^[0-9*/,\-?A-Za-z]+$")

#: Known query parameters per operation template: name -> type ("int", "bool", "str").
_LIST = {"q": "str", "sort": "str", "page": "int", "page_size": "int"}
_ART_FLAGS = dict.fromkeys((
    "with_tag", "with_label", "with_scan_overview", "with_sbom_overview", "with_immutable_status",
    "with_accessory", "with_inherited_accessory"), "bool")


class HarborApp:
    """The ASGI app. ``state`` is the live model, ``stats`` the counters."""

    def __init__(self, state: SimState, options: SimOptions | None = None,
                 stats: SimStats | None = None, registry: Any | None = None) -> None:
        self.state = state
        self.options = options or SimOptions()
        self.stats = stats or SimStats()
        self.faults = FaultInjector(self.options.faults) if self.options.faults else None
        self.registry = registry  # careen.sim.harbor.registry.RegistryMirror or None
        #: Set when the server stops: a request stalled by a slow fault is dropped then,
        #: rather than kept sleeping (stopping waits for every open request).
        self.closing = asyncio.Event()
        self.api = self.options.api or state.fleet.api

        self.v1 = V1Api(self) if self.api == "v1" else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        call = Call(scope, self.state)
        request_id = call.headers.get("x-request-id") or str(uuid.uuid4())
        path = call.raw_path
        if self.options.latency > 0:
            await asyncio.sleep(self.options.latency)
        if self.faults is not None and self.faults.eligible(path):
            fault = self.faults.draw()
            if fault is not Fault.NONE:
                self.stats.fault(fault.value)
            if fault is Fault.DROP:
                await _drop(send)
                return
            if fault is Fault.SLOW and await self._stalled_until_closing(
                    self.faults.plan.slow_seconds):
                await _drop(send)
                return
            if fault is Fault.ERROR:
                await self._send(send, call, error_reply(500, "UNKNOWN", "injected"), request_id)
                return
            if fault is Fault.RATE_LIMIT:
                reply = error_reply(429, "TOO_MANY_REQUEST", "too many requests")
                reply.headers.append((b"retry-after", str(self.faults.plan.retry_after).encode()))
                await self._send(send, call, reply, request_id)
                return
        body = await _read_body(receive)
        try:
            reply = await self.handle(call, body)
        except SimError as err:
            reply = error_reply(err.status, err.code, err.message)
        except Exception:  # a simulator bug: masked like Harbor's 5xx (NOTES §4)
            reply = error_reply(500, "UNKNOWN", "internal server error")
        await self._send(send, call, reply, request_id)

    async def _stalled_until_closing(self, seconds: float) -> bool:
        """Wait ``seconds`` like a slow Harbor; True if the server began to stop meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)
        return self.closing.is_set()

    async def _send(self, send: Send, call: Call, reply: Reply, request_id: str) -> None:
        headers = reply.headers
        headers.append((b"x-request-id", request_id.encode("latin-1", "replace")))
        headers.append((b"content-length", str(len(reply.body)).encode()))
        if self.options.session_cookie and "sid=" not in call.cookies:
            headers.append((b"set-cookie",
                            f"sid={secrets.token_hex(16)}; Path=/; HttpOnly".encode()))
        template = reply.template or call.template or "(unrouted)"
        self.stats.record(f"{call.method} {template}", reply.status)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    # ---- dispatch -------------------------------------------------------------------------------

    async def handle(self, call: Call, body: bytes) -> Reply:
        path = call.raw_path
        if self.v1 is not None:  # Harbor 1.x had no CSRF check (NOTES §10)
            call.identity = self._identity(call)
            return await self.v1.handle(call, body)
        # CSRF (NOTES §3): unsafe method + session cookie and no valid token -> 403.
        if call.method in ("POST", "PUT", "PATCH", "DELETE") and _has_sid(call.cookies):
            raise SimError(403, "FORBIDDEN", "CSRF token invalid")
        call.identity = self._identity(call)
        if not path.startswith(API_PREFIX + "/"):
            raise _no_route(path)
        # nginx decodes the path once before Harbor core sees it (NOTES §7): a single-encoded
        # slash becomes a real one and the route no longer matches.
        segments = unquote(path[len(API_PREFIX) + 1:]).split("/")
        return await self.route(call, segments, body)

    def _identity(self, call: Call) -> Identity:
        header = call.headers.get("authorization", "")
        if header[:6].lower() != "basic ":
            return ANONYMOUS
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ANONYMOUS
        return self.state.authenticate(user, password)

    async def route(self, call: Call, seg: list[str], body: bytes) -> Reply:
        n = len(seg)
        method = call.method
        state = self.state
        head = seg[0]
        if n == 1 and head == "ping":
            return self._only(call, "GET", "/ping", lambda: Reply(
                200, b"Pong", [(b"content-type", b"text/plain")]))
        if n == 1 and head == "health" and state.version_at_least(2, 3):
            return self._only(call, "GET", "/health", self._health)
        if n == 1 and head == "systeminfo":
            return self._only(call, "GET", "/systeminfo", lambda: self._systeminfo(call))
        if head == "projects":
            if n == 1:
                parse_query(call, {**_LIST, "name": "str", "public": "bool", "owner": "str",
                                   "with_detail": "bool"})
                await self._refresh()
                return self._only(call, "GET", "/projects", lambda: self._projects(call))
            if n == 3 and seg[2] == "repositories":
                parse_query(call, _LIST)
                await self._refresh()
                return self._only(call, "GET", "/projects/{project_name}/repositories",
                                  lambda: self._repositories(call, seg[1]))
            if n == 3 and seg[2] == "artifacts" and state.version_at_least(2, 12):
                parse_query(call, {**_LIST, **_ART_FLAGS, "latest_in_repository": "bool"})
                await self._refresh()
                await self._overview_latency(call)
                return self._only(call, "GET", "/projects/{project_name_or_id}/artifacts",
                                  lambda: self._project_artifacts(call, seg[1]))
            if n >= 5 and seg[2] == "repositories" and seg[4] == "artifacts":
                return await self._artifact_routes(call, seg, body)
        if head == "repositories" and n == 1 and state.version_at_least(2, 3):
            parse_query(call, _LIST)
            await self._refresh()
            return self._only(call, "GET", "/repositories", lambda: self._all_repositories(call))
        if seg[:2] == ["system", "scanAll"] and n == 3:
            if seg[2] == "schedule":
                template = call.template = "/system/scanAll/schedule"
                if method == "GET":
                    return self._tagged(template, self._get_schedule(call))
                if method in ("PUT", "POST"):
                    return self._tagged(template, self._set_schedule(call, body, method))
                raise _not_allowed(method, ["GET", "PUT", "POST"])
            if seg[2] == "stop":
                return self._only(call, "POST", "/system/scanAll/stop",
                                  lambda: self._stop_scan_all(call))
        if head == "scans" and n == 3 and seg[2] == "metrics" and seg[1] in ("all", "schedule"):
            return self._only(call, "GET", f"/scans/{seg[1]}/metrics",
                              lambda: self._metrics(call, seg[1]))
        raise _no_route(call.raw_path)

    async def _artifact_routes(self, call: Call, seg: list[str], body: bytes) -> Reply:
        n = len(seg)
        project_name = seg[1]
        # Harbor core unescapes the repository segment once more (NOTES §7).
        repository = f"{project_name}/{unquote(seg[3])}"
        base = "/projects/{project_name}/repositories/{repository_name}/artifacts"
        if n == 5:
            parse_query(call, {**_LIST, **_ART_FLAGS})
            await self._refresh()
            await self._overview_latency(call)
            return self._only(call, "GET", base,
                              lambda: self._artifacts(call, project_name, repository))
        reference = seg[5]
        if n == 6:
            parse_query(call, {"page": "int", "page_size": "int", "with_signature": "bool",
                               **_ART_FLAGS})
            await self._refresh()
            return self._only(call, "GET", base + "/{reference}",
                              lambda: self._artifact(call, project_name, repository, reference))
        if n == 7 and seg[6] == "tags":
            parse_query(call, {**_LIST, "with_immutable_status": "bool"})
            return self._only(call, "GET", base + "/{reference}/tags",
                              lambda: self._tags(call, project_name, repository, reference))
        if n == 7 and seg[6] == "scan":
            parse_query(call, {})
            # Pushes go through Harbor, so a just-pushed digest can be scanned at once.
            await self._refresh()
            return self._only(call, "POST", base + "/{reference}/scan",
                              lambda: self._scan(call, project_name, repository, reference, body))
        if n == 8 and seg[6:] == ["additions", "vulnerabilities"]:
            parse_query(call, {})
            await self._refresh()
            return self._only(call, "GET", base + "/{reference}/additions/vulnerabilities",
                              lambda: self._vulnerabilities(call, project_name, repository,
                                                            reference))
        raise _no_route(call.raw_path)

    def _only(self, call: Call, method: str, template: str, handler: Callable[[], Reply]) -> Reply:
        call.template = template
        if call.method != method and not (method == "GET" and call.method == "HEAD"):
            raise _not_allowed(call.method, [method])
        with self.state.lock:
            reply = handler()
        reply.template = template
        return reply

    @staticmethod
    def _tagged(template: str, reply: Reply) -> Reply:
        reply.template = template
        return reply

    async def _refresh(self) -> None:
        if self.registry is not None:
            await self.registry.refresh(self.state)

    async def _overview_latency(self, call: Call) -> None:
        if self.options.overview_latency > 0 and call.flag("with_scan_overview", False):
            await asyncio.sleep(self.options.overview_latency)

    # ---- access (NOTES §2: permission before existence) -----------------------------------------

    def _require(self, call: Call, project_name: str, action: str) -> Project | None:
        project = self.state.projects.get(project_name)
        if project is None and project_name.isdigit():
            project = self.state.projects_by_id.get(int(project_name))
        if not self.state.allowed(call.identity, project, action):
            if not call.identity.authenticated:
                raise SimError(401, "UNAUTHORIZED", "unauthorized")
            raise SimError(403, "FORBIDDEN", "forbidden")
        return project

    def _require_system(self, call: Call) -> None:
        if not self.state.system_allowed(call.identity):
            if not call.identity.authenticated:
                raise SimError(401, "UNAUTHORIZED", "unauthorized")
            raise SimError(403, "FORBIDDEN", "forbidden")
        if self.state.scanner is None:
            raise SimError(412, "PRECONDITION",
                           "no scanner is configured, it's not possible to scan")

    # ---- system ---------------------------------------------------------------------------------

    def _health(self) -> Reply:
        names = ["core", "portal", "jobservice", "registry", "registryctl", "database", "redis"]
        if self.state.scanner is not None:
            names.append("trivy")
        return Reply.json({"status": "healthy",
                           "components": [{"name": n, "status": "healthy"} for n in names]})

    def _systeminfo(self, call: Call) -> Reply:
        info: dict[str, Any] = {"auth_mode": "db_auth", "primary_auth_mode": False,
                                "self_registration": False}
        if call.identity.authenticated:  # NOTES §6.8
            host = call.headers.get("host", "127.0.0.1")
            info.update({
                "harbor_version": f"v{self.state.harbor_version}-simulated",
                "registry_url": host, "external_url": f"http://{host}",
                "project_creation_restriction": "everyone", "has_ca_root": False,
                "read_only": False, "notification_enable": True,
                "current_time": iso_time(self.state.clock.now()),
                "registry_storage_provider_name": "filesystem",
            })
        return Reply.json(info)

    # ---- projects and repositories --------------------------------------------------------------

    def _projects(self, call: Call) -> Reply:
        projects = list(self.state.visible_projects(call.identity))
        name = call.query.get("name")
        if name:
            projects = [p for p in projects if p.name == name]
        public = call.query.get("public")
        if public is not None:
            wanted = public in TRUE
            projects = [p for p in projects if p.public == wanted]
        chunk, headers = paged(call, projects)
        return Reply.json([self._project_json(call, p) for p in chunk], headers=headers)

    def _project_json(self, call: Call, project: Project) -> dict[str, Any]:
        created = iso_time(project.creation_time)
        return {
            "project_id": project.id, "owner_id": 1, "name": project.name,
            "creation_time": created, "update_time": created, "owner_name": "admin",
            "current_user_role_ids": None, "repo_count": len(project.repos),
            "metadata": {"public": "true" if project.public else "false"},
            "cve_allowlist": {"id": project.id, "project_id": project.id, "items": None,
                              "creation_time": created, "update_time": created},
        }

    def _repositories(self, call: Call, project_name: str) -> Reply:
        project = self._require(call, project_name, "read")
        if project is None:
            raise SimError(404, "NOT_FOUND", f"project {project_name} not found")
        repos = sorted(project.repos.values(), key=lambda r: (r.creation_time, r.id),
                       reverse=True)
        chunk, headers = paged(call, repos)
        return Reply.json([_repository_json(r) for r in chunk], headers=headers)

    def _all_repositories(self, call: Call) -> Reply:
        who = call.identity
        repos = [r for r in self.state.ordered_repositories()
                 if self.state.allowed(who, r.project, "read")]
        chunk, headers = paged(call, repos)
        return Reply.json([_repository_json(r) for r in chunk], headers=headers)

    # ---- artifacts ------------------------------------------------------------------------------

    def _artifacts(self, call: Call, project_name: str, repository: str) -> Reply:
        project = self._require(call, project_name, "read")
        repo = self.state.repos.get(repository) if project is not None else None
        # NOTES §6.3: an unknown repository is 200 [] (and an unknown project, for admins).
        items = _filter_tags(call, repo.ordered() if repo is not None else [])
        chunk, headers = paged(call, items)
        return Reply.json([self._artifact_json(call, a) for a in chunk], headers=headers)

    def _project_artifacts(self, call: Call, project_name: str) -> Reply:
        by_name = call.headers.get("x-is-resource-name", "false") in TRUE
        project = self.state.projects.get(project_name)
        if project is None and not by_name and project_name.isdigit():
            project = self.state.projects_by_id.get(int(project_name))
        if not self.state.allowed(call.identity, project, "read"):
            if not call.identity.authenticated:
                raise SimError(401, "UNAUTHORIZED", "unauthorized")
            raise SimError(403, "FORBIDDEN", "forbidden")
        if project is None:
            raise SimError(404, "NOT_FOUND", f"project {project_name} not found")
        items = project.ordered_artifacts()
        if call.flag("latest_in_repository", False):
            seen: set[int] = set()
            latest = []
            for artifact in items:
                if artifact.repo.id not in seen:
                    seen.add(artifact.repo.id)
                    latest.append(artifact)
            items = latest
        chunk, headers = paged(call, _filter_tags(call, items))
        return Reply.json([self._artifact_json(call, a) for a in chunk], headers=headers)

    def _find(self, call: Call, project_name: str, repository: str, reference: str,
              action: str) -> Artifact:
        project = self._require(call, project_name, action)
        artifact = self.state.find_artifact(repository, reference) if project else None
        if artifact is None:
            raise SimError(404, "NOT_FOUND", f"artifact {repository}:{reference} not found")
        return artifact

    def _artifact(self, call: Call, project_name: str, repository: str,
                  reference: str) -> Reply:
        artifact = self._find(call, project_name, repository, reference, "read")
        return Reply.json(self._artifact_json(call, artifact))

    def _tags(self, call: Call, project_name: str, repository: str, reference: str) -> Reply:
        artifact = self._find(call, project_name, repository, reference, "read")
        immutable = call.flag("with_immutable_status", False)
        chunk, headers = paged(call, artifact.tags)
        return Reply.json([_tag_json(t, artifact, immutable) for t in chunk], headers=headers)

    def _scan(self, call: Call, project_name: str, repository: str, reference: str,
              body: bytes) -> Reply:
        self._check_scan_type(body)
        artifact = self._find(call, project_name, repository, reference, "scan")
        self.state.request_scan(artifact)
        return Reply(202)

    @staticmethod
    def _check_scan_type(body: bytes) -> None:
        if not body.strip():
            return
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise SimError(400, "BAD_REQUEST", f"parsing scanType body from \"\" failed: "
                                               f"{exc}") from exc
        if not isinstance(data, dict) or data.get("scan_type", "vulnerability") not in (
                "vulnerability", "sbom"):
            raise SimError(422, "UNPROCESSABLE_ENTITY", "validation failure list:\n"
                           "scanType.scan_type in body should be one of [vulnerability sbom]")

    def _vulnerabilities(self, call: Call, project_name: str, repository: str,
                         reference: str) -> Reply:
        artifact = self._find(call, project_name, repository, reference, "addition")
        if self.state.scanner is None:
            raise SimError(404, "NOT_FOUND", "no scanner registration configured for project: "
                                             f"{artifact.repo.project.id}")
        record = self.state.current_scan(artifact)
        if record is None or record.result is None or record.mime not in call.accept_mimes():
            return Reply.json({})
        scanner = self.state.scanner.info
        items = vulnerability_items(record.result, artifact.digest)
        report = {"generated_at": iso_time(record.end), "artifact": {
            "repository_name": artifact.repo.name, "digest": artifact.digest,
            "mime_type": artifact.manifest_media_type},
            "scanner": {"name": scanner.name, "vendor": scanner.vendor,
                        "version": scanner.version},
            "severity": record.result.severity, "vulnerabilities": items}
        return Reply.json({record.mime: report})

    def _artifact_json(self, call: Call, artifact: Artifact) -> dict[str, Any]:
        base = artifact.cache
        if base is None:
            base = artifact.cache = self._artifact_base(artifact)
        out = dict(base)
        if call.flag("with_tag", True):
            immutable = call.flag("with_immutable_status", False)
            out["tags"] = [_tag_json(t, artifact, immutable) for t in artifact.tags] or None
        if call.flag("with_scan_overview", False):
            overview = self._overview(artifact, call.accept_mimes())
            if overview is not None:
                out["scan_overview"] = overview
        return out

    def _artifact_base(self, artifact: Artifact) -> dict[str, Any]:
        repo = artifact.repo
        href = (f"{API_PREFIX}/projects/{repo.project.name}/repositories/"
                f"{_double_encode(repo.short_name)}/artifacts/{artifact.digest}/additions/")
        links: dict[str, Any] = {}
        if not artifact.is_index:
            links["build_history"] = {"href": href + "build_history", "absolute": False}
        if self.state.scanner is not None:
            links["vulnerabilities"] = {"href": href + "vulnerabilities", "absolute": False}
        base: dict[str, Any] = {
            "id": artifact.id, "type": "IMAGE", "media_type": artifact.media_type,
            "manifest_media_type": artifact.manifest_media_type,
            "project_id": repo.project.id, "repository_id": repo.id,
            "repository_name": repo.name, "digest": artifact.digest, "size": artifact.size,
            "icon": ICON, "push_time": iso_time(artifact.push_time),
            "pull_time": iso_time(artifact.pull_time),
            "references": [{
                "parent_id": artifact.id, "child_id": child.id, "child_digest": child.digest,
                "platform": {k: v for k, v in (("architecture", p.architecture), ("os", p.os),
                                               ("variant", p.variant)) if v},
                "urls": None} for child, p in artifact.children] or None,
            "tags": None, "addition_links": links, "labels": None, "accessories": None,
        }
        if artifact.extra_attrs:
            base["extra_attrs"] = dict(artifact.extra_attrs)
        elif not artifact.is_index:  # made on demand: 100,000 stored copies would cost memory
            base["extra_attrs"] = {"architecture": "amd64", "os": "linux", "author": "",
                                   "created": iso_time(artifact.push_time - 60),
                                   "config": {"Cmd": ["/bin/sh"]}}
        return base

    def _overview(self, artifact: Artifact, accept: Sequence[str]) -> dict[str, Any] | None:
        """NOTES §6.4: keyed by MIME; absent when never scanned or queued without a report;
        non-Success reports omit summary/severity/scanner/complete_percent."""
        record = self.state.current_scan(artifact)
        if record is None or self.state.scanner is None or record.mime not in accept:
            return None
        if record.status == "Pending" and not artifact.scanned_once:
            return None
        summary = native_report_summary(record)
        if "summary" in summary:  # a success: 2.x also says which scanner, and that it is done
            scanner = self.state.scanner.info
            summary["complete_percent"] = 100
            summary["scanner"] = {"name": scanner.name, "vendor": scanner.vendor,
                                  "version": scanner.version}
        return {record.mime: summary}

    # ---- scan-all (NOTES §6.7) ------------------------------------------------------------------

    def _get_schedule(self, call: Call) -> Reply:
        parse_query(call, {})
        with self.state.lock:
            self._require_system(call)
            schedule = self.state.schedule
            if schedule is None:
                return Reply(200, b"", [(b"content-type", b"application/json")])
            return Reply.json(schedule)

    def _set_schedule(self, call: Call, body: bytes, method: str) -> Reply:
        parse_query(call, {})
        with self.state.lock:
            self._require_system(call)
            try:
                data = json.loads(body or b"null")
            except ValueError as exc:
                raise SimError(400, "BAD_REQUEST", f"parsing schedule body failed: {exc}") from exc
            obj = data.get("schedule") if isinstance(data, dict) else None
            if not isinstance(obj, dict):
                raise SimError(422, "UNPROCESSABLE_ENTITY",
                               "validation failure list:\nschedule in body is required")
            kind = obj.get("type")
            allowed = ("Hourly", "Daily", "Weekly", "Custom", "Manual", "None", "Schedule")
            if kind not in allowed:
                raise SimError(422, "UNPROCESSABLE_ENTITY", "validation failure list:\n"
                               f"schedule.schedule.type in body should be one of {list(allowed)}")
            state = self.state
            if method == "PUT":
                if kind == "Manual":
                    raise SimError(400, "BAD_REQUEST", "fail to update scan all schedule as "
                                                      "wrong schedule type: Manual")
                if kind == "None":
                    state.schedule = None
                    return Reply(200)
                cron = _check_cron(obj.get("cron"))
                self._store_schedule(kind, cron)
                return Reply(200)
            # POST
            if kind == "Manual":
                if state.running_manual_execution() is not None:
                    raise SimError(409, "CONFLICT", "a previous scan all job aleady exits, its "
                                                    "status is Running")
                execution = state.start_scan_all("Manual")
                return Reply(201, b"", [(b"location",
                                         f"{API_PREFIX}/scans/all/metrics#{execution.id}"
                                         .encode())])
            if kind == "None":
                return Reply(201, b"", [(b"location", f"{API_PREFIX}/system/scanAll/schedule"
                                         .encode())])
            if state.schedule is not None:
                raise SimError(412, "PRECONDITION", "fail to set schedule for scan all as "
                               "always had one, please delete it firstly then to re-schedule")
            cron = _check_cron(obj.get("cron"))
            self._store_schedule(kind, cron)
            return Reply(201, b"", [(b"location",
                                     f"{API_PREFIX}/system/scanAll/schedule".encode())])

    def _store_schedule(self, kind: str, cron: str) -> None:
        state = self.state
        now = iso_time(state.clock.now())
        current = state.schedule
        if current is not None and current["schedule"] == {"type": kind, "cron": cron}:
            return  # unchanged: a no-op
        state.schedule = {
            "id": current["id"] if current else state._id("schedule"), "status": "Running",
            "creation_time": current["creation_time"] if current else now, "update_time": now,
            "schedule": {"type": kind, "cron": cron},
        }

    def _stop_scan_all(self, call: Call) -> Reply:
        parse_query(call, {})
        self._require_system(call)
        self.state.stop_scan_all()
        return Reply(202)

    def _metrics(self, call: Call, which: str) -> Reply:
        parse_query(call, {})
        self._require_system(call)
        executions = self.state.executions
        if which == "schedule":
            executions = [e for e in executions if e.trigger == "Schedule"]
        return Reply.json(self.state.execution_stats(executions[-1] if executions else None))


def _check_cron(value: object) -> str:
    """6 fields, seconds first and ``0`` (NOTES §6.7)."""
    if not isinstance(value, str) or not value.strip():
        raise SimError(400, "BAD_REQUEST", f"invalid cron string for scheduled scan all: {value}")
    fields = value.split()
    if len(fields) != 6 or fields[0] != "0" or not all(_CRON_FIELD.match(f) for f in fields):
        raise SimError(400, "BAD_REQUEST", f"invalid cron string for scheduled scan all: {value}")
    return value


def _filter_tags(call: Call, items: Sequence[Artifact]) -> Sequence[Artifact]:
    """``q=tags=*`` (tagged only), ``tags=nil`` (untagged), ``tags=v``, ``tags=~v``."""
    q = call.query.get("q")
    if not q:
        return items
    for term in q.split(","):
        key, _, value = term.partition("=")
        key = key.strip()
        if key != "tags":
            if key in ("digest", "media_type"):
                items = [a for a in items if getattr(a, key, None) == value]
                continue
            raise SimError(400, "BAD_REQUEST", f"invalid query: {term}")
        if value == "*":
            items = [a for a in items if a.tags]
        elif value == "nil":
            items = [a for a in items if not a.tags]
        elif value.startswith("~"):
            items = [a for a in items if any(value[1:] in t.name for t in a.tags)]
        else:
            items = [a for a in items if any(t.name == value for t in a.tags)]
    return items


def _tag_json(tag: Any, artifact: Artifact, immutable: bool) -> dict[str, Any]:
    return {"id": tag.id, "repository_id": artifact.repo.id, "artifact_id": artifact.id,
            "name": tag.name, "push_time": iso_time(tag.push_time),
            "pull_time": iso_time(tag.pull_time), "immutable": immutable and tag.immutable}


def _repository_json(repo: Any) -> dict[str, Any]:
    out = {"id": repo.id, "project_id": repo.project.id, "name": repo.name,
           "artifact_count": len(repo.artifacts), "pull_count": repo.pull_count,
           "creation_time": iso_time(repo.creation_time),
           "update_time": iso_time(repo.update_time)}
    if repo.description:
        out["description"] = repo.description
    return out


def _double_encode(name: str) -> str:
    return name.replace("%", "%2525").replace("/", "%252F")


def _has_sid(cookies: str) -> bool:
    return any(part.strip().startswith("sid=") for part in cookies.split(";"))


def _no_route(path: str) -> SimError:
    return SimError(404, "NOT_FOUND", f"path {unquote(path)} was not found")


def _not_allowed(method: str, allowed: list[str]) -> SimError:
    return SimError(405, "METHOD_NOT_ALLOWED",
                    f"method {method} is not allowed, but [{','.join(allowed)}] are")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _drop(send: Send) -> None:
    """Close the TCP connection without a response. uvicorn's ``send`` is a bound method of
    its request cycle, which holds the transport; abort it (RST, no bytes). Fallback: start a
    response and fail, which makes uvicorn close the connection mid-response."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        await asyncio.sleep(0)  # let connection_lost mark the cycle disconnected
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"100")]})
    raise ConnectionAbortedError("simulated dropped connection")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _status_final(status: str) -> bool:
    return status in FINAL_STATUSES
