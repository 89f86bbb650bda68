"""From a folder of Dockerfiles to the images it builds — and every Dockerfile it does not.

Which folder builds which image is decided, for each folder holding a ``Dockerfile`` (or a
``Containerfile``), by the first of these that applies:

1. the config's ``mapping`` (``[tree.mapping]``: image -> folder, or image -> ``{ folder =
   ..., tags = [...] }``): a mapped image is built from its mapped folder only, and a mapped
   folder builds only the images mapped to it;
2. the config's rules (``[[tree.rule]]``, tried in order, the first match wins): ``path =
   "php/{version}/{variant}/{flavor}"`` (``{name}`` matches one folder and names it, ``*``
   any one folder, anything else itself) and ``image = "library/php:{version}-{flavor}"``
   with optional ``tags = ["{version}"]``;
3. the built-in layout (``layout``, config ``[tree] layout``):

   ``app/version`` (the seed's layout)
       ``APP/VERSION/Dockerfile`` builds ``<project>/APP:VERSION``; ``<project>`` comes from
       the config (``[tree] project``, default ``library``). Deeper folders keep the same
       meaning, the last folder is the tag and the others are the repository below
       ``<project>``: ``team/app/1.0`` builds ``<project>/team/app:1.0``.
   ``project/app/version`` (the public script's layout)
       ``PROJECT/APP/VERSION/Dockerfile`` builds ``PROJECT/APP:VERSION``; deeper folders are
       Harbor's nested repositories. A folder needs a depth of at least 3.
   ``auto`` (default)
       A folder two deep is read as ``app/version``; three deep as ``project/app/version``
       only when its first folder *is* the configured project (``library/jre/8u191``).
       ``auto`` never invents a project from a folder name: any other folder three or more
       deep (docker-library/php's ``8.2/bookworm/apache``) is listed as not mapped, with
       the fix (a rule, an explicit layout, or ``--root`` lower down).

Nothing is mapped silently. Every Dockerfile under the root is an image or is listed in
:attr:`DockerfileTree.unmapped` with its path and why: nested inside another image's folder
(``tools/1.0/debug``, jupyter's ``images/pytorch-notebook/cuda12``), deeper than the layout,
too shallow, a folder name that is not an image name, or losing to another folder for the same
image. When many Dockerfiles sit below one folder deeper than the layout, a hint names that
folder as the ``--root`` to use.

A folder named ``latest`` builds the tag ``latest``. Two folders of one repository whose
Dockerfile is the same file (``latest -> 7.2``, a symbolic link inside the tree), and mapping
entries of one repository naming the same folder, are *one* image with several tags: one
build, every tag pushed.

What is walked: folders named in ``ignore`` (``.git``... by default) and every folder whose
name starts with ``.`` are skipped; symbolic links are followed only while they stay inside
the root; one leading outside, or back into a folder being walked, is reported and skipped.
The walk goes below image folders (to find nested Dockerfiles) up to :data:`MAX_DEPTH`.

Each image's Dockerfile is parsed (:mod:`careen.tree.dockerfile`) for its parents. A parent is
a *tree* parent when it names an image of the tree without a registry host, or with one of
the tree's own hosts (``registry``: the Harbor host; ``registries``: mirrors, old host names).
A parent qualified with any other host — Docker Hub's ``docker.io`` included — is external:
``alpine/3.7`` with ``FROM docker.io/alpine:3.7`` wraps the upstream image. A ``FROM`` naming
the image's own name (``nginx/1.25`` with ``FROM nginx:1.25``) is its upstream too, never a
cycle. A ``FROM`` (without a host, or with one of the tree's) naming an image that no folder
builds is a warning when the tree should have built it: another tag of a repository the tree
builds (``statemood/jre:8u191`` beside ``jre/8u181``), or any image of the tree's own project
when that is not ``library`` (Harbor's default project, where mirrors of upstream images
live). The cascade stops there. A parent pinned by digest is external (a rebuild cannot change
it).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from careen.attention import AttentionKind
from careen.errors import ConfigError, InputFileError, InvalidReferenceError
from careen.reference import ImageReference
from careen.tree.dockerfile import read_dockerfile

if TYPE_CHECKING:
    from careen.config import Config

DEFAULT_PROJECT = "library"
#: Folder names never walked, wherever they are (besides any name starting with a dot).
DEFAULT_IGNORE = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__"})
#: File names of a build's instructions, in order of preference.
DOCKERFILE_NAMES = ("Dockerfile", "Containerfile")
#: Deeper than any sensible tree; a guard against symbolic-link mazes.
MAX_DEPTH = 16

#: What produced a tree image: a layout, a rule, or the config's mapping.
ImageSource = Literal["app/version", "project/app/version", "rule", "mapping"]


class Layout(StrEnum):
    AUTO = "auto"
    APP_VERSION = "app/version"
    PROJECT_APP_VERSION = "project/app/version"


@dataclass(frozen=True, slots=True)
class TreeProblem:
    """Something in the tree that builds no image, or not the expected one. ``path`` is
    relative to the tree's root. ``unmapped`` is true for a Dockerfile that builds no image;
    ``kind`` is how it is reported as needing attention."""

    path: Path
    message: str
    kind: AttentionKind = AttentionKind.UNMAPPED_DOCKERFILE
    unmapped: bool = False
    #: The fix, when more precise than the kind's standard next step.
    advice: str = ""

    def __str__(self) -> str:
        return f"{self.path.as_posix()}: {self.message}"


@dataclass(frozen=True, slots=True)
class MappingEntry:
    """One ``[tree.mapping]`` value: the folder, and the tags it is pushed under (the key's
    own tag first, whether or not listed)."""

    folder: str
    tags: tuple[str, ...] = ()


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class TreeRule:
    """A ``[[tree.rule]]``: folders matching ``path`` build ``image`` (and ``tags``)."""

    path: str
    image: str
    tags: tuple[str, ...] = ()
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = PurePosixPath(self.path.strip("/")).parts if self.path.strip("/") else ()
        if not parts or any(part in (".", "..") for part in parts):
            raise ConfigError(
                f"rule path {self.path!r} is not a folder pattern", key="tree.rule",
                hint='write it as "php/{version}/{variant}" (one {name} or * per folder)',
            )
        names: list[str] = []
        pieces: list[str] = []
        for part in parts:
            if part == "*":
                pieces.append(r"[^/]+")
                continue
            regex, last = "", 0
            for match in _PLACEHOLDER.finditer(part):
                regex += re.escape(part[last:match.start()])
                name = match[1]
                if name in names:
                    raise ConfigError(f"rule path {self.path!r} names {{{name}}} twice",
                                      key="tree.rule")
                names.append(name)
                regex += f"(?P<{name}>[^/]+?)"
                last = match.end()
            pieces.append(regex + re.escape(part[last:]))
        for template in (self.image, *self.tags):
            for name in _PLACEHOLDER.findall(template):
                if name not in names:
                    raise ConfigError(
                        f"rule {self.path!r}: {template!r} uses {{{name}}}, which the path "
                        "does not name", key="tree.rule",
                    )
        object.__setattr__(self, "_pattern", re.compile("/".join(pieces) + r"\Z"))

    def match(self, relative: PurePosixPath) -> dict[str, str] | None:
        found = self._pattern.match(relative.as_posix())
        return None if found is None else found.groupdict()

    @staticmethod
    def fill(template: str, values: Mapping[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda match: values[match[1]], template)


@dataclass(frozen=True, slots=True)
class TreeImage:
    """One image the tree builds.

    ``reference`` is registry-less with a tag (``library/jre:8u191``); ``tags`` every tag the
    one build is pushed under, ``reference.tag`` first. ``folder`` (the build context) and
    ``dockerfile`` are absolute paths inside the root, as walked (a symbolic link inside the
    root is not replaced by its target). ``parents`` are all the images the Dockerfile reads
    (tree or external, as written); ``unresolved`` the ``FROM`` images that could not be
    resolved; ``platforms`` the ``--platform`` values of its ``FROM`` lines.
    """

    reference: ImageReference
    folder: Path
    dockerfile: Path
    parents: tuple[ImageReference, ...]
    platforms: tuple[str, ...]
    source: ImageSource
    unresolved: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        own = self.reference.tag or "latest"
        object.__setattr__(self, "tags", tuple(dict.fromkeys((own, *self.tags))))

    @property
    def references(self) -> tuple[ImageReference, ...]:
        """One reference per tag, the primary one first."""
        return tuple(ImageReference(self.reference.repository, tag) for tag in self.tags)


@dataclass(frozen=True)
class DockerfileTree:
    """The images a Dockerfile tree builds, and what in it builds nothing (``problems``)."""

    root: Path
    images: Mapping[ImageReference, TreeImage]
    problems: tuple[TreeProblem, ...] = ()
    project: str = DEFAULT_PROJECT
    registry: str | None = None
    #: More hosts that mean "this tree's registry" (``[tree] registries``).
    registries: tuple[str, ...] = ()
    #: ``[tree] require_provenance``: a plan skips a tag Careen never built (see
    #: :func:`careen.plan.make_plan`).
    require_provenance: bool = False
    _by_folder: Mapping[Path, tuple[ImageReference, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )
    #: Every extra tag's reference -> the image's primary reference.
    _aliases: Mapping[ImageReference, ImageReference] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def unmapped(self) -> tuple[TreeProblem, ...]:
        """Dockerfiles under the root that build no image, each with why."""
        return tuple(problem for problem in self.problems if problem.unmapped)

    @property
    def warnings(self) -> tuple[TreeProblem, ...]:
        """Every other problem: missing parents, unreadable Dockerfiles, refused links..."""
        return tuple(problem for problem in self.problems if not problem.unmapped)

    @property
    def hosts(self) -> frozenset[str]:
        """The registry hosts that mean this tree's registry, lower-cased."""
        return frozenset(h.lower() for h in (self.registry, *self.registries) if h)

    def primary(self, image: ImageReference) -> ImageReference | None:
        """The key in :attr:`images` of the image ``image`` names by any of its tags."""
        key = image_key(image)
        if key is None:
            return None
        if key in self.images:
            return key
        return self._aliases.get(key)

    def folder_for(self, image: ImageReference) -> TreeImage | None:
        """The tree image for ``image`` (by any of its tags), whatever registry host it
        carries (images listed by Harbor carry the Harbor host); ``None`` when the tree has
        no folder for it (the seed's "directory does not exist")."""
        key = self.primary(image)
        return None if key is None else self.images[key]

    def _names_tree(self, parent: ImageReference) -> bool:
        return parent.registry is None or parent.registry.lower() in self.hosts

    def resolve_parent(self, parent: ImageReference) -> ImageReference | None:
        """The tree image a ``FROM`` (or ``COPY --from``) names, or ``None`` if it is external:
        on another registry host (Docker Hub's included), pinned by digest only, or not built
        by the tree."""
        if not self._names_tree(parent):
            return None
        return self.primary(parent.with_registry(None))

    def tree_parents(self, image: ImageReference) -> tuple[ImageReference, ...]:
        """The parents of ``image`` that the tree builds too (in Dockerfile order); a parent
        naming the image itself is its upstream, not a tree parent."""
        key = self.primary(image)
        if key is None:
            return ()
        keys = (self.resolve_parent(parent) for parent in self.images[key].parents)
        return tuple(dict.fromkeys(k for k in keys if k is not None and k != key))

    def is_upstream_wrapper(self, image: ImageReference) -> bool:
        """Whether ``image``'s Dockerfile builds FROM its own name (an upstream it wraps)."""
        key = self.primary(image)
        if key is None:
            return False
        own = self.images[key]
        return any(
            p.with_registry(None).normalized().repository == own.reference.repository
            and p.tag in own.tags for p in own.parents
        )

    def missing_parent(self, parent: ImageReference) -> bool:
        """Whether ``parent`` names an image this tree should build but no folder does (a
        warning: the cascade stops there). That is a ``FROM`` without a host or with one of
        the tree's hosts, not pinned by digest, naming either a repository the tree builds
        under other tags (``statemood/jre:8u191`` beside ``jre/8u181``) or any image of the
        tree's own project (``[tree] project``). Images of ``library`` the tree does not
        build are taken for mirrors of upstream images (Harbor's default project holds
        them), as are images of other projects."""
        if parent.tag is None or parent.digest is not None:
            return False  # pinned: a rebuild of the tree would not change it anyway
        if not self._names_tree(parent) or self.resolve_parent(parent) is not None:
            return False
        key = image_key(parent.with_registry(None))
        if key is None:
            return False
        if key.repository in self._repositories:
            return True
        project = key.repository.partition("/")[0]
        return project == self.project and project != DEFAULT_PROJECT

    @cached_property
    def _repositories(self) -> frozenset[str]:
        return frozenset(key.repository for key in self.images)

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
    tags: tuple[str, ...] = ()
    #: The folder is (or lies below) a symbolic link: another folder's alias.
    linked: bool = False


