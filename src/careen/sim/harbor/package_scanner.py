"""An honest scanner for the simulator: what it reports comes from what the image contains.

Harbor's scanner (Trivy) reads the package databases inside an image's layers and matches them
against vulnerability advisories. This one does the same on a small scale, so a rebuilt image
really has fewer findings only when its content changed:

* **Packages.** Each layer of an image may add package-list files under
  :data:`PACKAGE_DIR` (``usr/share/careen-demo/packages/<name>.txt``), each line
  ``name version`` (blank lines and ``#`` comments allowed). An image's packages are those of
  every list present in its final file system: a child image inherits its base's lists, a
  later layer replacing a file replaces its list, and OCI whiteouts are honoured (a
  ``.wh.<name>`` entry deletes ``<name>`` from the layers below, ``.wh..wh..opq`` empties its
  folder), as the container's file system would show it.
* **Advisories.** A TOML (or YAML) file of ``[[advisory]]`` entries: ``id``, ``package``,
  ``severity`` (critical, high, medium, low, unknown), ``fixed_version`` (absent: no fix yet),
  optional ``introduced`` (first affected version) and ``description``. A package is affected
  when ``introduced <= version < fixed_version``, versions compared as dpkg compares them.
* **Counts.** One finding per affected (package, advisory); a finding is fixable when the
  advisory has a fixed version. The result is a
  :class:`~careen.sim.harbor.scanner.DetailedScanResult`, so the summary and the
  vulnerability list come from the same findings.

Reading the layers is I/O and happens in the registry mirror's asynchronous refresh
(:meth:`PackageScanner.inspect_manifest`, awaited on the event loop with ``httpx``); unpacking
a layer (gzip, tar) runs in a worker thread (``asyncio.to_thread``), so other requests are
served meanwhile. Layers are cached by digest: a base layer shared by the whole fleet is read
once. :meth:`PackageScanner.scan` then only looks up what was read; an image never read (or
unreadable) raises :class:`~careen.sim.harbor.scanner.ScanError`, and its scan ends in
``Error``, never in a made-up result.

Layer content is untrusted: nothing is extracted to disk, only regular files under
:data:`PACKAGE_DIR` up to :data:`MAX_LIST_BYTES` are read, a layer blob is downloaded up to
:data:`MAX_LAYER_BYTES` and its digest is checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import posixpath
import tarfile
import threading
import tomllib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from careen.errors import InputFileError
from careen.sim.harbor.fleet import ScannerSpec, ScanResult
from careen.sim.harbor.registry import MANIFEST_ACCEPT
from careen.sim.harbor.scanner import DetailedScanResult, Finding, ScanError, ScanTarget

#: Where images keep their package lists (a path inside the image, no leading slash).
PACKAGE_DIR = "usr/share/careen-demo/packages"
#: A layer blob larger than this is not read (the scan of its images ends in Error).
MAX_LAYER_BYTES = 256 * 1024 * 1024
#: A package-list file larger than this is refused.
MAX_LIST_BYTES = 1024 * 1024
#: What the simulator says scanned the artifacts.
PACKAGE_SCANNER_INFO = ScannerSpec(name="Trivy", vendor="Aqua Security",
                                   version="v0.50.1+careen-packages")

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_SEVERITY_WORDS: Mapping[str, str] = {
    "critical": "Critical", "high": "High", "medium": "Medium", "low": "Low",
    "unknown": "Unknown",
}


# -- packages -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, order=True)
class Package:
    name: str
    version: str


class PackageListError(ValueError):
    """A package-list file does not follow ``name version`` lines."""


def parse_package_list(text: str, *, source: str = "<package list>") -> tuple[Package, ...]:
    """The packages of one list file: ``name version`` per line; blank lines and lines
    starting with ``#`` are skipped. Raises :class:`PackageListError` naming the line."""
    packages: list[Package] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if len(words) != 2:
            raise PackageListError(
                f"{source}:{number}: expected 'name version', got {len(words)} words")
        packages.append(Package(words[0], words[1]))
    return tuple(packages)


def render_package_list(packages: Iterable[Package]) -> str:
    """The text :func:`parse_package_list` reads back as ``packages``."""
    return "".join(f"{p.name} {p.version}\n" for p in packages)


# -- versions (dpkg's ordering) --------------------------------------------------------------

def compare_versions(left: str, right: str) -> int:
    """-1, 0 or 1 as ``left`` sorts before, with or after ``right`` in Debian's ordering:
    ``[epoch:]upstream[-revision]``; digits compare as numbers, letters before other
    characters, and ``~`` before anything, even the end (``1.0~rc1 < 1.0``)."""
    left_epoch, left_upstream, left_revision = _split_version(left)
    right_epoch, right_upstream, right_revision = _split_version(right)
    if left_epoch != right_epoch:
        return -1 if left_epoch < right_epoch else 1
    return (_compare_part(left_upstream, right_upstream)
            or _compare_part(left_revision, right_revision))


