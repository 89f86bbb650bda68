"""The package scanner: package lists read from layers, matched against advisories."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from careen.errors import InputFileError
from careen.sim.harbor import Fleet, SimOptions, SimulatorServer
from careen.sim.harbor.fleet import DOCKER_MANIFEST, SEVERITY_WORDS
from careen.sim.harbor.package_scanner import (
    PACKAGE_DIR,
    AdvisoryDatabase,
    LayerContents,
    LayerError,
    Package,
    PackageListError,
    PackageScanner,
    compare_versions,
    merge_layers,
    package_scanner_from_file,
    parse_package_list,
    read_layer,
    render_package_list,
)
from careen.sim.harbor.scanner import (
    DetailedScanResult,
    ScanError,
    ScanTarget,
    vulnerability_items,
)
from careen.sim.harbor.state import SimState

ADVISORIES = """
[[advisory]]
id = "CVE-2099-0001"
package = "openssl"
severity = "high"
fixed_version = "3.0.13"
description = "demo: bad things in openssl"

[[advisory]]
id = "CVE-2099-0002"
package = "openssl"
severity = "medium"
fixed_version = "3.0.12"

[[advisory]]
id = "CVE-2099-0003"
package = "libxml2"
severity = "low"

[[advisory]]
id = "CVE-2099-0004"
package = "curl"
severity = "critical"
introduced = "8.0.0"
fixed_version = "8.4.0"
"""


@pytest.fixture
def advisories() -> AdvisoryDatabase:
    return AdvisoryDatabase.from_text(ADVISORIES, source="advisories.toml")


# -- package lists ----------------------------------------------------------------------------

def test_package_list_skips_comments_and_blank_lines() -> None:
    text = "# the OS\n\nopenssl 3.0.11\n  zlib   1.2.13  \n"
    assert parse_package_list(text) == (Package("openssl", "3.0.11"), Package("zlib", "1.2.13"))


@pytest.mark.parametrize("line", ["openssl", "openssl 3.0 extra"])
def test_package_list_names_the_bad_line(line: str) -> None:
    with pytest.raises(PackageListError, match=r"os\.txt:2: expected 'name version'"):
        parse_package_list(f"zlib 1.2\n{line}\n", source="os.txt")


_WORD = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#"),
                min_size=1, max_size=12)


@given(st.lists(st.builds(Package, _WORD, _WORD), max_size=20))
def test_package_list_round_trips(packages: list[Package]) -> None:
    assert parse_package_list(render_package_list(packages)) == tuple(packages)


# -- versions -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("left", "right", "expected"), [
    ("3.0.11", "3.0.13", -1),
    ("3.0.9", "3.0.13", -1),
    ("1.0", "1.0", 0),
    ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0a", -1),
    ("1.0a", "1.0+", -1),
    ("1:1.0", "2.0", 1),
    ("1.2.13-1", "1.2.13-2", -1),
    ("1.2.13-10", "1.2.13-9", 1),
    ("8u392", "8u402", -1),
    ("1.01", "1.1", 0),
])
def test_versions_compare_like_dpkg(left: str, right: str, expected: int) -> None:
    assert compare_versions(left, right) == expected
    assert compare_versions(right, left) == -expected


_VERSION = st.text(st.sampled_from("0123456789.~+-:abz"), max_size=10)


@given(_VERSION, _VERSION)
def test_version_comparison_is_antisymmetric(left: str, right: str) -> None:
    assert compare_versions(left, right) == -compare_versions(right, left)
    assert compare_versions(left, left) == 0


@given(_VERSION, _VERSION, _VERSION)
def test_version_comparison_is_transitive(a: str, b: str, c: str) -> None:
    ordered = sorted([a, b, c], key=lambda v: [compare_versions(v, w) for w in (a, b, c)])
    low, mid, high = ordered
    if compare_versions(low, mid) <= 0 and compare_versions(mid, high) <= 0:
        assert compare_versions(low, high) <= 0


@given(st.lists(st.integers(0, 999), min_size=1, max_size=4),
       st.lists(st.integers(0, 999), min_size=1, max_size=4))
def test_dotted_numeric_versions_compare_as_number_tuples(left: list[int],
                                                          right: list[int]) -> None:
    def padded(parts: list[int]) -> list[int]:
        return parts + [0] * (4 - len(parts))

    expected = (padded(left) > padded(right)) - (padded(left) < padded(right))
    if len(left) != len(right) and padded(left) == padded(right):
        return  # "1.0" and "1": dpkg orders them by the extra ".0"; no tuple rule for that
    assert compare_versions(".".join(map(str, left)), ".".join(map(str, right))) == expected


# -- advisories ---------------------------------------------------------------------------------

def test_advisories_match_by_version_range(advisories: AdvisoryDatabase) -> None:
    found = advisories.match([Package("openssl", "3.0.12"), Package("curl", "7.88.1"),
                              Package("curl", "8.2.0"), Package("zlib", "1.2.13")])
    assert {(f.id, f.version) for f in found} == {("CVE-2099-0001", "3.0.12"),
                                                  ("CVE-2099-0004", "8.2.0")}


def test_scan_counts_and_fixable_come_from_the_findings(advisories: AdvisoryDatabase) -> None:
    result = advisories.scan([Package("openssl", "3.0.11"), Package("libxml2", "2.9.14")])
    assert dict(result.counts) == {"High": 1, "Medium": 1, "Low": 1}
    assert result.fixable == 2  # libxml2 has no fixed version
    assert result.packages == 2
    assert result.severity == "High"


def test_vulnerability_list_agrees_with_the_summary(advisories: AdvisoryDatabase) -> None:
    result = advisories.scan([Package("openssl", "3.0.11"), Package("libxml2", "2.9.14"),
                              Package("curl", "8.1.0")])
    items = vulnerability_items(result, "sha256:" + "a" * 64)
    assert len(items) == result.total
    for word, count in result.counts:
        assert sum(1 for i in items if i["severity"] == word) == count
    assert sum(1 for i in items if i["fix_version"]) == result.fixable
    ranks = [word for _, word in SEVERITY_WORDS]
    assert [i["severity"] for i in items] == sorted((i["severity"] for i in items),
                                                     key=ranks.index)
    openssl = next(i for i in items if i["id"] == "CVE-2099-0001")
    assert openssl == {**openssl, "package": "openssl", "version": "3.0.11",
                       "fix_version": "3.0.13", "status": "fixed",
                       "description": "demo: bad things in openssl"}


def test_advisories_read_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "advisories.yaml"
    path.write_text("advisory:\n  - {id: X-1, package: zlib, severity: medium, "
                    "fixed_version: '1.3'}\n")
    scanner = package_scanner_from_file(path)
    assert [f.id for f in scanner.advisories.match([Package("zlib", "1.2.13")])] == ["X-1"]


@pytest.mark.parametrize(("text", "message"), [
    ('[[advisory]]\nid = "X"\npackage = "a"\nseverity = "severe"\n',
     r"advisory 1 \(X\): severity"),
    ('[[advisory]]\npackage = "a"\nseverity = "low"\n', r"advisory 1: id"),
    ('[[advisory]]\nid = "X"\npackage = "a b"\nseverity = "low"\n', r"advisory 1 \(X\): package"),
    ('[[advisory]]\nid = "X"\npackage = "a"\nseverity = "low"\ncvss = 3\n', r"cvss"),
    ('advisories = []\n', r"only a list of \[\[advisory\]\]"),
    ('[[advisory]\n', r"not valid TOML"),
])
def test_bad_advisory_files_name_the_file_and_entry(text: str, message: str) -> None:
    with pytest.raises(InputFileError, match=r"^adv\.toml: .*" + message):
        AdvisoryDatabase.from_text(text, source="adv.toml")


def test_missing_advisory_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read the advisory file"):
        AdvisoryDatabase.from_file(tmp_path / "nope.toml")


# -- layers -------------------------------------------------------------------------------------

def layer(files: Mapping[str, str | None], *, compress: bool = True) -> bytes:
    """A layer tar: path -> text (``None``: an empty whiteout/marker file)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for path, text in files.items():
            data = (text or "").encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue()