_PRIORITY: Mapping[ImageSource, int] = {
    "mapping": 0, "rule": 1, "project/app/version": 2, "app/version": 3,
}


def discover_tree(
    root: Path, *, project: str | None = DEFAULT_PROJECT, registry: str | None = None,
    mapping: Mapping[str, str | MappingEntry] | None = None,
    build_args: Mapping[str, str] | None = None,
    layout: Layout | str = Layout.AUTO, ignore: Collection[str] = DEFAULT_IGNORE,
    rules: Sequence[TreeRule] = (), registries: Collection[str] = (),
    require_provenance: bool = False,
) -> DockerfileTree:
    """Walk ``root`` and return the images it builds (see the module docstring for the rule).

    ``project`` is the project of ``app/version`` folders (``None``: ``library``);
    ``registry`` the Harbor host (``registry.abc.com``) that ``FROM`` lines may name, and
    ``registries`` more hosts meaning the same registry; ``mapping`` the config's image ->
    folder overrides; ``rules`` the config's ``[[tree.rule]]``; ``build_args`` the values
    ``ARG``\\ s take in ``FROM`` lines. Raises :class:`~careen.errors.UsageError` for a root
    that is not a folder and :class:`~careen.errors.ConfigError` for a bad setting;
    everything wrong *inside* the tree is a problem in the result, not an error.
    """
    project = _check_project(project if project is not None else DEFAULT_PROJECT)
    registry = _check_registry(registry)
    extra_hosts = tuple(_check_registry(host, key="tree.registries") or "" for host in registries)
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
    too_deep: list[PurePosixPath] = []
    walked = list(_walk(root, ignore, mapped_folders, problems))
    with_dockerfile = {relative for relative, *_ in walked} | mapped_folders
    for relative, folder, dockerfile, linked in walked:
        if relative in mapped_folders:
            continue
        candidate = _rule_candidate(relative, folder, dockerfile, rules, project, problems)
        if candidate is None and any(r.match(relative) for r in rules):
            continue  # the rule's problem is reported
        outer = next((p for p in relative.parents if p.parts and p in with_dockerfile), None)
        if candidate is None and outer is not None:
            # Inside another image's folder: part of that build's context; only the mapping
            # or a rule naming it makes it an image of its own. (Seen through a symbolic link,
            # it is reported where it really is.)
            if linked:
                continue
            problems.append(TreeProblem(
                Path(relative),
                f"nested inside {outer.as_posix()}, a folder with its own Dockerfile: not "
                "built", unmapped=True,
                advice="if it is an image of its own, map it in [tree.mapping] or with a "
                       "[[tree.rule]]; otherwise nothing to do but leave it",
            ))
            continue
        if candidate is None:
            candidate = _layout_candidate(
                relative, folder, dockerfile, project=project, layout=layout,
                problems=problems, too_deep=too_deep,
            )
        if candidate is not None:
            if linked:
                candidate = _Candidate(candidate.reference, candidate.relative,
                                       candidate.folder, candidate.dockerfile,
                                       candidate.source, candidate.tags, linked=True)
            candidates.append(candidate)
    problems.extend(_root_hint(too_deep))

    chosen: dict[ImageReference, _Candidate] = {}
    order = sorted(candidates, key=lambda c: (_PRIORITY[c.source], c.linked, str(c.relative)))
    for candidate in order:
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
            unmapped=True,
        ))

    groups = _group_tags(chosen, problems)
    images: dict[ImageReference, TreeImage] = {}
    aliases: dict[ImageReference, ImageReference] = {}
    by_folder: dict[Path, list[ImageReference]] = {}
    for reference in sorted(groups, key=_sort_key):
        candidate, tags = groups[reference]
        images[reference] = _tree_image(candidate, tags, build_args or {}, problems)
        for tag in tags[1:]:
            aliases[ImageReference(reference.repository, tag)] = reference
        by_folder.setdefault(candidate.folder, []).append(reference)
    tree = DockerfileTree(
        root=root, images=MappingProxyType(images), problems=(), project=project,
        registry=registry, registries=tuple(h for h in extra_hosts if h),
        _by_folder=MappingProxyType({k: tuple(v) for k, v in by_folder.items()}),
        _aliases=MappingProxyType(aliases),
    )
    problems.extend(_missing_parents(tree))
    return DockerfileTree(
        root=root, images=tree.images, problems=tuple(problems), project=project,
        registry=registry, registries=tree.registries, require_provenance=require_provenance,
        _by_folder=tree._by_folder, _aliases=tree._aliases,
    )