def _split_version(version: str) -> tuple[int, str, str]:
    epoch = 0
    head, colon, rest = version.partition(":")
    if colon and head.isdigit():
        epoch, version = int(head), rest
    upstream, dash, revision = version.rpartition("-")
    if not dash:
        upstream, revision = version, ""
    return epoch, upstream, revision


def _order(char: str) -> int:
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(left: str, right: str) -> int:
    i = j = 0
    while i < len(left) or j < len(right):
        # The non-digit run, character by character (end of string counts as 0).
        while (i < len(left) and not left[i].isdigit()) or (j < len(right)
                                                            and not right[j].isdigit()):
            a = _order(left[i]) if i < len(left) and not left[i].isdigit() else 0
            b = _order(right[j]) if j < len(right) and not right[j].isdigit() else 0
            if a != b:
                return -1 if a < b else 1
            i += 1
            j += 1
        start_i, start_j = i, j
        while i < len(left) and left[i].isdigit():
            i += 1
        while j < len(right) and right[j].isdigit():
            j += 1
        a_num = int(left[start_i:i] or "0")
        b_num = int(right[start_j:j] or "0")
        if a_num != b_num:
            return -1 if a_num < b_num else 1
    return 0


# -- advisories -----------------------------------------------------------------------------

class _AdvisoryModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    package: str = Field(min_length=1, pattern=r"^\S+$")
    severity: Literal["critical", "high", "medium", "low", "unknown"]
    fixed_version: str | None = Field(default=None, min_length=1, pattern=r"^\S+$")
    introduced: str | None = Field(default=None, min_length=1, pattern=r"^\S+$")
    description: str = ""
    links: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Advisory:
    """One vulnerability of one package. ``severity`` is Harbor's word (``High``)."""

    id: str
    package: str
    severity: str
    fixed_version: str | None = None
    introduced: str | None = None
    description: str = ""
    links: tuple[str, ...] = ()

    def affects(self, version: str) -> bool:
        if self.introduced is not None and compare_versions(version, self.introduced) < 0:
            return False
        return self.fixed_version is None or compare_versions(version, self.fixed_version) < 0


