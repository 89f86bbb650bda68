"""Harbor 1.x read API (NOTES §8(d), §9), served when the fleet says ``harbor_version: 1.x``
or ``SimOptions(api="v1")``: the API python-harborclient and the 2017 seed talked to.

Differences from v2 that matter to a client: base path ``/api``; repository names go raw in
the path (``/api/repositories/library/team/app/tags``); errors are plain text; paging
defaults to 500 and silently clamps to 500; ``Link`` entries are joined by ``", "``; a tag's
``scan_overview`` uses integer severities (1 none .. 5 high, critical counted as 5) and
``components`` counts *packages* under their worst finding.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

from careen.sim.harbor.state import Artifact, SimError, iso_time

if TYPE_CHECKING:
    from careen.sim.harbor.app import Call, HarborApp, Reply

#: Clair-era mapping (NOTES §9.2): high and critical -> 5, unknown -> 2.
V1_SEVERITY = {"None": 1, "Negligible": 1, "Unknown": 2, "Low": 3, "Medium": 4, "High": 5,
               "Critical": 5}
V1_STATUS = {"Pending": "pending", "Running": "running", "Success": "finished",
             "Error": "error", "Stopped": "stopped"}
V1_MAX_PAGE = 500


class V1Api:
    def __init__(self, app: HarborApp) -> None:
        self.app = app
        self.state = app.state

    def text(self, status: int, message: str) -> Reply:
        from careen.sim.harbor.app import Reply

        return Reply(status, (message + "\n").encode(),
                     [(b"content-type", b"text/plain; charset=utf-8")])

    async def handle(self, call: Call, body: bytes) -> Reply:
        from urllib.parse import parse_qsl, unquote

        path = unquote(call.raw_path)
        call.query_items = parse_qsl(call.raw_query, keep_blank_values=True)
        call.query = dict(call.query_items)
        if not path.startswith("/api/"):
            return self.text(404, "404 page not found")
        rest = path[len("/api/"):].strip("/")
        try:
            if call.method not in ("GET", "HEAD", "POST"):
                return self.text(405, "Method Not Allowed")
            if rest == "systeminfo":
                call.template = "/systeminfo"
                return self.systeminfo(call)
            if rest == "projects":
                call.template = "/projects"
                await self.app._refresh()
                return self.projects(call)
            if rest == "repositories":
                call.template = "/repositories"
                await self.app._refresh()
                return self.repositories(call)
            if rest.startswith("repositories/") and "/tags" in rest:
                await self.app._refresh()
                return self.tag_routes(call, rest[len("repositories/"):])
        except SimError as err:
            return self.text(err.status, err.message)
        return self.text(404, "404 page not found")

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
        from careen.sim.harbor.app import Reply

        info: dict[str, Any] = {"with_notary": False, "with_clair": self.state.scanner is not None,
                                "with_admiral": False, "auth_mode": "db_auth",
                                "self_registration": False, "has_ca_root": False,
                                "harbor_version": f"v{self.state.harbor_version}-simulated"}
        return Reply.json(info)

    def projects(self, call: Call) -> Reply:
        from careen.sim.harbor.app import Reply

        projects = list(self.state.visible_projects(call.identity))
        if call.query.get("name"):
            projects = [p for p in projects if call.query["name"] in p.name]
        chunk, headers = self.paged(call, projects)
        return Reply.json([{
            "project_id": p.id, "owner_id": 1, "name": p.name,
            "creation_time": iso_time(p.creation_time), "update_time": iso_time(p.creation_time),
            "deleted": False, "owner_name": "", "togglable": call.identity.admin,
            "current_user_role_id": 1 if call.identity.admin else 0,
            "repo_count": len(p.repos), "chart_count": 0,
            "metadata": {"public": "true" if p.public else "false"},
        } for p in chunk], headers=headers)

    def repositories(self, call: Call) -> Reply:
        from careen.sim.harbor.app import Reply

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
        from careen.sim.harbor.app import Reply

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
        if parts[1:] == ["scan"] and call.method == "POST":
            call.template = "/repositories/{repo_name}/tags/{tag}/scan"
            if self.state.scanner is None:
                raise SimError(503, "UNAVAILABLE", "Clair is not enabled")
            if not (call.identity.admin or self.state.allowed(call.identity, project, "scan")):
                if not call.identity.authenticated:
                    raise SimError(401, "UNAUTHORIZED", "Unauthorized")
                raise SimError(403, "FORBIDDEN", "Forbidden")
            self.state.request_scan(tag.artifact)
            return Reply(200)
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

    def tag_json(self, artifact: Artifact, name: str) -> dict[str, Any]:
        attrs = artifact.extra_attrs or {}
        out: dict[str, Any] = {
            "digest": artifact.digest, "name": name, "size": artifact.size,
            "architecture": attrs.get("architecture", "amd64"), "os": attrs.get("os", "linux"),
            "docker_version": "17.06.2-ce", "author": attrs.get("author", ""),
            "created": iso_time(artifact.push_time - 60), "config": {"labels": None},
            "signature": None,
        }
        overview = self.overview(artifact)
        if overview is not None:
            out["scan_overview"] = overview
        out["labels"] = []
        return out

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