def discover_configured(
    config: Config, *, root: Path | None = None, layout: str | None = None,
    project: str | None = None,
) -> DockerfileTree:
    """:func:`discover_tree` with the settings of ``config`` (``[tree]``, the registry host,
    the build args); ``root``, ``layout`` and ``project`` override them when given."""
    tree = config.tree
    return discover_tree(
        root if root is not None else tree.root,
        project=project if project is not None else tree.project,
        registry=config.registry.server, registries=tree.registries,
        mapping=mapping_entries(tree.mapping), rules=tree_rules(tree.rules),
        build_args=config.build.build_args,
        layout=layout if layout is not None else tree.layout,
        require_provenance=tree.require_provenance,
    )


def mapping_entries(mapping: Mapping[str, object]) -> dict[str, MappingEntry]:
    """``[tree.mapping]`` as read from the config: a folder, or ``{ folder, tags }``."""
    entries: dict[str, MappingEntry] = {}
    for image, value in mapping.items():
        if isinstance(value, Mapping):
            tags = value.get("tags", ())
            entries[image] = MappingEntry(
                str(value["folder"]),
                tuple(str(tag) for tag in tags) if isinstance(tags, list | tuple) else (),
            )
        else:
            entries[image] = MappingEntry(str(value))
    return entries


def tree_rules(rules: Sequence[Mapping[str, object]]) -> tuple[TreeRule, ...]:
    """``[[tree.rule]]`` entries as :class:`TreeRule` values (a bad one is a config error)."""
    found = []
    for rule in rules:
        tags = rule.get("tags", ())
        found.append(TreeRule(
            str(rule["path"]), str(rule["image"]),
            tuple(str(tag) for tag in tags) if isinstance(tags, list | tuple) else (),
        ))
    return tuple(found)


