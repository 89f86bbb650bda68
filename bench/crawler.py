"""A plain concurrent Harbor crawler: the floor Careen's inventory is measured against.

What a competent engineer writes in an afternoon with the standard library alone: 16 threads,
``urllib``, basic auth on every request, ``page_size=100``; list the projects, the repositories
of each project, then the artifacts of each repository with their scan overviews (the listing
every Harbor 2.x answers), each listing paged until a short page. It judges every tagged
artifact with the default rule (critical > 0 or high > 0 or medium >= 3) and prints one JSON
line: artifacts seen, tagged images selected, and a digest of the selection, so the benchmark
can check that both tools chose the same images.

    CRAWLER_PASSWORD=... python -m bench.crawler URL USER

Standard library only: its CPU and memory are the crawl's, nothing else's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PAGE_SIZE = 100
THREADS = 16
API = "/api/v2.0"


class Crawler:
    def __init__(self, url: str, user: str, password: str) -> None:
        self.url = url.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self.requests = 0
        self.lock = threading.Lock()

    def get(self, path: str, query: dict[str, str]) -> list[Any]:
        url = f"{self.url}{API}{path}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, headers=self.headers)  # noqa: S310 (http/https)
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            body: list[Any] = json.loads(answer.read())
        with self.lock:
            self.requests += 1
        return body

    def paged(self, path: str, **query: str) -> list[Any]:
        items: list[Any] = []
        page = 1
        while True:
            batch = self.get(path, {**query, "page": str(page), "page_size": str(PAGE_SIZE)})
            items.extend(batch)
            if len(batch) < PAGE_SIZE:
                return items
            page += 1


def breaks_policy(artifact: dict[str, Any]) -> bool:
    for report in (artifact.get("scan_overview") or {}).values():
        if report.get("scan_status") != "Success":
            continue
        counts = (report.get("summary") or {}).get("summary") or {}
        return bool(counts.get("Critical", 0) > 0 or counts.get("High", 0) > 0
                    or counts.get("Medium", 0) >= 3)
    return False


def crawl(url: str, user: str, password: str) -> dict[str, Any]:
    crawler = Crawler(url, user, password)
    projects = [p["name"] for p in crawler.paged("/projects")]
    with ThreadPoolExecutor(THREADS) as pool:
        repositories = [r["name"] for listing in pool.map(
            lambda p: crawler.paged(f"/projects/{p}/repositories"), projects) for r in listing]

        def artifacts(full_name: str) -> list[tuple[str, dict[str, Any]]]:
            project, _, repository = full_name.partition("/")
            encoded = urllib.parse.quote(urllib.parse.quote(repository, safe=""), safe="")
            listing = crawler.paged(f"/projects/{project}/repositories/{encoded}/artifacts",
                                    with_tag="true", with_scan_overview="true")
            return [(full_name, artifact) for artifact in listing]

        seen = 0
        selected: list[str] = []
        for listing in pool.map(artifacts, repositories):
            for full_name, artifact in listing:
                seen += 1
                if breaks_policy(artifact):
                    selected += [f"{full_name}:{tag['name']}" for tag in artifact.get("tags") or []]
    digest = hashlib.sha256("\n".join(sorted(selected)).encode()).hexdigest()[:16]
    return {"artifacts": seen, "selected_tagged": len(selected), "selection": digest,
            "requests": crawler.requests}


if __name__ == "__main__":
    print(json.dumps(crawl(sys.argv[1], sys.argv[2], os.environ["CRAWLER_PASSWORD"])))
