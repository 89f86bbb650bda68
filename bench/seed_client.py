"""The baselines: the seed's way of reading Harbor.

On Harbor 1.x, the seed's own client: python-harborclient (PyPI, Python 2 code converted with
lib2to3, see :func:`install_harborclient`) run as the seed ran it, ``harbor list | awk '{print
$2}' | egrep -v '^name$|^$'`` and then one ``harbor show IMAGE | grep tag_scan_overview``
per image (:func:`run_seed_pipeline`), each a process of its own, as in the seed's shell
script.

On Harbor 2.x, which python-harborclient cannot talk to, the seed's way done honestly against
a Harbor v2 API (below).

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

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


# -- the seed's own client on Harbor 1.x -----------------------------------------------------------

#: python-harborclient as on PyPI (its only releases are the 1.2.2 development ones).
HARBORCLIENT = "python-harborclient==1.2.2.dev42"
#: Seconds any one step of the install may take (pip's downloads included).
INSTALL_TIMEOUT = 600.0
#: Severities of python-harborclient's ``components`` (NOTES 9.2): 4 medium, 5 high.
MEDIUM, HIGH = 4, 5


@dataclass(frozen=True, slots=True)
class HarborCli:
    """The seed's ``harbor`` command, installed in ``site`` (a pip ``--target``)."""

    site: Path
    python: str = sys.executable

    @property
    def script(self) -> Path:
        return self.site / "bin" / "harbor"

    def argv(self, *args: str) -> list[str]:
        return [self.python, str(self.script), *args]

    def env(self, url: str, user: str, password: str, project_id: int) -> dict[str, str]:
        """The environment the seed set for it; the password never goes on a command line."""
        return {**os.environ, "PYTHONPATH": str(self.site), "HARBOR_URL": url,
                "HARBOR_USERNAME": user, "HARBOR_PASSWORD": password,
                "HARBOR_PROJECT": str(project_id), "PYTHONWARNINGS": "ignore"}


def _run(argv: Sequence[str], **kwargs: Any) -> None:
    subprocess.run(list(argv), check=True, timeout=INSTALL_TIMEOUT, capture_output=True,
                   **kwargs)


def install_harborclient(target: Path, *, requirement: str = HARBORCLIENT) -> HarborCli:
    """Download python-harborclient's source from PyPI (``pip download``), convert it to
    Python 3 with the standard library's lib2to3 (``python -m lib2to3 -w -n``) and install it
    with its dependencies into ``target/site`` (``pip install --target``). Idempotent: an
    existing install is reused."""
    cli = HarborCli(target / "site")
    if cli.script.exists():
        return cli
    downloads = target / "downloads"
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
          "--pre", requirement, "-d", str(downloads)])
    (archive,) = downloads.glob("python-harborclient-*.tar.gz")
    source = target / "source"
    with tarfile.open(archive) as tar:
        tar.extractall(source, filter="data")
    (tree,) = source.iterdir()
    _run([sys.executable, "-W", "ignore", "-m", "lib2to3", "-w", "-n", str(tree / "harborclient")])
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(cli.site),
          str(tree)])
    return cli


@dataclass(frozen=True, slots=True)
class SeedPipelineRun:
    """One run of the seed's pipeline: the images ``harbor list`` gave, the ones selected
    (medium >= 3 or high > 0 in ``tag_scan_overview``'s components), processes started and
    wall time (``time.perf_counter``) of the listing and of the shows."""

    images: tuple[str, ...]
    selected: tuple[str, ...]
    processes: int
    list_seconds: float
    show_seconds: float

    @property
    def seconds(self) -> float:
        return self.list_seconds + self.show_seconds


def pipe(*commands: Sequence[str], env: Mapping[str, str] | None = None,
         timeout: float = 600.0) -> str:
    """``a | b | c`` as processes joined by pipes (argument lists, no shell); the last
    one's stdout. The first command's failure is an error; ``grep`` finding nothing is not."""
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryFile() as errors:
        for argv in commands:
            stdin = processes[-1].stdout if processes else subprocess.DEVNULL
            processes.append(subprocess.Popen(
                list(argv), stdin=stdin, stdout=subprocess.PIPE,
                stderr=errors if not processes else subprocess.DEVNULL,
                env=dict(env or os.environ)))
            if len(processes) > 1 and processes[-2].stdout is not None:
                processes[-2].stdout.close()  # the reader holds it now: SIGPIPE works
        out, _ = processes[-1].communicate(timeout=timeout)
        for process in processes:
            process.wait(timeout=timeout)
        first = processes[0]
        if first.returncode != 0:
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"{commands[0][-1]!r} failed ({first.returncode}): {said}")
    return out.decode("utf-8", errors="replace")


def seed_images(cli: HarborCli, env: Mapping[str, str]) -> list[str]:
    """``harbor list | awk '{print $2}' | egrep -v '^name$|^$'``; a name without a tag is
    ``:latest`` (the seed: "an empty tag means latest")."""
    names = pipe(cli.argv("list"), ["awk", "{print $2}"], ["grep", "-E", "-v", "^name$|^$"],
                 env=env).split()
    return [name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest" for name in names]


def seed_overview(cli: HarborCli, env: Mapping[str, str], image: str) -> Any:
    """``harbor show IMAGE | grep tag_scan_overview | awk -F '|' '{print $3}'``, parsed;
    ``None`` when the image has no overview (never scanned)."""
    text = pipe(cli.argv("show", image), ["grep", "tag_scan_overview"],
                ["awk", "-F", "|", "{print $3}"], env=env).strip()
    return json.loads(text) if text else None


def seed_selects(overview: Any) -> bool:
    """The seed's rule on ``components``: medium (4) >= 3 or high (5) > 0."""
    components = overview.get("components") if isinstance(overview, dict) else None
    counts = {entry.get("severity"): entry.get("count", 0)
              for entry in (components or {}).get("summary") or ()}
    return counts.get(MEDIUM, 0) >= 3 or counts.get(HIGH, 0) > 0


def run_seed_pipeline(cli: HarborCli, url: str, user: str, password: str,
                      project_id: int = 1) -> SeedPipelineRun:
    """The seed's ``list-vulnerable-images`` with its own client: list, then one show per
    image, one after the other."""
    env = cli.env(url, user, password, project_id)
    start = time.perf_counter()
    images = seed_images(cli, env)
    listed = time.perf_counter()
    selected = [image for image in images if seed_selects(seed_overview(cli, env, image))]
    end = time.perf_counter()
    return SeedPipelineRun(images=tuple(images), selected=tuple(sorted(selected)),
                           processes=3 * (1 + len(images)), list_seconds=listed - start,
                           show_seconds=end - listed)