def _group_tags(
    chosen: Mapping[ImageReference, _Candidate], problems: list[TreeProblem]
) -> dict[ImageReference, tuple[_Candidate, tuple[str, ...]]]:
    """One image per (repository, build): folders of one repository that are the same folder
    (``latest -> 7.2``) and mapping entries naming one folder become extra tags."""
    by_build: dict[tuple[str, Path], list[_Candidate]] = {}
    for candidate in chosen.values():
        # One build is one context (the real folder) and one Dockerfile. A folder walked
        # without a link on the way is already real (the root is resolved).
        real = candidate.folder
        if candidate.linked or candidate.source == "mapping":
            with contextlib.suppress(OSError, RuntimeError):
                real = real.resolve(strict=True)
        real = real / candidate.dockerfile.name
        by_build.setdefault((candidate.reference.repository, real), []).append(candidate)
    groups: dict[ImageReference, tuple[_Candidate, tuple[str, ...]]] = {}
    owner: dict[ImageReference, PurePosixPath] = {
        candidate.reference: candidate.relative for candidate in chosen.values()
    }
    for members in by_build.values():
        members.sort(key=lambda c: (c.linked, _PRIORITY[c.source], str(c.relative)))
        primary = members[0]
        tags: list[str] = []
        for member in members:
            for tag in (member.reference.tag or "latest", *member.tags):
                alias = ImageReference(primary.reference.repository, tag)
                taken = owner.setdefault(alias, member.relative)
                if taken != member.relative and alias not in {m.reference for m in members}:
                    problems.append(TreeProblem(
                        Path(member.relative),
                        f"the tag {alias.short} is also built by {taken.as_posix()}; not "
                        "given to this folder", kind=AttentionKind.UNMAPPED_DOCKERFILE,
                    ))
                    continue
                tags.append(tag)
        groups[primary.reference] = (primary, tuple(dict.fromkeys(tags)))
    return groups


