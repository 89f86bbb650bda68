"""From a folder of Dockerfiles to the images it builds.

The rule (``layout``, config ``[tree] layout``):

``app/version`` (the seed's layout)
    ``APP/VERSION/Dockerfile`` builds ``<project>/APP:VERSION``; ``<project>`` comes from the
    config (``[tree] project``, default ``library``). Deeper folders keep the same meaning,
    the last folder is the tag and the others are the repository below ``<project>``:
    ``team/app/1.0`` builds ``<project>/team/app:1.0``.
``project/app/version`` (the public script's layout)
    ``PROJECT/APP/VERSION/Dockerfile`` builds ``PROJECT/APP:VERSION``; deeper folders are
    Harbor's nested repositories: ``proj/team/app/1.0`` builds ``proj/team/app:1.0``. The first
    folder is the project and the last one the tag, so a folder needs a depth of at least 3.
``auto`` (default)
    A folder two deep is read as ``app/version``; three or more deep as
    ``project/app/version``. When both readings give a folder for the same image (say
    ``jre/8u191`` and ``library/jre/8u191`` with project ``library``), the
    ``project/app/version`` folder wins and the other one is reported as a problem.

A folder named ``latest`` builds the tag ``latest`` (an image without a tag). The config's
``mapping`` (image ``project/app:tag`` -> folder relative to the root) comes before any
layout: a mapped image is built from its mapped folder only, and a mapped folder builds only
the images mapped to it.

What is walked, and what is refused:

* A folder holding a ``Dockerfile`` (or, failing that, a ``Containerfile``) is an image
  folder; the walk does not go below it (what is inside is its build context). A Dockerfile
  at the root itself, or one folder deep, builds no image unless the mapping names it.
* Folders named in ``ignore`` (``.git``... by default) and every folder whose name starts with
  ``.`` are skipped: no image name can start with a dot.
* Folders whose names do not make a valid image reference (upper case, spaces...) are
  reported in :attr:`DockerfileTree.problems`, never mapped.
* Symbolic links are followed only while they stay inside the root (``latest -> 5.7.18`` is
  fine); one leading outside, or back into a folder being walked, is reported and skipped.

Each image's Dockerfile is parsed (:mod:`careen.tree.dockerfile`) for its parents. A parent is
a *tree* parent when it names an image of the tree: without a registry host, with Docker
Hub's host (``docker.io/acme/jre`` is ``acme/jre``), or with the host given as ``registry``
(the Harbor host, ``registry.abc.com/library/jre:8u191``). A parent on any other host is
external. A parent pinned only by digest is external too (a rebuild cannot change it).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Literal

from careen.errors import ConfigError, InputFileError, InvalidReferenceError
from careen.reference import ImageReference
from careen.tree.dockerfile import read_dockerfile

DEFAULT_PROJECT = "library"
#: Folder names never walked, wherever they are (besides any name starting with a dot).
DEFAULT_IGNORE = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__"})
#: File names of a build's instructions, in order of preference.
DOCKERFILE_NAMES = ("Dockerfile", "Containerfile")
#: Deeper than any sensible tree; a guard against symbolic-link mazes.
MAX_DEPTH = 16

#: What produced a tree image: a layout, or the config's mapping.
ImageSource = Literal["app/version", "project/app/version", "mapping"]


class Layout(StrEnum):
    AUTO = "auto"
    APP_VERSION = "app/version"
    PROJECT_APP_VERSION = "project/app/version"


@dataclass(frozen=True, slots=True)
class TreeProblem:
    """Something in the tree that builds no image, or not the expected one. ``path`` is
    relative to the tree's root."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path.as_posix()}: {self.message}"


@dataclass(frozen=True, slots=True)
class TreeImage:
    """One image the tree builds.

    ``reference`` is registry-less with a tag (``library/jre:8u191``). ``folder`` (the build
    context) and ``dockerfile`` are absolute paths inside the root, as walked (a symbolic
    link inside the root is not replaced by its target). ``parents`` are all the images the
    Dockerfile reads (tree or external, as written); ``unresolved`` the ``FROM`` images that
    could not be resolved; ``platforms`` the ``--platform`` values of its ``FROM`` lines.
    """

    reference: ImageReference
    folder: Path
    dockerfile: Path
    parents: tuple[ImageReference, ...]
    platforms: tuple[str, ...]
    source: ImageSource
    unresolved: tuple[str, ...] = ()


