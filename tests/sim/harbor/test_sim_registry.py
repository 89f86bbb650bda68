"""A registry-backed fleet against a real OCI registry (the lab's ``docker-registry``)."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from careen.sim.harbor import Fleet, SimOptions, SimulatorServer
from tests.sim.conftest import ADMIN, API, make_client

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("docker-registry") is None,
                       reason="docker-registry is not on PATH (apt-get install docker-registry)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: "
        f"{tmp_path / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{url}/v2/").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("docker-registry did not start")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def push(registry: str, repo: str, tag: str, content: bytes) -> str:
    """Push a one-layer image with the Distribution API; returns the manifest digest."""
    with httpx.Client(base_url=registry) as client:
        blobs = []
        for blob in (content, json.dumps({"architecture": "amd64", "os": "linux"}).encode()):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            start = client.post(f"/v2/{repo}/blobs/uploads/")
            assert start.status_code == 202
            location = start.headers["location"]
            sep = "&" if "?" in location else "?"
            done = client.put(f"{location}{sep}digest={digest}", content=blob,
                              headers={"Content-Type": "application/octet-stream"})
            assert done.status_code == 201, done.text
            blobs.append((digest, len(blob)))
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": blobs[1][0], "size": blobs[1][1]},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": blobs[0][0], "size": blobs[0][1]}],
        }).encode()
        put = client.put(f"/v2/{repo}/manifests/{tag}", content=manifest, headers={
            "Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
        assert put.status_code == 201, put.text
        return put.headers["docker-content-digest"]


def test_pushes_show_up_and_moved_tags_lose_overview(registry: str) -> None:
    """NOTES §11.8: a push is a new artifact; a moved tag has no overview until scanned."""
    first = push(registry, "library/app", "2.0", b"layer one")
    push(registry, "team/tools", "1.0", b"tools")
    options = SimOptions(registry_url=registry, registry_refresh=0.0, scan_delay=0.0)
    with SimulatorServer(Fleet(), options) as sim, make_client(sim, auth=ADMIN) as client:
        names = [p["name"] for p in client.get(f"{API}/projects").json()]
        assert names == ["library", "team"]
        url = f"{API}/projects/library/repositories/app/artifacts/2.0"
        artifact = client.get(url, params={"with_scan_overview": "true"}).json()
        assert artifact["digest"] == first
        assert "scan_overview" not in artifact  # never scanned
        assert client.post(f"{url}/scan").status_code == 202
        sim.state.finish_scans()
        scanned = client.get(url, params={"with_scan_overview": "true"}).json()
        assert next(iter(scanned["scan_overview"].values()))["scan_status"] == "Success"

        second = push(registry, "library/app", "2.0", b"layer two, rebuilt")
        moved = client.get(url, params={"with_scan_overview": "true"}).json()
        assert moved["digest"] == second != first
        assert "scan_overview" not in moved
        listing = client.get(f"{API}/projects/library/repositories/app/artifacts").json()
        assert {a["digest"] for a in listing} == {first, second}
        old = next(a for a in listing if a["digest"] == first)
        assert old["tags"] is None
