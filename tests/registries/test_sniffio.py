"""httpcore 1.0.x asks ``sniffio`` which async library runs, with ``import sniffio`` on every
request; anyio 4 no longer installs sniffio, and a failing import searches the whole of
``sys.path`` again each time (issue 16: 13,699 failed imports, a third of an inventory's
CPU). sniffio is a runtime dependency of Careen, and a crawl looks for it once at most."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.reliability.support import Answer, loopback_server

ROOT = Path(__file__).resolve().parents[2]

CRAWL = r"""
import asyncio, importlib.abc, json, sys

asked = []

class Counting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sniffio":
            asked.append(name)
        return None

sys.meta_path.insert(0, Counting())
from careen.events import NULL_OBSERVER
from careen.registries.harbor_v2 import HarborV2Client
from careen.registries.http import HarborSettings

async def main():
    async with HarborV2Client(HarborSettings(url=sys.argv[1], page_size=1)) as harbor:
        names = await harbor.projects()
        return len(names), harbor.stats.requests

count, requests = asyncio.run(main())
print(json.dumps({"found": count, "requests": requests, "asked": len(asked)}))
"""


def test_sniffio_is_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for dep in project["dependencies"]}
    assert "sniffio" in names


def test_a_crawl_looks_for_sniffio_once_not_per_request() -> None:
    """30 pages, one request each: sniffio is looked up at most once (when Careen is
    imported), so it is cached in ``sys.modules`` and never searched for again."""
    def route(path: str) -> Answer:
        page = int(path.split("page=")[1].split("&", maxsplit=1)[0])
        body = [{"name": f"p{page}"}] if page <= 30 else []
        return Answer(200, json.dumps(body).encode())

    with loopback_server(route) as server:
        done = subprocess.run([sys.executable, "-c", CRAWL, server.url], capture_output=True,
                              text=True, check=False, timeout=120,
                              env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["found"] == 30 and result["requests"] >= 31
    assert result["asked"] <= 1
