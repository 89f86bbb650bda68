"""The baseline: the seed's way of reading Harbor, done honestly against a Harbor v2 API.

The 2017 seed ran ``harbor list`` and then one ``harbor show IMAGE`` per image, one after the
other (python-harborclient; about 1.5 s per image on its Harbor). python-harborclient only
speaks the v1 API (NOTES section 10), so this is what a user of it would write against a v2
Harbor, keeping its shape:

- one synchronous ``httpx.Client`` (a keep-alive connection, basic auth: the v1 cookie login
  is refused by Harbor 2.x), one request at a time;
- ``harbor list``: the projects, the repositories of each project and the tags of each
  repository (its artifacts **without** scan overview), every listing paged with
  ``page_size=100`` (the maximum; following ``Link: rel="next"``), so the baseline is not
  handicapped by Harbor's default page of 10;
- ``harbor show``: one ``GET .../artifacts/{tag}?with_scan_overview=true`` per image (tag);
- the same policy as Careen's (:class:`careen.policy.Policy`) applied to each overview.

Untagged artifacts are not images to ``harbor list`` (it lists ``repo:tag``), so the baseline
does not judge them; the benchmark compares its selection with Careen's tagged images.

The work is done repository by repository (list its tags, then show each) rather than "list
everything, then show everything": a sequential client sends the same requests either way and
takes the same time, and this order lets :func:`run_seed_client` stop after a sample of
images so that a run too long to measure can be projected from a measured prefix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from careen.inventory import Image
from careen.policy import Policy
from careen.reference import ImageReference
from careen.registries.harbor_v2 import summary_from_overview

API = "/api/v2.0"
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class SeedRun:
    """What one baseline run did and how long each phase took (``time.perf_counter``).

    Phase 1 (``list_*``) lists projects and repositories; phase 2 (``image_*``) lists each
    repository's tags and shows each image. ``complete`` is false when the run stopped after
    ``max_images`` (a sample); ``selected`` then covers only the images seen.
    """

    requests: int
    list_requests: int
    list_seconds: float
    image_requests: int
    image_seconds: float
    projects: int
    repositories: int
    repositories_done: int
    images: int
    selected: tuple[str, ...]
    complete: bool

    @property
    def seconds(self) -> float:
        return self.list_seconds + self.image_seconds


@dataclass(slots=True)
class SeedHarborClient:
    """A sequential Harbor v2 client shaped like python-harborclient. ``requests`` counts every
    HTTP request sent."""

    base_url: str
    user: str
    password: str = field(repr=False)
    timeout: float = 30.0
    requests: int = 0
    _http: httpx.Client | None = field(default=None, repr=False)

    def __enter__(self) -> SeedHarborClient:
        self._http = httpx.Client(base_url=self.base_url.rstrip("/"),
                                  auth=httpx.BasicAuth(self.user, self.password),
                                  timeout=self.timeout, headers={"Accept": "application/json"})
        return self

    def __exit__(self, *exc: object) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def get(self, path: str, params: dict[str, str | int] | None = None) -> httpx.Response:
        if self._http is None:
            raise RuntimeError("use SeedHarborClient as a context manager")
        self.requests += 1
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return response

    def paged(self, path: str, params: dict[str, str | int] | None = None) -> Iterator[Any]:
        """Every item of a paged listing, one page after the other (``rel="next"``)."""
        page = 1
        while True:
            response = self.get(path, {**(params or {}), "page": page, "page_size": PAGE_SIZE})
            yield from response.json() or []
            following = _next_page(response.headers.get("Link", ""))
            if following is None or following <= page:
                return
            page = following

    def projects(self) -> list[str]:
        return [p["name"] for p in self.paged(f"{API}/projects", {"with_detail": "false"})]

    def repositories(self, project: str) -> list[str]:
        return [r["name"] for r in
                self.paged(f"{API}/projects/{quote(project, safe='')}/repositories")]

    def tags(self, project: str, repository: str) -> list[str]:
        """``harbor list`` for one repository: tag names, no scan overview."""
        path = f"{API}/projects/{quote(project, safe='')}/repositories/" \
               f"{_segment(repository, project)}/artifacts"
        names: list[str] = []
        for artifact in self.paged(path, {"with_tag": "true", "with_scan_overview": "false"}):
            names.extend(t["name"] for t in artifact.get("tags") or ())
        return names

    def show(self, project: str, repository: str, tag: str) -> Any:
        """``harbor show repository:tag``: one image's artifact with its scan overview."""
        path = f"{API}/projects/{quote(project, safe='')}/repositories/" \
               f"{_segment(repository, project)}/artifacts/{quote(tag, safe='')}"
        return self.get(path, {"with_scan_overview": "true"}).json()


def run_seed_client(base_url: str, user: str, password: str, policy: Policy, *,
                    max_images: int | None = None) -> SeedRun:
    """Judge every tagged image the seed's way; stop after the repository in which
    ``max_images`` is reached, when given (a sample for a projection)."""
    selected: list[str] = []
    images = 0
    start = time.perf_counter()  # like Careen's figure, client construction included
    with SeedHarborClient(base_url, user, password) as harbor:
        repositories = [(project, repository) for project in harbor.projects()
                        for repository in harbor.repositories(project)]
        list_requests = harbor.requests
        listed = time.perf_counter()
        done = 0
        projects = len({p for p, _ in repositories})
        for project, repository in repositories:
            for tag in harbor.tags(project, repository):
                body = harbor.show(project, repository, tag)
                reference = ImageReference(repository, tag)
                image = Image(reference=reference, digest=body.get("digest"),
                              scan=summary_from_overview(body.get("scan_overview")))
                if policy.evaluate(image).selected:
                    selected.append(reference.short)
                images += 1
            done += 1
            if max_images is not None and images >= max_images:
                break
        end = time.perf_counter()
        return SeedRun(
            requests=harbor.requests, list_requests=list_requests,
            list_seconds=listed - start, image_requests=harbor.requests - list_requests,
            image_seconds=end - listed, projects=projects, repositories=len(repositories),
            repositories_done=done, images=images, selected=tuple(sorted(selected)),
            complete=done == len(repositories))


def _segment(repository: str, project: str) -> str:
    """The repository path segment, URL-encoded twice (Harbor's proxy and core each decode
    once; NOTES section 7)."""
    below = repository[len(project) + 1:] if repository.startswith(project + "/") else repository
    return quote(quote(below, safe=""), safe="")


def _next_page(link: str) -> int | None:
    """The page number of ``rel="next"`` in Harbor's ``Link`` header, if any."""
    for entry in link.split(","):
        if 'rel="next"' not in entry:
            continue
        url = entry.strip().split(";")[0].strip().strip("<>")
        pages = parse_qs(urlsplit(url).query).get("page", [])
        return int(pages[0]) if pages and pages[0].isdigit() else None
    return None