def test_read_layer_finds_lists_and_whiteouts() -> None:
    contents = read_layer(layer({
        f"{PACKAGE_DIR}/os.txt": "openssl 3.0.11\n",
        f"./{PACKAGE_DIR}/.wh.old.txt": None,
        f"{PACKAGE_DIR}/notes/../app.txt": "app 1.0\n",
        "etc/passwd": "root:x:0:0\n",
        "etc/.wh.shadow": None,
        "usr/share/.wh..wh..opq": None,
    }, compress=False))
    assert contents.files == {f"{PACKAGE_DIR}/os.txt": (Package("openssl", "3.0.11"),),
                              f"{PACKAGE_DIR}/app.txt": (Package("app", "1.0"),)}
    assert contents.whiteouts == (f"{PACKAGE_DIR}/old.txt",)
    assert contents.opaque == ("usr/share",)


def test_read_layer_refuses_what_is_not_a_tar() -> None:
    with pytest.raises(LayerError, match="not a readable tar layer"):
        read_layer(b"\x1f\x8b not really gzip")


def test_read_layer_refuses_a_bad_list() -> None:
    with pytest.raises(LayerError, match="expected 'name version'"):
        read_layer(layer({f"{PACKAGE_DIR}/os.txt": "openssl\n"}))


def test_upper_layers_replace_and_delete_lists() -> None:
    base = LayerContents({f"{PACKAGE_DIR}/os.txt": (Package("openssl", "3.0.11"),),
                          f"{PACKAGE_DIR}/tools.txt": (Package("curl", "8.1.0"),)})
    patched = LayerContents({f"{PACKAGE_DIR}/os.txt": (Package("openssl", "3.0.13"),)})
    removed = LayerContents(whiteouts=(f"{PACKAGE_DIR}/tools.txt",))
    assert merge_layers([base, patched]) == (Package("curl", "8.1.0"),
                                            Package("openssl", "3.0.13"))
    assert merge_layers([base, removed]) == (Package("openssl", "3.0.11"),)
    wiped = LayerContents({f"{PACKAGE_DIR}/app.txt": (Package("app", "1"),)},
                          opaque=("usr/share",))
    assert merge_layers([base, wiped]) == (Package("app", "1"),)
    gone = LayerContents(whiteouts=("usr",))
    assert merge_layers([base, gone]) == ()


