"""A small Harbor 2.11 of its own for each row of issue 18: the four listings
``careen images`` and ``careen vulnerable`` read (systeminfo, projects, a project's
repositories, a repository's artifacts), answered from plain data in Harbor's shapes
(NOTES sections 5, 6.1-6.4 and 8), with a hook per test to send exactly one bad answer.

Not the simulator: its job is to be right; this one's is to be wrong in one way at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from careen.registries.harbor_v2 import MIME_V11

from .support import Answer

V2 = "/api/v2.0"
JSON = (("Content-Type", "application/json; charset=utf-8"),)


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def overview(summary: Any, *, scanner: str = "Trivy", version: str = "v0.50.1") -> dict[str, Any]:
    """``scan_overview`` of a finished Trivy scan whose ``summary.summary`` is ``summary``."""
    return {MIME_V11: {
        "report_id": "5f1a8d0e-6c1b-4a47-9f1c-3c2d9d1e2b3a", "scan_status": "Success",
        "severity": "High", "duration": 4, "complete_percent": 100,
        "start_time": "2024-05-01T10:00:00Z", "end_time": "2024-05-01T10:00:04Z",
        "scanner": {"name": scanner, "vendor": "Aqua Security", "version": version},
        "summary": {"total": 3, "fixable": 1, "summary": summary},
    }}


def artifact(repository: str, n: int, *, tag: str | None = None,
             summary: Any = None, scanner: str = "Trivy") -> dict[str, Any]:
    """One artifact as ``listArtifacts`` sends it (``with_tag``, ``with_scan_overview``)."""
    return {
        "id": n, "type": "IMAGE", "repository_id": 1, "project_id": 2,
        "digest": digest(n), "repository_name": repository, "size": 2_811_478,
        "manifest_media_type": "application/vnd.docker.distribution.manifest.v2+json",
        "media_type": "application/vnd.docker.container.image.v1+json",
        "push_time": "2024-04-30T08:00:00.000Z", "pull_time": "0001-01-01T00:00:00.000Z",
        "tags": [{"id": n, "name": tag or f"1.{n}", "immutable": False,
                  "push_time": "2024-04-30T08:00:00.000Z", "signed": False}],
        "labels": None, "references": None, "accessories": None,
        "scan_overview": overview({"Low": 2} if summary is None else summary,
                                  scanner=scanner),
    }


def query(path: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}


def page_of(items: list[Any], path: str) -> list[Any]:
    q = query(path)
    page, size = int(q.get("page", "1")), int(q.get("page_size", "10"))
    return items[(page - 1) * size: page * size]


def answer(body: Any, *, total: int | str | None = None,
           headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    extra = (("X-Total-Count", str(total)),) if total is not None else ()
    return Answer(200, json.dumps(body).encode(), (*JSON, *extra, *headers))


Hook = Callable[[str], Answer | None]


@dataclass
class SmallHarbor:
    """``repositories`` maps a full name (``library/app``) to its artifacts. ``hook(path)``
    answers first when it returns an :class:`Answer`; ``total`` replaces every
    ``X-Total-Count`` (the true one otherwise)."""

    repositories: dict[str, list[dict[str, Any]]]
    hook: Hook | None = None
    total: int | str | None = None
    version: str = "v2.11.0"
    project: str = "library"
    asked: list[str] = field(default_factory=list)

    def __call__(self, path: str) -> Answer:
        self.asked.append(path)
        if self.hook is not None:
            hooked = self.hook(path)
            if hooked is not None:
                return hooked
        route = urlsplit(path).path
        if route == f"{V2}/systeminfo":
            return answer({"harbor_version": self.version, "auth_mode": "db_auth"})
        if route == f"{V2}/projects":
            return self.listing([{"project_id": 2, "name": self.project,
                                  "metadata": {"public": "true"}}], path)
        if route == f"{V2}/projects/{self.project}/repositories":
            return self.listing([{"id": i, "project_id": 2, "name": name,
                                  "artifact_count": len(items)}
                                 for i, (name, items) in enumerate(self.repositories.items())],
                                path)
        for name, items in self.repositories.items():
            below = name.split("/", 1)[1].replace("/", "%252F")
            if route == f"{V2}/projects/{self.project}/repositories/{below}/artifacts":
                return self.listing(items, path)
        return Answer(404, b'{"errors":[{"code":"NOT_FOUND","message":"not found"}]}', JSON)

    def listing(self, items: list[Any], path: str) -> Answer:
        return answer(page_of(items, path),
                      total=self.total if self.total is not None else len(items))


def fleet(repositories: int, per_repository: int = 1, *,
          summary: Any = None) -> dict[str, list[dict[str, Any]]]:
    """``repositories`` repositories ``library/app-N`` of ``per_repository`` artifacts."""
    found: dict[str, list[dict[str, Any]]] = {}
    n = 0
    for r in range(repositories):
        name = f"library/app-{r}"
        found[name] = []
        for _ in range(per_repository):
            n += 1
            found[name].append(artifact(name, n, summary=summary))
    return found
