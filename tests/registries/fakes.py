"""A scripted Harbor for unit tests: an ``httpx.MockTransport`` whose answers are shaped after
Harbor NOTES section 8 and the v2.0 swagger (not after the simulator's code)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
from pydantic import SecretStr

from careen.registries.harbor_v2 import MIME_V10, MIME_V11
from careen.registries.http import HarborSettings

PASSWORD = "s3cret-Pa55"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64
DIGEST_D = "sha256:" + "d" * 64
ZERO_TIME = "0001-01-01T00:00:00.000Z"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def tag(name: str, *, immutable: bool = False) -> dict[str, Any]:
    return {"artifact_id": 1, "id": 1, "immutable": immutable, "name": name,
            "pull_time": ZERO_TIME, "push_time": "2024-05-02T10:12:00.530Z",
            "repository_id": 7}


def overview(counts: dict[str, int] | None = None, *, status: str = "Success",
             mime: str = MIME_V11, fixable: int = 0) -> dict[str, Any]:
    """A ``scan_overview``; a non-Success one has the keys Harbor omits left out."""
    if status != "Success":
        return {mime: {"report_id": "r-1", "scan_status": status,
                       "start_time": "2024-05-02T10:12:05.000Z", "end_time": ZERO_TIME}}
    counts = {k: v for k, v in (counts or {}).items() if v}
    return {mime: {
        "report_id": "5f62c830-f996-11e9-957f-0242c0a89008", "scan_status": "Success",
        "severity": next(iter(counts), "None"), "duration": 12,
        "summary": {"total": sum(counts.values()), "fixable": fixable, "summary": counts},
        "start_time": "2024-05-02T10:12:05.000Z", "end_time": "2024-05-02T10:12:17.000Z",
        "complete_percent": 100,
        "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"}}}


def artifact(repository: str, digest_: str, tags: list[str] | None = None, *,
             scan: dict[str, Any] | None = None, references: list[dict[str, Any]] | None = None,
             immutable: tuple[str, ...] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accessories": None, "digest": digest_, "id": 42, "labels": None,
        "manifest_media_type": ("application/vnd.oci.image.index.v1+json" if references
                                else "application/vnd.docker.distribution.manifest.v2+json"),
        "media_type": "application/vnd.docker.container.image.v1+json",
        "project_id": 1, "pull_time": ZERO_TIME, "push_time": "2024-05-02T10:12:00.512Z",
        "references": references, "repository_id": 7, "repository_name": repository,
        "size": 35804754, "type": "IMAGE",
        "tags": [tag(t, immutable=t in immutable) for t in tags] if tags else None,
        "extra_attrs": {"architecture": "amd64", "os": "linux"},
    }
    if scan is not None:
        body["scan_overview"] = scan
    return body


def reference(child: str, arch: str, variant: str | None = None) -> dict[str, Any]:
    platform = {"os": "linux", "architecture": arch}
    if variant:
        platform["variant"] = variant
    return {"parent_id": 1, "child_id": 2, "child_digest": child, "platform": platform,
            "urls": None, "annotations": None}


def json_response(body: Any, status: int = 200, *, total: int | None = None,
                  headers: dict[str, str] | None = None) -> httpx.Response:
    extra = dict(headers or {})
    if total is not None:
        extra["X-Total-Count"] = str(total)
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json; charset=utf-8", **extra})


def error(status: int, code: str, message: str) -> httpx.Response:
    return json_response({"errors": [{"code": code, "message": message}]}, status)


@dataclass
class FakeHarbor:
    """Routes by exact decoded path (``raw`` keeps the wire form). ``routes`` map a path to a
    handler; ``requests`` records everything sent. ``in_flight``/``max_in_flight`` show
    whether requests overlapped."""

    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def route(self, path: str, handler: Handler | Any) -> None:
        if callable(handler):
            self.routes[path] = handler
            return

        def answer(_request: httpx.Request) -> httpx.Response:
            return json_response(handler)

        self.routes[path] = answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # let other requests start: overlap shows
            handler = self.routes.get(request.url.path)
            if handler is None:
                return error(404, "NOT_FOUND", f"path {request.url.path} was not found")
            result = handler(request)
            if isinstance(result, Awaitable):
                result = await result
            assert isinstance(result, httpx.Response)
            result.headers.setdefault("X-Request-Id", request.headers.get("X-Request-Id", ""))
            return result
        finally:
            self.in_flight -= 1

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    def raw_paths(self) -> list[str]:
        return [r.url.raw_path.decode().split("?")[0] for r in self.requests]

    def pages_of(self, path: str) -> list[int]:
        return [int(query(r).get("page", "0")) for r in self.requests if r.url.path == path]


def query(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}


def paged(items: list[Any], *, total: bool = True, link: bool = False,
          base: str = "/api/v2.0/x", max_page_size: int = 100) -> Handler:
    """A paged listing of ``items`` honouring page/page_size, with ``X-Total-Count`` and/or a
    ``Link`` header joined by ``" , "`` as Harbor does. Above ``max_page_size`` it answers 422
    as Harbor v2 does (v1 clamps at 500 instead)."""

    def handle(request: httpx.Request) -> httpx.Response:
        q = query(request)
        page, size = int(q.get("page", "1")), int(q.get("page_size", "10"))
        if size > max_page_size:
            return error(422, "UNPROCESSABLE_ENTITY", "validation failure list:\n"
                         "page_size in query should be less than or equal to 100")
        chunk = items[(page - 1) * size: page * size]
        headers: dict[str, str] = {}
        if link:
            links = []
            if page > 1:
                links.append(f'<{base}?page={page - 1}&page_size={size}>; rel="prev"')
            if page * size < len(items):
                links.append(f'<{base}?page={page + 1}&page_size={size}>; rel="next"')
            if links:
                headers["Link"] = " , ".join(links)
        return json_response(chunk, total=len(items) if total else None, headers=headers)

    return handle


class RecordingSleep:
    """Stands in for ``asyncio.sleep`` in retries: records how long it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def settings(**overrides: Any) -> HarborSettings:
    values: dict[str, Any] = {"url": "https://harbor.example.com", "user": "admin",
                              "password": SecretStr(PASSWORD), "backoff_initial": 0.01,
                              "backoff_max": 0.05, "max_attempts": 4}
    values.update(overrides)
    return HarborSettings(**values)


__all__ = ["DIGEST_A", "DIGEST_B", "DIGEST_C", "DIGEST_D", "MIME_V10", "MIME_V11",
           "PASSWORD", "FakeHarbor", "RecordingSleep", "artifact", "digest", "error",
           "json_response", "overview", "paged", "query", "reference", "settings", "tag"]
