"""A build's inputs and their fingerprint: what decides whether a rebuild can change anything.

Bashbrew keys every build on its inputs (git commit, directory, the image IDs of every FROM);
Careen does the same so that a night rebuilds only what can come out different:

* **the folder** — the git tree hash of the folder (``git rev-parse HEAD:./`` inside it) when
  the tree is a clean git checkout, else a SHA-256 over the folder's files in sorted order
  (path, kind, mode and content; symbolic links by their target);
* **the build args** — a SHA-256 of ``[build] build_args`` (never their values: an argument may
  hold a token);
* **every FROM** — the digest it resolves to now (a tree parent: the digest Harbor lists, or
  the one pushed earlier in this run; an external base: the registry's answer, see
  :mod:`careen.registries.resolve`). A FROM that cannot be resolved makes the inputs
  *unknown*: unknown inputs never hold an image.

The inputs travel on the image itself as labels (:data:`LABEL_INPUTS` and its parts), so any
agent reading Harbor's listing knows what an image was built from with no extra request.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from careen.reference import ImageReference
from careen.tree.discover import DockerfileTree

__all__ = [
    "LABEL_INPUTS",
    "LABEL_INPUTS_ARGS",
    "LABEL_INPUTS_FOLDER",
    "LABEL_INPUTS_FROM",
    "UNKNOWN",
    "BaseDigests",
    "BuildInputs",
    "InputsCalculator",
    "args_fingerprint",
    "folder_fingerprint",
]

#: The fingerprint of all inputs (``sha256:...``), or :data:`UNKNOWN`.
LABEL_INPUTS = "careen.inputs"
#: The folder's part: ``git:<tree hash>`` or ``sha256:<content hash>``.
LABEL_INPUTS_FOLDER = "careen.inputs.folder"
#: The build args' part: ``sha256:<hash>``.
LABEL_INPUTS_ARGS = "careen.inputs.args"
#: Every FROM with the digest it resolved to: ``REF@DIGEST`` separated by spaces, in
#: Dockerfile order (``REF@unknown`` when it could not be resolved).
LABEL_INPUTS_FROM = "careen.inputs.from"
UNKNOWN = "unknown"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _short(digest: str | None) -> str:
    if digest is None:
        return UNKNOWN
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}" if value else digest[:19]


@dataclass(frozen=True, slots=True)
class BuildInputs:
    """What one build of an image reads. ``bases`` are its FROMs as
    ``(reference, digest)``; a digest of ``None`` is a FROM that could not be resolved."""

    folder: str
    args: str
    bases: tuple[tuple[str, str | None], ...] = ()

    @property
    def known(self) -> bool:
        return self.folder != UNKNOWN and all(digest is not None for _, digest in self.bases)

    @property
    def fingerprint(self) -> str:
        """One hash of every part, or :data:`UNKNOWN` when a part is unknown."""
        if not self.known:
            return UNKNOWN
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return _sha256(canonical.encode())

    @property
    def unknown_bases(self) -> tuple[str, ...]:
        return tuple(reference for reference, digest in self.bases if digest is None)

    def labels(self) -> dict[str, str]:
        return {
            LABEL_INPUTS: self.fingerprint,
            LABEL_INPUTS_FOLDER: self.folder,
            LABEL_INPUTS_ARGS: self.args,
            LABEL_INPUTS_FROM: " ".join(f"{ref}@{digest or UNKNOWN}"
                                        for ref, digest in self.bases),
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str] | None) -> BuildInputs | None:
        """The inputs an image's labels record; ``None`` when it carries none (not built by
        this version of Careen)."""
        if not labels or LABEL_INPUTS_FOLDER not in labels or LABEL_INPUTS_ARGS not in labels:
            return None
        bases: list[tuple[str, str | None]] = []
        for word in labels.get(LABEL_INPUTS_FROM, "").split():
            reference, _, digest = word.rpartition("@")
            if not reference:
                return None  # damaged: not ours to trust
            bases.append((reference, None if digest == UNKNOWN else digest))
        return cls(labels[LABEL_INPUTS_FOLDER], labels[LABEL_INPUTS_ARGS], tuple(bases))

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "args": self.args,
                "from": [[reference, digest] for reference, digest in self.bases]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildInputs:
        return cls(str(data["folder"]), str(data["args"]),
                   tuple((str(ref), None if digest is None else str(digest))
                         for ref, digest in data.get("from", ())))

    def changes_since(self, before: BuildInputs, *, folder: str = "the folder") -> list[str]:
        """What differs from ``before``, one phrase per input a person recognises: ``folder
        base/1.0 changed (git:1a2b3c -> git:4d5e6f)``, ``build args changed``, ``base
        docker.io/library/alpine:3.20 republished (sha256:aaa -> sha256:bbb)``."""
        changes: list[str] = []
        if self.folder != before.folder:
            changes.append(f"{folder} changed ({_short_part(before.folder)} -> "
                           f"{_short_part(self.folder)})")
        if self.args != before.args:
            changes.append("build args changed")
        old = dict(before.bases)
        new = dict(self.bases)
        for reference, digest in self.bases:
            if reference not in old:
                continue
            if digest is None:
                changes.append(f"base {reference} cannot be resolved now")
            elif old[reference] != digest:
                changes.append(f"base {reference} republished ({_short(old[reference])} -> "
                               f"{_short(digest)})")
        added = [ref for ref, _ in self.bases if ref not in old]
        removed = [ref for ref, _ in before.bases if ref not in new]
        if added or removed:
            changes.append("FROM lines changed (" + ", ".join(
                [f"now {ref}" for ref in added] + [f"no more {ref}" for ref in removed]) + ")")
        return changes


def _short_part(part: str) -> str:
    kind, _, value = part.partition(":")
    return f"{kind}:{value[:12]}" if value else part


# -- the folder ----------------------------------------------------------------------------


def folder_fingerprint(folder: Path, *, use_git: bool) -> str:
    """``git:<tree hash>`` of ``folder`` in HEAD when ``use_git`` (the tree is a clean git
    checkout), else ``sha256:<hash>`` of its files. :data:`UNKNOWN` when it cannot be read."""
    if use_git:
        tree_hash = _git_tree(folder)
        if tree_hash is not None:
            return f"git:{tree_hash}"
    try:
        return content_fingerprint(folder)
    except OSError:
        return UNKNOWN


def _git_tree(folder: Path) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--verify", "-q",
                               "HEAD:./"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = done.stdout.strip()
    return value if done.returncode == 0 and value else None


def content_fingerprint(folder: Path) -> str:
    """A SHA-256 over every file under ``folder`` in sorted order: its path, whether it is
    executable, and its content (a symbolic link: its target; ``.git`` is left out)."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    entries: list[tuple[str, str, Path]] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if d != ".git"]
        base = Path(top)
        for name in (*files, *(d for d in dirs if (base / d).is_symlink())):
            path = base / name
            entries.append((path.relative_to(folder).as_posix(), name, path))
    digest = hashlib.sha256()
    for relative, _, path in sorted(entries):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            head = f"L {relative} {os.readlink(path)}\n"
            digest.update(head.encode("utf-8", "surrogateescape"))
            continue
        executable = "x" if info.st_mode & stat.S_IXUSR else "-"
        digest.update(f"F {relative} {executable} {info.st_size}\n".encode(
            "utf-8", "surrogateescape"))
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 16), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def args_fingerprint(build_args: Mapping[str, str]) -> str:
    """A hash of the build args (their values never leave this function)."""
    canonical = json.dumps(dict(build_args), sort_keys=True, separators=(",", ":"))
    return _sha256(canonical.encode())