@dataclass(frozen=True)
class DockerfileTree:
    """The images a Dockerfile tree builds, and what in it builds nothing (``problems``)."""

    root: Path
    images: Mapping[ImageReference, TreeImage]
    problems: tuple[TreeProblem, ...] = ()
    project: str = DEFAULT_PROJECT
    registry: str | None = None
    _by_folder: Mapping[Path, tuple[ImageReference, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def folder_for(self, image: ImageReference) -> TreeImage | None:
        """The tree image for ``image``, whatever registry host it carries (images listed by
        Harbor carry the Harbor host); ``None`` when the tree has no folder for it (the
        seed's "directory does not exist")."""
        key = image_key(image)
        return None if key is None else self.images.get(key)

    def resolve_parent(self, parent: ImageReference) -> ImageReference | None:
        """The tree image a ``FROM`` (or ``COPY --from``) names, or ``None`` if it is external:
        on another registry host, pinned by digest only, or not built by the tree."""
        normalized = parent.normalized()
        if normalized.registry is not None and (
            self.registry is None or normalized.registry.lower() != self.registry.lower()
        ):
            return None
        key = image_key(normalized)
        return key if key is not None and key in self.images else None

    def tree_parents(self, image: ImageReference) -> tuple[ImageReference, ...]:
        """The parents of ``image`` that the tree builds too (in Dockerfile order)."""
        found = self.folder_for(image)
        if found is None:
            return ()
        keys = (self.resolve_parent(parent) for parent in found.parents)
        return tuple(dict.fromkeys(key for key in keys if key is not None))

    def images_in(self, folder: Path) -> tuple[ImageReference, ...]:
        """The images built from ``folder`` (absolute, or relative to the root)."""
        path = folder if folder.is_absolute() else self.root / folder
        return self._by_folder.get(path, ())


def image_key(image: ImageReference) -> ImageReference | None:
    """The key of ``image`` in :attr:`DockerfileTree.images`: no registry host, no digest,
    Docker Hub's implicit ``library/`` made explicit. ``None`` for a digest-only reference."""
    if image.tag is None:
        return None
    normalized = image.normalized()
    return ImageReference(normalized.repository, normalized.tag)


# -- discovery ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    reference: ImageReference
    relative: PurePosixPath
    folder: Path
    dockerfile: Path
    source: ImageSource


_PRIORITY: Mapping[ImageSource, int] = {"mapping": 0, "project/app/version": 1, "app/version": 2}


def discover_tree(
    root: Path, *, project: str | None = DEFAULT_PROJECT, registry: str | None = None,
    mapping: Mapping[str, str] | None = None, build_args: Mapping[str, str] | None = None,
    layout: Layout | str = Layout.AUTO, ignore: Collection[str] = DEFAULT_IGNORE,
) -> DockerfileTree:
    """Walk ``root`` and return the images it builds (see the module docstring for the rule).

    ``project`` is the project of ``app/version`` folders (``None``: ``library``);
    ``registry`` the Harbor host (``registry.abc.com``) that ``FROM`` lines may name;
    ``mapping`` the config's image -> folder overrides; ``build_args`` the values ``ARG``\\ s
    take in ``FROM`` lines. Raises :class:`~careen.errors.UsageError` for a root that is not
    a folder and :class:`~careen.errors.ConfigError` for a bad setting; everything wrong
    *inside* the tree is a problem in the result, not an error.
    """
    project = _check_project(project if project is not None else DEFAULT_PROJECT)
    registry = _check_registry(registry)
    layout = _check_layout(layout)
    if not root.is_dir():
        raise InputFileError(
            str(root), "the Dockerfile tree is not a folder; give the folder that holds "
            "app/version/Dockerfile (config [tree] root)"
        )
    root = root.resolve()
    problems: list[TreeProblem] = []

    mapped = list(_mapped_candidates(root, mapping or {}, project, problems))
    mapped_folders = {candidate.relative for candidate in mapped}
    candidates = list(mapped)
    for relative, folder, dockerfile in _walk(root, ignore, mapped_folders, problems):
        if relative in mapped_folders:
            continue
        candidate = _layout_candidate(
            relative, folder, dockerfile, project=project, layout=layout, problems=problems
        )
        if candidate is not None:
            candidates.append(candidate)

    chosen: dict[ImageReference, _Candidate] = {}
    for candidate in sorted(candidates, key=lambda c: (_PRIORITY[c.source], str(c.relative))):
        winner = chosen.get(candidate.reference)
        if winner is None:
            chosen[candidate.reference] = candidate
            continue
        why = (
            "the config's mapping sends it to"
            if winner.source == "mapping"
            else f"the {winner.source} folder wins:"
        )
        problems.append(TreeProblem(
            Path(candidate.relative),
            f"not used for {candidate.reference.short}: {why} {winner.relative.as_posix()}",
        ))

    images: dict[ImageReference, TreeImage] = {}
    by_folder: dict[Path, list[ImageReference]] = {}
    for reference in sorted(chosen, key=_sort_key):
        candidate = chosen[reference]
        images[reference] = _tree_image(candidate, build_args or {}, problems)
        by_folder.setdefault(candidate.folder, []).append(reference)
    return DockerfileTree(
        root=root, images=MappingProxyType(images), problems=tuple(problems), project=project,
        registry=registry,
        _by_folder=MappingProxyType({k: tuple(v) for k, v in by_folder.items()}),
    )


def _sort_key(reference: ImageReference) -> tuple[str, str]:
    return reference.repository, reference.tag or ""


def _tree_image(
    candidate: _Candidate, build_args: Mapping[str, str], problems: list[TreeProblem]
) -> TreeImage:
    source = candidate.relative / candidate.dockerfile.name
    try:
        parsed = read_dockerfile(
            candidate.dockerfile, build_args=build_args, source=source.as_posix()
        )
    except InputFileError as error:
        # Keep the image (its folder exists, the build will say what is wrong), no parents.
        problems.append(TreeProblem(Path(source), error.message.partition(": ")[2]))
        return TreeImage(
            reference=candidate.reference, folder=candidate.folder,
            dockerfile=candidate.dockerfile, parents=(), platforms=(), source=candidate.source,
        )
    problems.extend(TreeProblem(Path(source), problem) for problem in parsed.problems)
    return TreeImage(
        reference=candidate.reference, folder=candidate.folder, dockerfile=candidate.dockerfile,
        parents=parsed.parents, platforms=parsed.platforms, source=candidate.source,
        unresolved=parsed.unresolved,
    )


def _layout_candidate(
    relative: PurePosixPath, folder: Path, dockerfile: Path, *, project: str, layout: Layout,
    problems: list[TreeProblem],
) -> _Candidate | None:
    parts = relative.parts
    depth = len(parts)
    source: ImageSource
    if depth < 2:
        problems.append(TreeProblem(
            Path(relative),
            "a Dockerfile here builds no image: put it in APP/VERSION/ (VERSION 'latest' for "
            "no tag) or map an image to this folder in the config ([tree] mapping)",
        ))
        return None
    if layout is Layout.APP_VERSION or (layout is Layout.AUTO and depth == 2):
        source, repository = "app/version", "/".join((project, *parts[:-1]))
    elif depth >= 3:
        source, repository = "project/app/version", "/".join(parts[:-1])
    else:
        problems.append(TreeProblem(
            Path(relative),
            "too shallow for the project/app/version layout: move it to PROJECT/APP/VERSION/ "
            "or set [tree] layout to app/version",
        ))
        return None
    try:
        reference = ImageReference(repository, parts[-1])
    except InvalidReferenceError as error:
        problems.append(TreeProblem(
            Path(relative),
            f"folder names do not make an image name ({error.reason}); rename the folder "
            "(lower-case a-z, 0-9 and '.', '_', '-' between them; tags also A-Z) or map it",
        ))
        return None
    return _Candidate(reference, relative, folder, dockerfile, source)


def _mapped_candidates(
    root: Path, mapping: Mapping[str, str], project: str, problems: list[TreeProblem]
) -> Iterator[_Candidate]:
    for image_text, folder_text in mapping.items():
        reference = _mapping_key(image_text, project)
        relative = PurePosixPath(folder_text.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts:
            raise ConfigError(
                f"the folder {folder_text!r} for {image_text} is not inside the tree: give a "
                "path relative to the tree root, without '..'", key="tree.mapping",
            )
        folder = root.joinpath(*relative.parts)
        try:
            real = folder.resolve(strict=True)
        except (OSError, RuntimeError):
            problems.append(TreeProblem(
                Path(relative), f"mapped to {reference.short} but the folder does not exist"
            ))
            continue
        if not real.is_relative_to(root) or not real.is_dir():
            problems.append(TreeProblem(
                Path(relative), f"mapped to {reference.short} but it is not a folder inside "
                "the tree (a symbolic link leading outside the root is refused)",
            ))
            continue
        dockerfile = _dockerfile_in(folder, root, relative, problems)
        if dockerfile is None:
            problems.append(TreeProblem(
                Path(relative), f"mapped to {reference.short} but holds no Dockerfile"
            ))
            continue
        yield _Candidate(reference, relative, folder, dockerfile, "mapping")


def _mapping_key(text: str, project: str) -> ImageReference:
    try:
        parsed = ImageReference.parse(text)
    except InvalidReferenceError as error:
        raise ConfigError(
            f"{text!r} is not an image name: {error.reason}", key="tree.mapping",
            hint="write mapping keys as project/app:tag",
        ) from None
    if parsed.tag is None:
        raise ConfigError(
            f"{text!r} names an image by digest only; map a tag (project/app:tag)",
            key="tree.mapping",
        )
    repository = parsed.repository if "/" in parsed.repository else (
        f"{project}/{parsed.repository}"
    )
    return ImageReference(repository, parsed.tag)


def _dockerfile_in(
    folder: Path, root: Path, relative: PurePosixPath, problems: list[TreeProblem]
) -> Path | None:
    """The Dockerfile in ``folder``, if there is one that stays inside the root."""
    for name in DOCKERFILE_NAMES:
        candidate = folder / name
        if not candidate.is_symlink() and not candidate.exists():
            continue
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            problems.append(TreeProblem(Path(relative, name), "a broken symbolic link"))
            continue
        if not real.is_relative_to(root):
            problems.append(TreeProblem(
                Path(relative, name), "a symbolic link leading outside the tree root; refused"
            ))
            continue
        if real.is_file():
            return candidate
    return None


def _walk(
    root: Path, ignore: Collection[str], mapped: Collection[PurePosixPath],
    problems: list[TreeProblem],
) -> Iterator[tuple[PurePosixPath, Path, Path]]:
    """Image folders under ``root``: (path relative to root, folder, Dockerfile), sorted."""
    # Each entry: the folder as walked, its path relative to root, the real folders above it
    # (to refuse a symbolic link back into one of them, which would loop).
    stack: list[tuple[Path, PurePosixPath, tuple[Path, ...]]] = [
        (root, PurePosixPath(), (root,))
    ]
    while stack:
        folder, relative, chain = stack.pop()
        if relative.parts:
            dockerfile = _dockerfile_in(folder, root, relative, problems)
            if dockerfile is not None:
                yield relative, folder, dockerfile
                continue
        elif relative not in mapped and _dockerfile_in(folder, root, relative, []) is not None:
            problems.append(TreeProblem(
                Path(), "the Dockerfile at the root builds no image; map an image to '.' in "
                "the config ([tree] mapping) to build it",
            ))
        if len(relative.parts) >= MAX_DEPTH:
            problems.append(TreeProblem(
                Path(relative), f"deeper than {MAX_DEPTH} folders; not walked further"
            ))
            continue
        subfolders: list[tuple[Path, PurePosixPath, tuple[Path, ...]]] = []
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            problems.append(TreeProblem(Path(relative), f"cannot list: {error.strerror}"))
            continue
        for entry in entries:
            if entry.name in ignore or entry.name.startswith("."):
                continue
            child = PurePosixPath(relative, entry.name)
            path = Path(entry.path)
            if entry.is_symlink():
                try:
                    real = path.resolve(strict=True)
                except (OSError, RuntimeError):
                    continue  # a broken link to nothing: no image folder either way
                if not real.is_dir():
                    continue
                if not real.is_relative_to(root):
                    problems.append(TreeProblem(
                        Path(child), "a symbolic link leading outside the tree root; refused"
                    ))
                    continue
                if real in chain:
                    problems.append(TreeProblem(
                        Path(child), "a symbolic link back into a folder above it; not followed"
                    ))
                    continue
            elif entry.is_dir(follow_symlinks=False):
                real = chain[-1] / entry.name
            else:
                continue
            subfolders.append((path, child, (*chain, real)))
        stack.extend(reversed(subfolders))


def _check_project(project: str) -> str:
    try:
        ImageReference(f"{project}/x", "latest")
    except InvalidReferenceError:
        raise ConfigError(
            f"{project!r} is not a valid Harbor project name (lower-case a-z, 0-9, '.', '_', "
            "'-')", key="tree.project",
        ) from None
    if "/" in project:
        raise ConfigError(f"{project!r}: a project name has no '/'", key="tree.project")
    return project


def _check_registry(registry: str | None) -> str | None:
    if registry is None:
        return None
    try:
        parsed = ImageReference.parse(f"{registry}/library/x")
    except InvalidReferenceError:
        parsed = None
    if parsed is None or parsed.registry != registry:
        raise ConfigError(
            f"{registry!r} is not a registry host", key="harbor.registry",
            hint="give the host (and port) only, without http:// or https://, "
            "e.g. registry.abc.com",
        )
    return registry


def _check_layout(layout: Layout | str) -> Layout:
    try:
        return Layout(layout)
    except ValueError:
        choices = ", ".join(item.value for item in Layout)
        raise ConfigError(
            f"unknown layout {layout!r}; choose one of {choices}", key="tree.layout"
        ) from None
