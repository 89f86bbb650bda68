"""A plan as a ``docker-bake.json``: BuildKit builds the fleet in parallel, parents first.

``docker buildx bake -f docker-bake.json --push`` (run from the Dockerfile tree's root, as
the contexts are relative to it) builds every target; BuildKit orders them itself because each
child's ``FROM`` parent is wired to the parent's target through a named context
(``contexts = {"base:1.0": "target:library-base-1-0"}``), so a child is built on the freshly
built parent, never on the old image in the registry. Groups ``level-0``, ``level-1``...
hold the plan's levels (``docker buildx bake level-0`` builds only the bases) and
``default`` holds every target.

Named-context keys must be what BuildKit looks up: the ``FROM`` name in Docker's familiar
form (``docker.io/library/`` dropped, ``:latest`` dropped), which is how buildx and the
Dockerfile frontend normalise both sides. The names are read from each child's Dockerfile
(with the build args, as ``ARG``-built ``FROM`` lines resolve); if a Dockerfile cannot be read,
the parent's plain and registry-qualified names are both given.

The format follows buildx's bake file reference (JSON form): ``group.<name>.targets``,
``target.<name>`` with ``context``, ``dockerfile``, ``tags`` (every tag of a multi-tag image:
one target, one build), ``args``, ``labels`` (with ``careen.tree.path``, the folder),
``contexts``, ``platforms``, ``no-cache``, ``pull``; ``docs/schemas/bake.schema.json`` holds
the subset written here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from careen.builders.interface import LABEL_TREE_PATH
from careen.errors import InputFileError, UsageError
from careen.plan import Plan, PlanStep
from careen.reference import DOCKER_HUB_HOSTS, ImageReference
from careen.tree.discover import image_key
from careen.tree.dockerfile import read_dockerfile

#: Label every target carries: the plan it came from.
PLAN_LABEL = "io.careen.plan"
#: buildx's rule for target and group names.
_TARGET_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]*\Z")


def target_name(image: ImageReference) -> str:
    """A bake target name for ``image``: ``library/jre:8u191`` -> ``library-jre-8u191``."""
    text = re.sub(r"[^a-z0-9]+", "-", image.short.lower()).strip("-")
    return text or "image"


def familiar_name(image: ImageReference) -> str:
    """Docker's familiar form, as BuildKit keys named contexts: ``docker.io/library/alpine``
    -> ``alpine``, ``acme/jre:latest`` -> ``acme/jre``, ``registry.abc.com/library/jre:8``
    unchanged."""
    normalized = image.normalized()
    name = normalized.name
    if normalized.registry is None and normalized.repository.count("/") == 1 and \
            normalized.repository.startswith("library/"):
        name = normalized.repository.removeprefix("library/")
    if normalized.tag is not None and not (normalized.tag == "latest"
                                           and normalized.digest is None):
        name += f":{normalized.tag}"
    if normalized.digest is not None:
        name += f"@{normalized.digest}"
    return name


def bake_file(plan: Plan, *, registry: str, build_args: Mapping[str, str] | None = None,
              no_cache: bool = True, pull: bool = True,
              labels: Mapping[str, str] | None = None,
              tree_root: Path | None = None) -> dict[str, Any]:
    """The bake definition of ``plan``'s steps (skipped images are not in it).

    ``registry`` is the host images are pushed to (``registry.abc.com``); ``tree_root``
    where the Dockerfiles are read from (default: the plan's ``tree_root``). Contexts in the
    file are relative to the tree root."""
    _check_registry(registry)
    args = dict(build_args or {})
    root = Path(tree_root if tree_root is not None else plan.tree_root)
    names = _target_names(plan)
    targets: dict[str, dict[str, Any]] = {}
    for step in plan.steps:
        target: dict[str, Any] = {
            "context": PurePosixPath(step.folder).as_posix() or ".",
            "dockerfile": _dockerfile_in_context(step),
            # One build, every tag of the image (``7.2``, ``7``, ``latest``).
            "tags": [str(ImageReference(step.image.repository, tag, None, registry))
                     for tag in step.tags],
            "args": args,
            "labels": {**(labels or {}), **({PLAN_LABEL: plan.id} if plan.id else {}),
                       LABEL_TREE_PATH: PurePosixPath(step.folder).as_posix()},
            "no-cache": no_cache,
            "pull": pull,
        }
        if step.platforms:
            target["platforms"] = list(step.platforms)
        contexts = {
            name: f"target:{names[parent]}"
            for parent in step.parents if parent in names
            for name in _from_names(step, parent, root, registry, args)
        }
        if contexts:
            target["contexts"] = dict(sorted(contexts.items()))
        targets[names[step.image]] = target
    groups: dict[str, dict[str, list[str]]] = {
        f"level-{level[0].level}": {"targets": [names[step.image] for step in level]}
        for level in plan.levels
    }
    groups["default"] = {"targets": [names[step.image] for step in plan.steps]}
    return {"group": groups, "target": targets}


def _check_registry(registry: str) -> None:
    try:
        parsed = ImageReference.parse(f"{registry}/careen/check")
    except UsageError as error:
        raise UsageError(f"registry {registry!r} is not a registry host: {error}",
                         hint="set [registry] server to a host like registry.abc.com") from None
    if parsed.registry != registry:
        raise UsageError(f"registry {registry!r} is not a registry host",
                         hint="set [registry] server to a host like registry.abc.com")


def _target_names(plan: Plan) -> dict[ImageReference, str]:
    """One name per step; two images that would get the same name (``a-b:1`` and
    ``a_b:1``) both get a short digest of their full name appended."""
    plain = {step.image: target_name(step.image) for step in plan.steps}
    taken: dict[str, int] = {}
    for name in plain.values():
        taken[name] = taken.get(name, 0) + 1
    names = {}
    for image, name in plain.items():
        clash = taken[name] > 1 or name.startswith("level-") or name == "default"
        digest = hashlib.sha256(image.short.encode()).hexdigest()[:8]
        names[image] = f"{name}-{digest}" if clash else name
    if len(set(names.values())) != len(names) or not all(
            _TARGET_NAME.match(name) for name in names.values()):  # pragma: no cover
        raise ValueError("could not give every image of the plan its own bake target name")
    return names


def _dockerfile_in_context(step: PlanStep) -> str:
    dockerfile, folder = PurePosixPath(step.dockerfile), PurePosixPath(step.folder)
    try:
        return dockerfile.relative_to(folder).as_posix()
    except ValueError:
        return dockerfile.as_posix()


def _from_names(step: PlanStep, parent: ImageReference, root: Path, registry: str,
                build_args: Mapping[str, str]) -> list[str]:
    """The familiar names under which ``step``'s Dockerfile reads ``parent``."""
    try:
        parsed = read_dockerfile(root / step.dockerfile, build_args=build_args,
                                 source=step.dockerfile)
    except InputFileError:
        parsed = None
    if parsed is not None:
        found = [familiar_name(written) for written in parsed.parents
                 if _names_tree_image(written, registry) == parent]
        if found:
            return list(dict.fromkeys(found))
    return list(dict.fromkeys([familiar_name(parent),
                               familiar_name(parent.with_registry(registry))]))


def _names_tree_image(written: ImageReference, registry: str) -> ImageReference | None:
    """The tree image a ``FROM`` names: no host, Docker Hub's, or the push registry's."""
    host = written.registry
    if host is not None and host not in DOCKER_HUB_HOSTS and host.lower() != registry.lower():
        return None
    return image_key(written.with_registry(None))