# -- every FROM ------------------------------------------------------------------------------


class BaseDigests(Protocol):
    """Resolves FROM references to the digest their tag names now (``None``: unknown)."""

    async def resolve_many(
        self, references: Iterable[ImageReference],
    ) -> Mapping[ImageReference, str | None]: ...


@dataclass
class InputsCalculator:
    """The inputs of the tree's images, now. Call :meth:`prepare` (async: it asks registries
    for the external bases' digests) before :meth:`inputs`.

    ``known`` gives the digests Harbor lists for tree images (no request needed for a tree
    parent); ``registry`` is the push registry, where a tree parent Harbor did not list is
    looked up; ``pushed`` (per call) the digests pushed earlier in this run."""

    tree: DockerfileTree
    build_args: Mapping[str, str]
    use_git: bool
    known: Mapping[ImageReference, str] = field(default_factory=dict)
    registry: str | None = None
    _resolved: dict[ImageReference, str | None] = field(default_factory=dict, repr=False)
    _folders: dict[ImageReference, str] = field(default_factory=dict, repr=False)

    def _bases(self, key: ImageReference) -> list[tuple[str, ImageReference | None,
                                                        ImageReference | None]]:
        """Each FROM of ``key`` as ``(shown, tree parent key, external reference)``."""
        item = self.tree.images[key]
        bases: list[tuple[str, ImageReference | None, ImageReference | None]] = []
        for parent in item.parents:
            tree_key = self.tree.resolve_parent(parent)
            if tree_key is not None and tree_key != key:
                bases.append((tree_key.short, tree_key, None))
                continue
            external = parent.normalized()
            if external.registry is None:
                # A name of this tree's project that no folder builds lives on the push
                # registry; any other registry-less name is Docker Hub's.
                home = self.registry if self.tree.missing_parent(parent) else None
                external = external.with_registry(home or "docker.io")
            bases.append((str(external), None, external))
        bases.extend((text, None, None) for text in item.unresolved)
        return bases

    def _lookup(self, key: ImageReference) -> ImageReference | None:
        if self.registry is None:
            return None
        return key.with_registry(self.registry)

    async def prepare(self, keys: Iterable[ImageReference], source: BaseDigests | None) -> None:
        """Resolve, once, every FROM of ``keys`` that needs a registry's answer."""
        wanted: set[ImageReference] = set()
        for key in keys:
            if key not in self.tree.images:
                continue
            for _, tree_key, external in self._bases(key):
                if external is not None and external.digest is None:
                    wanted.add(external)
                elif tree_key is not None and tree_key not in self.known:
                    lookup = self._lookup(tree_key)
                    if lookup is not None:
                        wanted.add(lookup)
        wanted -= set(self._resolved)
        if not wanted:
            return
        answers = await source.resolve_many(sorted(wanted, key=str)) if source else {}
        for reference in wanted:
            self._resolved[reference] = answers.get(reference)

    def folder(self, key: ImageReference) -> str:
        if key not in self._folders:
            self._folders[key] = folder_fingerprint(self.tree.images[key].folder,
                                                    use_git=self.use_git)
        return self._folders[key]

    def inputs(self, key: ImageReference,
               pushed: Mapping[ImageReference, str] | None = None) -> BuildInputs:
        """The inputs of the tree image ``key`` as they are now (``pushed``: tree parents
        rebuilt earlier in this run, by key)."""
        pushed = pushed or {}
        bases: list[tuple[str, str | None]] = []
        for shown, tree_key, external in self._bases(key):
            if tree_key is not None:
                lookup = self._lookup(tree_key)
                digest = pushed.get(tree_key) or self.known.get(tree_key) or (
                    self._resolved.get(lookup) if lookup is not None else None)
            elif external is not None:
                digest = external.digest or self._resolved.get(external.without_digest())
            else:
                digest = None  # an unresolved FROM (a build arg with no value)
            bases.append((shown, digest))
        return BuildInputs(self.folder(key), args_fingerprint(self.build_args), tuple(bases))