# -- the scanner against a registry (mocked transport) ------------------------------------------

class FakeRegistry:
    """Manifests and blobs served through ``httpx.MockTransport``; counts blob reads."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.blob_reads: list[str] = []
        self.gate: asyncio.Event | None = None

    def add_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def image(self, *layers: bytes) -> tuple[str, dict[str, Any]]:
        manifest = {
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": self.add_blob(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": self.add_blob(data), "size": len(data)} for data in layers],
        }
        body = json.dumps(manifest).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.manifests[digest] = body
        return digest, manifest

    async def handle(self, request: httpx.Request) -> httpx.Response:
        kind, _, reference = request.url.path.rpartition("/")
        if kind.endswith("/blobs"):
            self.blob_reads.append(reference)
            if self.gate is not None:
                await self.gate.wait()
            if reference in self.blobs:
                return httpx.Response(200, content=self.blobs[reference])
        elif kind.endswith("/manifests") and reference in self.manifests:
            return httpx.Response(200, content=self.manifests[reference])
        return httpx.Response(404)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle),
                                 base_url="http://registry.test")


def _target(digest: str) -> ScanTarget:
    return ScanTarget("library/app", digest, ("1.0",))


async def test_a_child_inherits_its_base_and_shared_layers_are_read_once(
        advisories: AdvisoryDatabase) -> None:
    registry = FakeRegistry()
    os_layer = layer({f"{PACKAGE_DIR}/os.txt": "openssl 3.0.11\nlibxml2 2.9.14\n"})
    app_layer = layer({f"{PACKAGE_DIR}/app.txt": "curl 8.1.0\n"})
    base, base_manifest = registry.image(os_layer)
    child, child_manifest = registry.image(os_layer, app_layer)
    scanner = PackageScanner(advisories)
    async with registry.client() as client:
        await scanner.inspect_manifest(client, "library/base", base, base_manifest)
        await scanner.inspect_manifest(client, "library/app", child, child_manifest)
        await scanner.inspect_manifest(client, "library/app", child, child_manifest)
    assert len(registry.blob_reads) == 2  # the OS layer once, the app layer once
    assert scanner.layers_fetched == 2
    base_result = scanner.scan(_target(base))
    child_result = scanner.scan(_target(child))
    assert dict(base_result.counts) == {"High": 1, "Medium": 1, "Low": 1}
    assert dict(child_result.counts) == {"Critical": 1, "High": 1, "Medium": 1, "Low": 1}
    assert isinstance(child_result, DetailedScanResult)
    assert scanner.packages_of(child) == (Package("curl", "8.1.0"),
                                          Package("libxml2", "2.9.14"),
                                          Package("openssl", "3.0.11"))


async def test_an_image_index_is_read_through_its_children(
        advisories: AdvisoryDatabase) -> None:
    registry = FakeRegistry()
    child, _ = registry.image(layer({f"{PACKAGE_DIR}/os.txt": "openssl 3.0.12\n"}))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"digest": child, "platform": {"os": "linux",
                                                          "architecture": "amd64"}}]}
    scanner = PackageScanner(advisories)
    async with registry.client() as client:
        await scanner.inspect_manifest(client, "library/app", "sha256:" + "1" * 64, index)
    assert dict(scanner.scan(_target(child)).counts) == {"High": 1}


async def test_unreadable_images_fail_their_scan_instead_of_passing(
        advisories: AdvisoryDatabase) -> None:
    registry = FakeRegistry()
    corrupt, manifest = registry.image(b"not a layer at all")
    missing, missing_manifest = registry.image(layer({"a": "1"}))
    del registry.blobs[missing_manifest["layers"][0]["digest"]]
    tampered, tampered_manifest = registry.image(layer({"b": "2"}))
    registry.blobs[tampered_manifest["layers"][0]["digest"]] = layer({"x": "y"})
    scanner = PackageScanner(advisories)
    async with registry.client() as client:
        await scanner.inspect_manifest(client, "library/app", corrupt, manifest)
        await scanner.inspect_manifest(client, "library/app", missing, missing_manifest)
        await scanner.inspect_manifest(client, "library/app", tampered, tampered_manifest)
        await scanner.inspect_manifest(client, "library/app", "sha256:" + "2" * 64,
                                       {"schemaVersion": 1})
    with pytest.raises(ScanError, match="not a readable tar layer"):
        scanner.scan(_target(corrupt))
    with pytest.raises(ScanError, match="HTTP 404"):
        scanner.scan(_target(missing))
    with pytest.raises(ScanError, match="does not match its digest"):
        scanner.scan(_target(tampered))
    with pytest.raises(ScanError, match="no layers"):
        scanner.scan(_target("sha256:" + "2" * 64))
    with pytest.raises(ScanError, match="content not read"):
        scanner.scan(_target("sha256:" + "3" * 64))


async def test_a_server_error_is_left_for_the_next_refresh(
        advisories: AdvisoryDatabase) -> None:
    async def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    registry = FakeRegistry()
    digest, manifest = registry.image(layer({}))
    scanner = PackageScanner(advisories)
    async with httpx.AsyncClient(transport=httpx.MockTransport(broken),
                                 base_url="http://registry.test") as client:
        with pytest.raises(httpx.HTTPStatusError):
            await scanner.inspect_manifest(client, "library/app", digest, manifest)
    assert not scanner.knows(digest)


async def test_reading_a_layer_lets_other_work_run(advisories: AdvisoryDatabase) -> None:
    """The event loop is free while a blob downloads: another task finishes meanwhile."""
    registry = FakeRegistry()
    registry.gate = asyncio.Event()
    digest, manifest = registry.image(layer({f"{PACKAGE_DIR}/os.txt": "openssl 3.0.11\n"}))
    scanner = PackageScanner(advisories)
    async with registry.client() as client:
        reading = asyncio.create_task(
            scanner.inspect_manifest(client, "library/app", digest, manifest))
        other = asyncio.create_task(asyncio.sleep(0, result="served"))
        assert await other == "served"
        assert not reading.done()
        registry.gate.set()
        await reading
    assert dict(scanner.scan(_target(digest)).counts) == {"High": 1, "Medium": 1}


def test_the_simulator_reports_error_for_an_unreadable_image(
        advisories: AdvisoryDatabase) -> None:
    state = SimState(Fleet(), scanner=PackageScanner(advisories))
    artifact = state.push("library/app", "1.0", "sha256:" + "4" * 64)
    state.request_scan(artifact)
    assert state.finish_scans() == 1
    record = state.current_scan(artifact)
    assert record is not None
    assert (record.status, record.result) == ("Error", None)


def test_the_simulator_scans_what_the_scanner_remembered(
        advisories: AdvisoryDatabase) -> None:
    scanner = PackageScanner(advisories)
    scanner.remember("sha256:" + "5" * 64, [Package("openssl", "3.0.12")])
    state = SimState(Fleet(), scanner=scanner)
    artifact = state.push("library/app", "1.0", "sha256:" + "5" * 64)
    state.request_scan(artifact)
    state.finish_scans()
    record = state.current_scan(artifact)
    assert record is not None and record.result is not None
    assert (record.status, dict(record.result.counts)) == ("Success", {"High": 1})


# -- against a real registry (the lab's docker-registry) ----------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def real_registry(tmp_path: Path) -> Iterator[str]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not on PATH (apt-get install docker-registry)")
    port = _free_port()
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({
        "version": 0.1, "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"}}))
    process = subprocess.Popen(["docker-registry", "serve", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/v2/").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            pytest.fail("docker-registry did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def push_image(registry: str, repository: str, tag: str, layers: list[bytes]) -> str:
    """Push an image made of ``layers`` with the Distribution API; its manifest digest."""
    fake = FakeRegistry()
    _, manifest = fake.image(*layers)
    with httpx.Client(base_url=registry) as client:
        for digest, data in fake.blobs.items():
            start = client.post(f"/v2/{repository}/blobs/uploads/")
            location = start.headers["location"]
            sep = "&" if "?" in location else "?"
            done = client.put(f"{location}{sep}digest={digest}", content=data,
                              headers={"Content-Type": "application/octet-stream"})
            assert done.status_code == 201, done.text
        body = json.dumps(manifest).encode()
        put = client.put(f"/v2/{repository}/manifests/{tag}", content=body,
                         headers={"Content-Type": DOCKER_MANIFEST})
        assert put.status_code == 201, put.text
        return str(put.headers["docker-content-digest"])


@pytest.mark.lab
def test_a_rescan_of_a_patched_push_finds_fewer_findings(
        real_registry: str, advisories: AdvisoryDatabase) -> None:
    old = push_image(real_registry, "library/app", "1.0", [
        layer({f"{PACKAGE_DIR}/os.txt": "openssl 3.0.11\nlibxml2 2.9.14\n"})])
    options = SimOptions(registry_url=real_registry, registry_refresh=0.0,
                         scanner=PackageScanner(advisories), scan_delay=0.0,
                         session_cookie=False)
    with SimulatorServer(Fleet(), options) as sim, httpx.Client(
            base_url=sim.api_url, auth=("admin", "Harbor12345")) as client:
        artifact = "/projects/library/repositories/app/artifacts"

        def scanned(reference: str) -> dict[str, Any]:
            # The scan route does not refresh the mirror; a listing does (as careen's does).
            assert client.get(artifact).status_code == 200
            assert client.post(f"{artifact}/{reference}/scan").status_code == 202
            sim.state.finish_scans()
            body = client.get(f"{artifact}/{reference}",
                              params={"with_scan_overview": "true"}).json()
            overview: dict[str, Any] = next(iter(body["scan_overview"].values()))
            return overview

        before = scanned("1.0")
        assert before["summary"]["summary"] == {"High": 1, "Medium": 1, "Low": 1}
        new = push_image(real_registry, "library/app", "1.0", [
            layer({f"{PACKAGE_DIR}/os.txt": "openssl 3.0.13\nlibxml2 2.9.14\n"})])
        assert new != old
        after = scanned(new)
        assert after["summary"] == {"total": 1, "fixable": 0, "summary": {"Low": 1}}
        report = client.get(f"{artifact}/{new}/additions/vulnerabilities").json()
        (found,) = next(iter(report.values()))["vulnerabilities"]
        assert (found["id"], found["package"], found["version"]) == (
            "CVE-2099-0003", "libxml2", "2.9.14")