@dataclass(frozen=True)
class AdvisoryDatabase:
    """The advisories a :class:`PackageScanner` matches packages against."""

    advisories: tuple[Advisory, ...]
    source: str = "<advisories>"
    _by_package: Mapping[str, tuple[Advisory, ...]] = field(
        default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[Advisory]] = {}
        for advisory in self.advisories:
            index.setdefault(advisory.package, []).append(advisory)
        object.__setattr__(self, "_by_package", {k: tuple(v) for k, v in index.items()})

    @classmethod
    def from_file(cls, path: Path | str) -> AdvisoryDatabase:
        """Read a ``.toml`` (or ``.yaml``/``.yml``) advisory file. Raises
        :class:`~careen.errors.InputFileError` naming the file and the bad entry."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise InputFileError(str(path), f"cannot read the advisory file: {reason}") from None
        return cls.from_text(text, source=str(path),
                             yaml_format=path.suffix.lower() in (".yaml", ".yml"))

    @classmethod
    def from_text(cls, text: str, *, source: str = "<advisories>",
                  yaml_format: bool = False) -> AdvisoryDatabase:
        try:
            data: object = yaml.safe_load(text) if yaml_format else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
            raise InputFileError(source, f"not valid {'YAML' if yaml_format else 'TOML'}: "
                                         f"{str(error).splitlines()[0]}") from None
        return cls.from_mapping(data, source=source)

    @classmethod
    def from_mapping(cls, data: object, *, source: str = "<advisories>") -> AdvisoryDatabase:
        if data is None:
            data = {}
        if not isinstance(data, Mapping) or set(data) - {"advisory"}:
            raise InputFileError(source, "expected only a list of [[advisory]] entries "
                                         "(id, package, severity, fixed_version, description)")
        entries = data.get("advisory", [])
        if not isinstance(entries, list):
            raise InputFileError(source, "'advisory' must be a list of entries ([[advisory]])")
        advisories: list[Advisory] = []
        for number, entry in enumerate(entries, start=1):
            try:
                model = _AdvisoryModel.model_validate(entry)
            except ValidationError as error:
                first = error.errors(include_url=False)[0]
                where = ".".join(str(part) for part in first["loc"]) or "entry"
                named = (f" ({entry.get('id')})" if isinstance(entry, Mapping)
                         and isinstance(entry.get("id"), str) else "")
                raise InputFileError(source, f"advisory {number}{named}: {where}: "
                                             f"{first['msg']}") from None
            advisories.append(Advisory(
                model.id, model.package, _SEVERITY_WORDS[model.severity], model.fixed_version,
                model.introduced, model.description, model.links))
        return cls(tuple(advisories), source)

    def match(self, packages: Iterable[Package]) -> tuple[Finding, ...]:
        """Every (package, advisory) pair where the advisory affects the installed version."""
        found: list[Finding] = []
        for package in packages:
            for advisory in self._by_package.get(package.name, ()):
                if advisory.affects(package.version):
                    found.append(Finding(
                        id=advisory.id, package=package.name, version=package.version,
                        severity=advisory.severity, fix_version=advisory.fixed_version or "",
                        description=advisory.description, links=advisory.links))
        return tuple(found)

    def scan(self, packages: Sequence[Package]) -> DetailedScanResult:
        """The scan result for an image holding ``packages``."""
        return DetailedScanResult.from_findings(self.match(packages), packages=len(packages))


# -- layers ---------------------------------------------------------------------------------

class LayerError(ValueError):
    """A layer blob that cannot be read (not a tar, a bad list file, too large)."""


@dataclass(frozen=True, slots=True)
class LayerContents:
    """What one layer contributes to the package lists: list files it adds (path -> its
    packages), paths it deletes (whiteouts) and folders it makes opaque."""

    files: Mapping[str, tuple[Package, ...]] = field(default_factory=dict)
    whiteouts: tuple[str, ...] = ()
    opaque: tuple[str, ...] = ()


EMPTY_LAYER = LayerContents()


def read_layer(blob: bytes, package_dir: str = PACKAGE_DIR) -> LayerContents:
    """The package lists and whiteouts of one layer blob (a tar, gzip-compressed or not).
    Raises :class:`LayerError`."""
    root = package_dir.strip("/")
    files: dict[str, tuple[Package, ...]] = {}
    whiteouts: list[str] = []
    opaque: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as archive:
            for member in archive:
                name = posixpath.normpath(member.name.lstrip("/"))
                if name == ".":
                    continue
                folder, base = posixpath.split(name)
                if base == _OPAQUE:
                    if _related(folder, root):
                        opaque.append(folder)
                    continue
                if base.startswith(_WHITEOUT):
                    target = posixpath.join(folder, base[len(_WHITEOUT):])
                    if _related(target, root):
                        whiteouts.append(target)
                    continue
                if not member.isfile() or not _within(name, root):
                    continue
                if member.size > MAX_LIST_BYTES:
                    raise LayerError(f"{name}: package list larger than {MAX_LIST_BYTES} bytes")
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                text = handle.read().decode("utf-8", errors="replace")
                try:
                    files[name] = parse_package_list(text, source=name)
                except PackageListError as error:
                    raise LayerError(str(error)) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise LayerError(f"not a readable tar layer: {error}") from None
    return LayerContents(files, tuple(whiteouts), tuple(opaque))


def _within(path: str, folder: str) -> bool:
    return path.startswith(folder + "/") if folder else True


def _related(path: str, root: str) -> bool:
    """Whether deleting ``path`` can touch a list under ``root`` (an ancestor, or inside)."""
    return path == root or _within(root, path) or _within(path, root)


def merge_layers(layers: Iterable[LayerContents]) -> tuple[Package, ...]:
    """The packages the image made of ``layers`` (lowest first) holds, as its file system
    shows them: sorted, without duplicates."""
    files: dict[str, tuple[Package, ...]] = {}
    for layer in layers:
        for folder in layer.opaque:
            files = {p: v for p, v in files.items() if not _within(p, folder)}
        for target in layer.whiteouts:
            files = {p: v for p, v in files.items() if p != target and not _within(p, target)}
        files.update(layer.files)
    return tuple(sorted({package for packages in files.values() for package in packages}))


# -- the scanner ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Unreadable:
    reason: str


class PackageScanner:
    """A :class:`~careen.sim.harbor.scanner.Scanner` and
    :class:`~careen.sim.harbor.scanner.ContentScanner` reading package lists from layers.

    Give it to the simulator with a registry to read from::

        SimOptions(registry_url=..., registry_auth=..., scanner=PackageScanner(advisories))
    """

    def __init__(self, advisories: AdvisoryDatabase, info: ScannerSpec = PACKAGE_SCANNER_INFO,
                 *, package_dir: str = PACKAGE_DIR) -> None:
        self.info = info
        self.advisories = advisories
        self.package_dir = package_dir.strip("/")
        self._lock = threading.Lock()
        self._layers: dict[str, LayerContents] = {}
        self._images: dict[str, tuple[Package, ...] | _Unreadable] = {}
        self._results: dict[str, DetailedScanResult] = {}
        #: Layer blobs downloaded (a shared base layer counts once).
        self.layers_fetched = 0

    # -- what was read -------------------------------------------------------------------

    def remember(self, digest: str, packages: Iterable[Package]) -> None:
        """Record what ``digest`` contains without reading a registry (tests, fleet files)."""
        with self._lock:
            self._images[digest] = tuple(sorted(set(packages)))
            self._results.pop(digest, None)

    def packages_of(self, digest: str) -> tuple[Package, ...] | None:
        """The packages read for ``digest``; ``None`` if it was not read or is unreadable."""
        with self._lock:
            known = self._images.get(digest)
        return known if isinstance(known, tuple) else None

    def knows(self, digest: str) -> bool:
        with self._lock:
            return digest in self._images

    # -- Scanner ---------------------------------------------------------------------------

    def scan(self, target: ScanTarget) -> ScanResult:
        with self._lock:
            cached = self._results.get(target.digest)
            if cached is not None:
                return cached
            known = self._images.get(target.digest)
        if known is None:
            raise ScanError(f"{target.repository}@{target.digest}: content not read from the "
                            "registry")
        if isinstance(known, _Unreadable):
            raise ScanError(f"{target.repository}@{target.digest}: {known.reason}")
        result = self.advisories.scan(known)
        with self._lock:
            self._results[target.digest] = result
        return result

    # -- ContentScanner --------------------------------------------------------------------

    async def inspect_manifest(self, client: httpx.AsyncClient, repository: str, digest: str,
                               manifest: Mapping[str, Any]) -> None:
        if self.knows(digest):
            return
        children = manifest.get("manifests")
        if isinstance(children, list):
            # An index is scanned through its children (the simulator sums them).
            for entry in children:
                child = entry.get("digest") if isinstance(entry, Mapping) else None
                if isinstance(child, str) and not self.knows(child):
                    await self._inspect_child(client, repository, child)
            return
        layers = manifest.get("layers")
        if not isinstance(layers, list):
            self._unreadable(digest, "the manifest lists no layers (schema 1 is not supported)")
            return
        contents: list[LayerContents] = []
        for layer in layers:
            layer_digest = layer.get("digest") if isinstance(layer, Mapping) else None
            if not isinstance(layer_digest, str) or not layer_digest.startswith("sha256:"):
                self._unreadable(digest, "a layer without a sha256 digest")
                return
            try:
                contents.append(await self._layer(client, repository, layer_digest))
            except LayerError as error:
                self._unreadable(digest, f"layer {layer_digest[:19]}: {error}")
                return
        with self._lock:
            self._images[digest] = merge_layers(contents)
            self._results.pop(digest, None)

    async def _inspect_child(self, client: httpx.AsyncClient, repository: str,
                             digest: str) -> None:
        response = await client.get(f"/v2/{repository}/manifests/{digest}",
                                    headers={"Accept": MANIFEST_ACCEPT})
        if 400 <= response.status_code < 500:
            self._unreadable(digest, f"manifest not readable (HTTP {response.status_code})")
            return
        response.raise_for_status()
        try:
            body = json.loads(response.content)
        except ValueError:
            self._unreadable(digest, "the manifest is not JSON")
            return
        if isinstance(body, Mapping):
            await self.inspect_manifest(client, repository, digest, body)

    async def _layer(self, client: httpx.AsyncClient, repository: str,
                     digest: str) -> LayerContents:
        with self._lock:
            cached = self._layers.get(digest)
        if cached is not None:
            return cached
        blob = bytearray()
        async with client.stream("GET", f"/v2/{repository}/blobs/{digest}",
                                 follow_redirects=True) as response:
            if 400 <= response.status_code < 500:
                raise LayerError(f"blob not readable (HTTP {response.status_code})")
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                blob += chunk
                if len(blob) > MAX_LAYER_BYTES:
                    raise LayerError(f"larger than {MAX_LAYER_BYTES} bytes")
        contents = await asyncio.to_thread(_checked_layer, bytes(blob), digest,
                                           self.package_dir)
        with self._lock:
            self._layers[digest] = contents
            self.layers_fetched += 1
        return contents

    def _unreadable(self, digest: str, reason: str) -> None:
        with self._lock:
            self._images[digest] = _Unreadable(reason)
            self._results.pop(digest, None)


def _checked_layer(blob: bytes, digest: str, package_dir: str) -> LayerContents:
    if "sha256:" + hashlib.sha256(blob).hexdigest() != digest:
        raise LayerError("content does not match its digest")
    return read_layer(blob, package_dir)


def package_scanner_from_file(path: Path | str) -> PackageScanner:
    """A :class:`PackageScanner` matching against the advisory file at ``path`` (what
    ``careen sim harbor --advisories FILE`` gives the simulator)."""
    return PackageScanner(AdvisoryDatabase.from_file(path))