def _missing_parents(tree: DockerfileTree) -> Iterator[TreeProblem]:
    for reference, image in tree.images.items():
        for parent in image.parents:
            if tree.missing_parent(parent):
                expected = image_key(parent.with_registry(None))
                name = expected.short if expected else str(parent)
                built = sorted(i.reference.tag or "" for i in tree.images.values()
                               if expected and i.reference.repository == expected.repository)
                what = (f"the tree builds {expected.repository} ({', '.join(built)}) but no "
                        f"folder builds {name}" if built and expected else
                        f"no folder builds {name}, an image of this tree's project")
                yield TreeProblem(
                    _relative_dockerfile(image, tree.root),
                    f"FROM {parent}: {what}; {reference.short} is not rebuilt after it (the "
                    "cascade stops there)",
                    kind=AttentionKind.MISSING_PARENT,
                    advice=f"add the folder of {name}, fix the FROM, or qualify it with the "
                           "upstream registry",
                )


def _relative_dockerfile(image: TreeImage, root: Path) -> Path:
    try:
        return image.dockerfile.relative_to(root)
    except ValueError:
        return image.dockerfile


def _root_hint(too_deep: list[PurePosixPath]) -> Iterator[TreeProblem]:
    """When most Dockerfiles deeper than the layout sit below one folder as APP/VERSION
    (``--root`` given at the repository's top), name that folder as the root to use."""
    tops = Counter(PurePosixPath(*path.parts[:-2]) for path in too_deep if len(path.parts) > 2)
    if not tops:
        return
    top, count = tops.most_common(1)[0]
    if count < 2 or count * 5 < len(too_deep) * 4:
        return
    text = top.as_posix()
    odd = [part for part in top.parts if part != part.lower()]
    why = (f" ({', '.join(repr(p) for p in odd)} cannot be part of an image name)"
           if odd else "")
    advice = f"try --root {text} (or [tree] root = \"{text}\")"
    if len(top.parts) == 1 and not odd:
        advice = (f"if {text} is the Harbor project, give --project {text} (or [tree] "
                  f"project); otherwise {advice}")
    yield TreeProblem(
        Path(top),
        f"{count} of the {len(too_deep)} Dockerfiles too deep for the layout are "
        f"APP/VERSION folders below {text}{why}: the root looks too high",
        advice=advice,
    )


