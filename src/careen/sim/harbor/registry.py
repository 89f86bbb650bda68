"""A registry-backed fleet: the simulator mirrors a real OCI registry (Distribution API).

On list requests (at most every ``refresh`` seconds) it reads ``/v2/_catalog``,
``/v2/<name>/tags/list`` and ``HEAD /v2/<name>/manifests/<tag>`` (``Docker-Content-Digest``),
and fetches the manifest only for digests it has not seen. A tag that moved to a new digest
becomes a new artifact with no scan overview until it is scanned (NOTES §11.8). The first
path component of a repository is its project.

An ``inspector`` (a :class:`~careen.sim.harbor.scanner.ContentScanner`) is handed each new
manifest before its artifact is added, so an artifact is only ever listed once its content
was read; reading it is awaited here, in the refresh, never in a scan.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from careen.sim.harbor.fleet import DOCKER_MANIFEST, ArtifactSpec, PlatformSpec
from careen.sim.harbor.scanner import ContentScanner
from careen.sim.harbor.state import SimState

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    digest: str
    media_type: str
    size: int
    config_media_type: str
    platforms: tuple[PlatformSpec, ...] = ()


class RegistryMirror:
    def __init__(self, url: str, auth: tuple[str, str] | None = None,
                 refresh: float = 1.0, inspector: ContentScanner | None = None) -> None:
        self.url = url.rstrip("/")
        self.inspector = inspector
        self.auth = auth
        self.refresh_interval = refresh
        self._last = float("-inf")
        self._lock: asyncio.Lock | None = None
        self._manifests: dict[str, ManifestInfo] = {}
        self.refreshes = 0
        self.last_error: str | None = None

    async def refresh(self, state: SimState, *, force: bool = False) -> None:
        """Bring ``state`` up to date with the registry (cheap when called often)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = state.clock.now()
            if not force and now - self._last < self.refresh_interval:
                return
            self._last = now
            try:
                async with httpx.AsyncClient(base_url=self.url, auth=self.auth,
                                             timeout=10.0) as client:
                    snapshot = await self._snapshot(client)
            except (httpx.HTTPError, ValueError) as exc:
                # The registry being away must not take the API down: keep the last view.
                self.last_error = f"{type(exc).__name__}: {exc}"
                return
            self.last_error = None
            self.refreshes += 1
            self._apply(state, snapshot)

    async def _snapshot(self, client: httpx.AsyncClient) -> dict[str, dict[str, ManifestInfo]]:
        repos: list[str] = []
        url: str | None = "/v2/_catalog?n=1000"
        while url:
            response = await client.get(url)
            response.raise_for_status()
            repos.extend(response.json().get("repositories") or [])
            url = _next_link(response.headers.get("link"))
        snapshot: dict[str, dict[str, ManifestInfo]] = {}
        for repo in repos:
            if "/" not in repo:
                continue  # Harbor repositories always live in a project
            response = await client.get(f"/v2/{repo}/tags/list")
            if response.status_code == 404:
                continue
            response.raise_for_status()
            tags = response.json().get("tags") or []
            snapshot[repo] = {}
            for tag in tags:
                info = await self._manifest(client, repo, tag)
                if info is not None:
                    snapshot[repo][tag] = info
        return snapshot

    async def _manifest(self, client: httpx.AsyncClient, repo: str,
                        tag: str) -> ManifestInfo | None:
        headers = {"Accept": MANIFEST_ACCEPT}
        head = await client.head(f"/v2/{repo}/manifests/{tag}", headers=headers)
        if head.status_code == 404:
            return None
        head.raise_for_status()
        digest = head.headers.get("docker-content-digest", "")
        known = self._manifests.get(digest)
        if known is not None:
            return known
        response = await client.get(f"/v2/{repo}/manifests/{digest or tag}", headers=headers)
        response.raise_for_status()
        digest = digest or response.headers.get("docker-content-digest", "")
        body = json.loads(response.content)
        media_type = (body.get("mediaType") or response.headers.get("content-type", "")
                      or DOCKER_MANIFEST).split(";")[0]
        platforms: tuple[PlatformSpec, ...] = ()
        if "manifests" in body:
            platforms = tuple(
                PlatformSpec(m.get("platform", {}).get("os", "linux"),
                             m.get("platform", {}).get("architecture", "amd64"),
                             m.get("platform", {}).get("variant"), m.get("digest"))
                for m in body["manifests"])
            size = len(response.content) + sum(int(m.get("size", 0)) for m in body["manifests"])
            config_type = ""
        else:
            config = body.get("config") or {}
            size = len(response.content) + int(config.get("size", 0)) + sum(
                int(layer.get("size", 0)) for layer in body.get("layers") or [])
            config_type = config.get("mediaType", "")
        info = ManifestInfo(digest, media_type, size, config_type, platforms)
        if self.inspector is not None:
            await self.inspector.inspect_manifest(client, repo, digest, body)
        self._manifests[digest] = info
        return info

    def _apply(self, state: SimState, snapshot: dict[str, dict[str, ManifestInfo]]) -> None:
        now = state.clock.now()
        with state.lock:
            for repo_name, tags in snapshot.items():
                for tag, info in tags.items():
                    current = state.find_artifact(repo_name, tag)
                    if current is not None and current.digest == info.digest:
                        continue
                    state.add_artifact(repo_name, ArtifactSpec(
                        digest=info.digest, tags=(tag,), push_time=now, size=info.size,
                        manifest_media_type=info.media_type,
                        media_type=info.config_media_type or
                        "application/vnd.docker.container.image.v1+json",
                        platforms=info.platforms))
                repo = state.repos.get(repo_name)
                if repo is not None:  # tags deleted in the registry
                    for gone in set(repo.by_tag) - set(tags):
                        state.untag(repo_name, gone)


def _next_link(link: str | None) -> str | None:
    if not link or 'rel="next"' not in link:
        return None
    start, end = link.find("<"), link.find(">")
    return link[start + 1:end] if 0 <= start < end else None