def _sort_key(reference: ImageReference) -> tuple[str, str]:
    return reference.repository, reference.tag or ""


def _tree_image(
    candidate: _Candidate, tags: tuple[str, ...], build_args: Mapping[str, str],
    problems: list[TreeProblem],
) -> TreeImage:
    source = candidate.relative / candidate.dockerfile.name
    try:
        parsed = read_dockerfile(
            candidate.dockerfile, build_args=build_args, source=source.as_posix()
        )
    except InputFileError as error:
        # Keep the image (its folder exists, the build will say what is wrong), no parents.
        problems.append(TreeProblem(Path(source), error.message.partition(": ")[2],
                                    kind=AttentionKind.MISSING_PARENT))
        return TreeImage(
            reference=candidate.reference, folder=candidate.folder,
            dockerfile=candidate.dockerfile, parents=(), platforms=(), source=candidate.source,
            tags=tags,
        )
    problems.extend(TreeProblem(
        Path(source), problem, kind=AttentionKind.MISSING_PARENT,
        advice="fix the FROM, or give its variables a default (ARG NAME=VALUE) or a value in "
               "[build] build_args; until then the cascade stops at this image",
    ) for problem in parsed.problems)
    return TreeImage(
        reference=candidate.reference, folder=candidate.folder, dockerfile=candidate.dockerfile,
        parents=parsed.parents, platforms=parsed.platforms, source=candidate.source,
        unresolved=parsed.unresolved, tags=tags,
    )


_BAD_NAME = ("rename the folder (lower-case a-z, 0-9 and '.', '_', '-' between them; tags "
             "also A-Z) or map it")


def _rule_candidate(
    relative: PurePosixPath, folder: Path, dockerfile: Path, rules: Sequence[TreeRule],
    project: str, problems: list[TreeProblem],
) -> _Candidate | None:
    for number, rule in enumerate(rules, start=1):
        values = rule.match(relative)
        if values is None:
            continue
        text = TreeRule.fill(rule.image, values)
        try:
            reference = _image_name(text, project)
            tags = tuple(TreeRule.fill(tag, values) for tag in rule.tags)
            for tag in tags:
                ImageReference(reference.repository, tag)
        except InvalidReferenceError as error:
            problems.append(TreeProblem(
                Path(relative),
                f"rule {number} ({rule.path!r}) gives {text!r}, not an image name "
                f"({error.reason}); {_BAD_NAME}", unmapped=True,
            ))
            return None
        return _Candidate(reference, relative, folder, dockerfile, "rule", tags)
    return None


def _image_name(text: str, project: str) -> ImageReference:
    parsed = ImageReference.parse_short(text)
    if parsed.tag is None:
        raise InvalidReferenceError(text, "no tag")
    repository = parsed.repository if "/" in parsed.repository else (
        f"{project}/{parsed.repository}"
    )
    return ImageReference(repository, parsed.tag)


def _layout_candidate(
    relative: PurePosixPath, folder: Path, dockerfile: Path, *, project: str, layout: Layout,
    problems: list[TreeProblem], too_deep: list[PurePosixPath],
) -> _Candidate | None:
    parts = relative.parts
    depth = len(parts)
    source: ImageSource
    if depth < 2:
        problems.append(TreeProblem(
            Path(relative),
            "a Dockerfile here builds no image: put it in APP/VERSION/ (VERSION 'latest' for "
            "no tag) or map an image to this folder in the config ([tree] mapping)",
            unmapped=True,
        ))
        return None
    if layout is Layout.APP_VERSION or (layout is Layout.AUTO and depth == 2):
        source, repository = "app/version", "/".join((project, *parts[:-1]))
    elif (layout is Layout.PROJECT_APP_VERSION and depth >= 3) or (
            layout is Layout.AUTO and depth == 3 and parts[0] == project):
        source, repository = "project/app/version", "/".join(parts[:-1])
    elif layout is Layout.AUTO:
        too_deep.append(relative)
        problems.append(TreeProblem(
            Path(relative),
            f"{depth} folders deep, deeper than APP/VERSION, and {parts[0]!r} is not the "
            f"project ({project!r}): not built (auto never reads a project from a folder "
            f"name; it would have been {'/'.join(parts[:-1])}:{parts[-1]})",
            unmapped=True,
            advice="write a [[tree.rule]] for this layout, map it in [tree.mapping], set "
                   "--layout project/app/version if the first folder is a Harbor project, "
                   "or point --root lower",
        ))
        return None
    else:
        problems.append(TreeProblem(
            Path(relative),
            "too shallow for the project/app/version layout: move it to PROJECT/APP/VERSION/ "
            "or set [tree] layout to app/version",
            unmapped=True,
        ))
        return None
    try:
        reference = ImageReference(repository, parts[-1])
    except InvalidReferenceError as error:
        problems.append(TreeProblem(
            Path(relative),
            f"folder names do not make an image name ({error.reason}); {_BAD_NAME}",
            unmapped=True,
        ))
        return None
    return _Candidate(reference, relative, folder, dockerfile, source)


def _mapped_candidates(
    root: Path, mapping: Mapping[str, str | MappingEntry], project: str,
    problems: list[TreeProblem],
) -> Iterator[_Candidate]:
    for image_text, value in mapping.items():
        entry = value if isinstance(value, MappingEntry) else MappingEntry(str(value))
        folder_text = entry.folder
        reference = _mapping_key(image_text, project)
        for tag in entry.tags:
            try:
                ImageReference(reference.repository, tag)
            except InvalidReferenceError as error:
                raise ConfigError(f"{image_text}: tag {tag!r} is not a tag ({error.reason})",
                                  key="tree.mapping") from None
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
        yield _Candidate(reference, relative, folder, dockerfile, "mapping", entry.tags)


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
    folder: Path, root: Path, relative: PurePosixPath, problems: list[TreeProblem],
    listed: Mapping[str, os.DirEntry[str]] | None = None,
) -> Path | None:
    """The Dockerfile in ``folder``, if there is one that stays inside the root.

    ``listed``: the folder's entries by name, when the folder is known to be inside the root
    for real (reached by real folders, or through links that were checked): a Dockerfile
    listed there that is no symbolic link is a file inside the root without a look at the
    disk (a tree of thousands of images did a stat and a path resolution per folder)."""
    for name in DOCKERFILE_NAMES:
        candidate = folder / name
        entry = None if listed is None else listed.get(name)
        if listed is not None and (entry is None or not entry.is_symlink()):
            if entry is not None and entry.is_file(follow_symlinks=False):
                return candidate
            continue
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
) -> Iterator[tuple[PurePosixPath, Path, Path, bool]]:
    """Folders holding a Dockerfile under ``root``, nested ones too, sorted: (path relative to
    root, folder, Dockerfile, whether a symbolic link leads to it)."""
    # Each entry: the folder as walked, its path relative to root, the real folders above it
    # (to refuse a symbolic link back into one of them, which would loop), linked or not.
    stack: list[tuple[Path, PurePosixPath, tuple[Path, ...], bool]] = [
        (root, PurePosixPath(), (root,), False)
    ]
    while stack:
        folder, relative, chain, linked = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            problems.append(TreeProblem(Path(relative), f"cannot list: {error.strerror}"))
            continue
        # Only a folder listing a Dockerfile name is looked at closer (one listing per folder
        # instead of a stat per name).
        if any(entry.name in DOCKERFILE_NAMES for entry in entries):
            if relative.parts:
                listed = {entry.name: entry for entry in entries
                          if entry.name in DOCKERFILE_NAMES}
                dockerfile = _dockerfile_in(folder, root, relative, problems, listed)
                if dockerfile is not None:
                    yield relative, folder, dockerfile, linked
            elif relative not in mapped and _dockerfile_in(folder, root, relative, []):
                problems.append(TreeProblem(
                    Path(), "the Dockerfile at the root builds no image; map an image to '.' "
                    "in the config ([tree] mapping) to build it", unmapped=True,
                ))
        if len(relative.parts) >= MAX_DEPTH:
            problems.append(TreeProblem(
                Path(relative), f"deeper than {MAX_DEPTH} folders; not walked further"
            ))
            continue
        subfolders: list[tuple[Path, PurePosixPath, tuple[Path, ...], bool]] = []
        for entry in entries:
            if entry.name in ignore or entry.name.startswith("."):
                continue
            child = PurePosixPath(relative, entry.name)
            path = Path(entry.path)
            is_link = entry.is_symlink()
            if is_link:
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
            subfolders.append((path, child, (*chain, real), linked or is_link))
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


def _check_registry(registry: str | None, *, key: str = "harbor.registry") -> str | None:
    if registry is None:
        return None
    try:
        parsed = ImageReference.parse(f"{registry}/library/x")
    except InvalidReferenceError:
        parsed = None
    if parsed is None or parsed.registry != registry:
        raise ConfigError(
            f"{registry!r} is not a registry host", key=key,
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
