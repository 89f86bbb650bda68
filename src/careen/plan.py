"""The plan: what to rebuild, in which order, and why — decided before anything is built.

Input: the images the policy selected (live from Harbor, or read from a vulnerable.list) and
the Dockerfile tree with its parent graph. Output: steps by level (parents before children;
the images of one level are independent and may build at once), each with its reason —
selected by the policy (with the counts), or a child of a rebuilt base (the cascade) — and
the images that will not be rebuilt, each with the reason (no Dockerfile folder, ignored by
config, tag immutable in Harbor, ...).

A plan is a value: it serialises to JSON (``to_dict``/``from_dict``) so that it can be stored
and executed later exactly as it was shown (``careen update --plan ID``).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from careen.attention import AttentionItem, AttentionKind, attention_from_dicts, attention_to_dicts
from careen.errors import UsageError
from careen.inventory import Image
from careen.policy import Verdict
from careen.reference import ImageReference
from careen.scan import SeverityCounts
from careen.tree.discover import DockerfileTree, image_key
from careen.tree.graph import BuildGraph, tree_attention

#: The label naming the tree folder an image was built from (see
#: :data:`careen.builders.interface.LABEL_TREE_PATH`); read back to guard a tag.
TREE_PATH_LABEL = "careen.tree.path"

#: Version of the plan's JSON form; a stored plan of another version is refused.
PLAN_SCHEMA_VERSION = 1


class StepReason(StrEnum):
    #: The image itself breaks the policy.
    SELECTED = "selected"
    #: A base it is built on is rebuilt in this plan.
    CASCADE = "cascade"


class SkipReason(StrEnum):
    #: The tree has no folder for the image (the seed's "directory does not exist").
    NO_FOLDER = "no_folder"
    #: Matched by ``[policy] ignore``.
    IGNORED = "ignored"
    #: Harbor's tag immutability protects the tag: a push would be refused.
    IMMUTABLE = "immutable"
    #: Already rebuilt and pushed earlier in this run.
    ALREADY_REBUILT = "already_rebuilt"
    #: A multi-arch image the configured builder cannot rebuild for all its platforms.
    MULTI_ARCH = "multi_arch"
    #: Built FROM itself or its own children: no order can build it.
    CYCLE = "cycle"
    #: Only digest-addressed in Harbor (no tag to push to). Plans made since untagged
    #: artifacts are counted apart no longer hold it; kept to read older stored plans.
    UNTAGGED = "untagged"
    #: The tag was last built from another folder, or (``require_provenance``) never by Careen.
    PROVENANCE = "provenance"
    #: Its last rebuild did not help and none of its inputs changed since (careen.hold).
    HELD = "held"


#: Skips a person must act on (the others were never Careen's to fix: ignored by config, an
#: immutable tag, a builder that cannot build several platforms, rebuilt already).
ATTENTION_SKIPS: Mapping[SkipReason, AttentionKind] = {
    SkipReason.NO_FOLDER: AttentionKind.NO_FOLDER,
    SkipReason.CYCLE: AttentionKind.CYCLE,
    SkipReason.PROVENANCE: AttentionKind.PROVENANCE_REFUSED,
    SkipReason.HELD: AttentionKind.HELD,
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """An image proposed for rebuilding, with what is known of it."""

    image: ImageReference
    detail: str
    counts: SeverityCounts | None = None
    digest: str | None = None
    immutable: bool = False
    is_index: bool = False
    platforms: tuple[str, ...] = ()
    #: The image's labels as Harbor lists them; ``None`` when unknown (a vulnerable.list).
    labels: Mapping[str, str] | None = None

    @classmethod
    def from_judged(cls, image: Image, verdict: Verdict) -> Candidate:
        return cls(
            image=image.reference, detail=verdict.reason, counts=image.scan.counts,
            digest=image.digest, immutable=image.immutable, is_index=image.is_index,
            platforms=tuple(str(p) for p in image.platforms), labels=image.labels,
        )


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One image to rebuild. ``parents`` are the images of this plan it is built on: they must
    be pushed before it builds, and if one fails this step is skipped."""

    image: ImageReference
    level: int
    reason: StepReason
    detail: str
    parents: tuple[ImageReference, ...]
    folder: str
    dockerfile: str
    platforms: tuple[str, ...] = ()
    counts: SeverityCounts | None = None
    digest: str | None = None
    #: Every tag the one build is pushed under, ``image.tag`` first.
    tags: tuple[str, ...] = ()
    #: No tag of it carries Careen's tree-path label: Careen never built it before.
    first_rebuild: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags",
                           tuple(dict.fromkeys((self.image.tag or "latest", *self.tags))))

    @property
    def references(self) -> tuple[ImageReference, ...]:
        """One reference per tag pushed, the step's own first."""
        return tuple(ImageReference(self.image.repository, tag) for tag in self.tags)


@dataclass(frozen=True, slots=True)
class SkippedImage:
    image: ImageReference
    reason: SkipReason
    detail: str


@dataclass(frozen=True)
class Plan:
    steps: tuple[PlanStep, ...]
    skipped: tuple[SkippedImage, ...]
    tree_root: str
    created_at: datetime
    cascade: bool = True
    source: str = "harbor"
    policy: str | None = None
    tree_commit: str | None = None
    id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: What needs attention beyond the skips: the unreadable lines of the list planned from,
    #: the tree's unmapped Dockerfiles and missing parents.
    problems: tuple[AttentionItem, ...] = ()

    @property
    def attention(self) -> tuple[AttentionItem, ...]:
        """Everything of this plan a person must act on: the list's unreadable lines, then
        the images skipped for want of a folder or for a FROM cycle. Any makes exit 1."""
        return self.problems + tuple(
            AttentionItem(ATTENTION_SKIPS[s.reason], s.image.short, s.detail)
            for s in self.skipped if s.reason in ATTENTION_SKIPS)

    @property
    def levels(self) -> list[list[PlanStep]]:
        grouped: dict[int, list[PlanStep]] = {}
        for step in self.steps:
            grouped.setdefault(step.level, []).append(step)
        return [grouped[level] for level in sorted(grouped)]

    def step(self, image: ImageReference) -> PlanStep | None:
        """The step building ``image``, by any of its tags."""
        key = image_key(image)
        return next((s for s in self.steps if key is not None and key in s.references), None)

    def with_id(self, plan_id: str) -> Plan:
        return Plan(self.steps, self.skipped, self.tree_root, self.created_at, self.cascade,
                    self.source, self.policy, self.tree_commit, plan_id, self.extra,
                    self.problems)

    # -- JSON ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": PLAN_SCHEMA_VERSION,
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "source": self.source,
            "policy": self.policy,
            "cascade": self.cascade,
            "tree_root": self.tree_root,
            "tree_commit": self.tree_commit,
            "steps": [
                {
                    "image": step.image.short,
                    "level": step.level,
                    "reason": step.reason.value,
                    "detail": step.detail,
                    "parents": [p.short for p in step.parents],
                    "folder": step.folder,
                    "dockerfile": step.dockerfile,
                    "platforms": list(step.platforms),
                    "counts": None if step.counts is None else step.counts.as_dict(),
                    "digest": step.digest,
                    "tags": list(step.tags),
                    "first_rebuild": step.first_rebuild,
                }
                for step in self.steps
            ],
            "skipped": [
                {"image": s.image.short, "reason": s.reason.value, "detail": s.detail}
                for s in self.skipped
            ],
            # Everything that needs attention; the skips' items are derived from "skipped"
            # again when the plan is read back.
            "attention": attention_to_dicts(self.attention),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, plan_id: str | None = None) -> Plan:
        """Rebuild a stored plan. Image names are parsed again: a stored plan is input too."""
        if data.get("schema_version") != PLAN_SCHEMA_VERSION:
            raise UsageError(
                f"plan {plan_id or data.get('id')} has schema version "
                f"{data.get('schema_version')!r}; this Careen reads version "
                f"{PLAN_SCHEMA_VERSION}", hint="make a new plan with 'careen plan'",
            )
        try:
            steps = tuple(
                PlanStep(
                    image=ImageReference.parse_short(raw["image"]), level=int(raw["level"]),
                    reason=StepReason(raw["reason"]), detail=str(raw["detail"]),
                    parents=tuple(ImageReference.parse_short(p) for p in raw["parents"]),
                    folder=str(raw["folder"]), dockerfile=str(raw["dockerfile"]),
                    platforms=tuple(str(p) for p in raw.get("platforms", ())),
                    counts=None if raw.get("counts") is None else SeverityCounts(**raw["counts"]),
                    digest=raw.get("digest"),
                    tags=tuple(str(tag) for tag in raw.get("tags", ())),
                    first_rebuild=bool(raw.get("first_rebuild", False)),
                )
                for raw in data["steps"]
            )
            skipped = tuple(
                SkippedImage(ImageReference.parse_short(raw["image"]), SkipReason(raw["reason"]),
                             str(raw["detail"]))
                for raw in data["skipped"]
            )
            return cls(
                steps=steps, skipped=skipped, tree_root=str(data["tree_root"]),
                created_at=datetime.fromisoformat(data["created_at"]),
                cascade=bool(data.get("cascade", True)), source=str(data.get("source", "")),
                policy=data.get("policy"), tree_commit=data.get("tree_commit"),
                id=plan_id or data.get("id"),
                problems=tuple(item for item in attention_from_dicts(data.get("attention") or ())
                               if item.kind not in ATTENTION_SKIPS.values()),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise UsageError(f"plan {plan_id or data.get('id')} is damaged: {error}",
                             hint="make a new plan with 'careen plan'") from error


def make_plan(
    candidates: Iterable[Candidate],
    tree: DockerfileTree,
    graph: BuildGraph | None = None,
    *,
    cascade: bool = True,
    ignored_by: Callable[[ImageReference], str | None] = lambda image: None,
    known: Mapping[ImageReference, Candidate] | None = None,
    already_rebuilt: Iterable[ImageReference] = (),
    multi_platform: bool = True,
    require_provenance: bool | None = None,
    source: str = "harbor",
    policy: str | None = None,
    tree_commit: str | None = None,
    now: datetime | None = None,
) -> Plan:
    """Decide what to rebuild.

    ``ignored_by`` says which ignore pattern (if any) matches an image (``[policy] ignore``);
    ``known`` gives what the inventory knows of images that are not candidates (children
    reached by the cascade: their tag may be immutable, they may be multi-arch; the other
    tags of a multi-tag image: their labels);
    ``multi_platform`` is whether the builder can rebuild an image for several platforms.

    One step per tree image, whatever number of tags it is pushed under; it is selected when
    any of its tags is. Before a step overwrites a tag, the tag's labels (as Harbor lists
    them) are checked: a tag last built from another folder (label ``careen.tree.path``) is
    refused, naming both folders; a tag no Careen build made is a "first rebuild" (skipped
    instead when ``require_provenance``, by default the tree's ``[tree] require_provenance``).
    Tags whose labels are unknown are not checked.
    """
    graph = graph if graph is not None else BuildGraph.from_tree(tree)
    if require_provenance is None:
        require_provenance = tree.require_provenance

    def key_of(image: ImageReference) -> ImageReference | None:
        raw = image_key(image)
        return None if raw is None else (tree.primary(raw) or raw)

    rebuilt = {key for key in map(key_of, already_rebuilt) if key is not None}
    candidates = list(candidates)
    known_by_key: dict[ImageReference, Candidate] = {}
    for image, candidate in (*(known or {}).items(), *((c.image, c) for c in candidates)):
        raw = image_key(image)
        if raw is not None:
            known_by_key[raw] = candidate
    blocked = graph.blocked()
    skipped: dict[ImageReference, SkippedImage] = {}
    chosen: dict[ImageReference, tuple[StepReason, str, Candidate | None]] = {}
    # The tree's own items; its cycles are said by the CYCLE skips of the images they hold.
    problems = tuple(item for item in tree_attention(tree, graph)
                     if item.kind is not AttentionKind.CYCLE)
    first_rebuild: dict[ImageReference, bool] = {}

    def guard(key: ImageReference) -> SkippedImage | None:
        """The provenance guard (and immutability of the other tags) for a tree image."""
        item = tree.images[key]
        folder = _relative(item.folder, tree.root)
        labelled = careen_built = False
        for reference in item.references:
            info = known_by_key.get(reference)
            if info is None:
                continue
            if info.immutable and reference != key:
                return SkippedImage(key, SkipReason.IMMUTABLE,
                                    f"its tag {reference.tag} is immutable in Harbor: a push "
                                    "would be refused")
            if info.labels is None:
                continue
            labelled = True
            built_from = info.labels.get(TREE_PATH_LABEL)
            if built_from is None:
                continue
            careen_built = True
            if built_from != folder:
                reason = (f"{reference.short} was last built from the folder {built_from}, "
                          f"this plan would build it from {folder}: not overwritten")
                return SkippedImage(key, SkipReason.PROVENANCE, reason)
        first = labelled and not careen_built
        if first and require_provenance:
            reason = (f"never built by Careen (no {TREE_PATH_LABEL} label) and [tree] "
                      f"require_provenance is set: check that {folder} builds it")
            return SkippedImage(key, SkipReason.PROVENANCE, reason)
        first_rebuild[key] = first
        return None

    def refuse(candidate: Candidate, key: ImageReference | None) -> SkippedImage | None:
        image = key or candidate.image
        pattern = ignored_by(candidate.image)
        if pattern is not None:
            return SkippedImage(image, SkipReason.IGNORED, f"ignored by policy.ignore {pattern!r}")
        if key is None:
            return SkippedImage(candidate.image, SkipReason.UNTAGGED,
                                "untagged artifact: no tag to rebuild and push")
        if key in rebuilt:
            return SkippedImage(image, SkipReason.ALREADY_REBUILT, "already rebuilt in this run")
        if key not in tree.images:
            return SkippedImage(image, SkipReason.NO_FOLDER,
                                f"no Dockerfile folder for it under {tree.root}")
        if key in blocked:
            return SkippedImage(image, SkipReason.CYCLE,
                                "built FROM itself or its own children (a FROM cycle)")
        if candidate.immutable:
            return SkippedImage(image, SkipReason.IMMUTABLE,
                                "the tag is immutable in Harbor: a push would be refused")
        if candidate.is_index and len(candidate.platforms) > 1 and not multi_platform:
            return SkippedImage(
                image, SkipReason.MULTI_ARCH,
                f"multi-arch image ({', '.join(candidate.platforms)}); the builder cannot "
                "build several platforms, and a single-arch image must not replace it",
            )
        return guard(key)

    for candidate in candidates:
        if candidate.image.tag is None:
            continue  # an untagged artifact is no image to rebuild (callers count them)
        key = key_of(candidate.image)
        if key is not None and (key in chosen or key in skipped):
            continue  # another tag of the same build already decided it
        refusal = refuse(candidate, key)
        if refusal is not None:
            skipped.setdefault(refusal.image, refusal)
        elif key is not None:
            raw = image_key(candidate.image)
            detail = candidate.detail if raw == key or raw is None else (
                f"tag {raw.tag}: {candidate.detail}")
            chosen[key] = (StepReason.SELECTED, detail, candidate)

    if cascade:
        # Breadth-first from every rebuilt image to its children; a child that cannot be
        # rebuilt stops the cascade below it (its own children would be built on the old one).
        frontier = sorted(chosen, key=lambda image: image.short)
        while frontier:
            following: list[ImageReference] = []
            for parent in frontier:
                for child in graph.children(parent):
                    if child in chosen or child in skipped:
                        continue
                    candidate = known_by_key.get(child) or Candidate(child, "")
                    refusal = refuse(candidate, child)
                    if refusal is not None:
                        skipped[child] = refusal
                        continue
                    chosen[child] = (StepReason.CASCADE, f"child of {parent.short}",
                                     known_by_key.get(child))
                    following.append(child)
            frontier = following

    steps = _ordered_steps(chosen, tree, graph, first_rebuild)
    return Plan(
        steps=tuple(steps),
        skipped=tuple(sorted(skipped.values(), key=lambda s: s.image.short)),
        tree_root=str(tree.root), created_at=now or datetime.now(UTC), cascade=cascade,
        source=source, policy=policy, tree_commit=tree_commit, problems=problems,
    )


def _ordered_steps(
    chosen: Mapping[ImageReference, tuple[StepReason, str, Candidate | None]],
    tree: DockerfileTree, graph: BuildGraph, first_rebuild: Mapping[ImageReference, bool],
) -> list[PlanStep]:
    level_of: dict[ImageReference, int] = {}
    steps: list[PlanStep] = []
    for level in graph.build_order(chosen):
        for image in level:
            parents = tuple(p for p in graph.parents(image) if p in chosen)
            level_of[image] = 1 + max((level_of[p] for p in parents), default=-1)
            reason, detail, candidate = chosen[image]
            item = tree.images[image]
            steps.append(PlanStep(
                image=image, level=level_of[image], reason=reason, detail=detail,
                parents=parents, folder=_relative(item.folder, tree.root),
                dockerfile=_relative(item.dockerfile, tree.root),
                platforms=candidate.platforms if candidate else (),
                counts=candidate.counts if candidate else None,
                digest=candidate.digest if candidate else None,
                tags=item.tags, first_rebuild=first_rebuild.get(image, False),
            ))
    steps.sort(key=lambda s: (s.level, s.image.short))
    return steps


def step_links(plan: Plan) -> tuple[list[list[int]], list[list[int]]]:
    """Per step of ``plan`` (by its index in plan order): the indexes of its parents, and of
    its children. A parent outside the plan (a shard's, built elsewhere) is left out, and a
    parent named twice (a multi-stage build) counts once."""
    index_of = {step.image: index for index, step in enumerate(plan.steps)}
    parents_of = [[index_of[parent] for parent in dict.fromkeys(step.parents)
                   if parent in index_of] for step in plan.steps]
    children: list[list[int]] = [[] for _ in plan.steps]
    for index, parents in enumerate(parents_of):
        for parent in parents:
            children[parent].append(index)
    return parents_of, children


def remaining_paths(plan: Plan, seconds: Mapping[str, float] | None = None) -> tuple[float, ...]:
    """Per step of ``plan`` (in its order), the longest chain of builds from it to the end of
    the plan, its own build included: the executor starts the longest first when slots are
    scarce (critical path first), so the last builds of the night are not a long chain
    begun late.

    ``seconds`` maps ``repository:tag`` to how long the image's build took last time (the
    state's history): a chain weighs what its builds took, an image never built the median
    of those known. Without any history every build weighs 1, and the rank is the depth of
    the chain below the step."""
    history = seconds or {}
    known = [history[step.image.short] for step in plan.steps if step.image.short in history]
    typical = statistics.median(known) if known else 1.0
    weight = [history.get(step.image.short, typical) for step in plan.steps]
    parents_of, children = step_links(plan)
    waiting = [len(parents) for parents in parents_of]
    # Parents before children (a plan is in that order already; a plan read back from JSON
    # or cut by careen.shard is not trusted to be), then children first from the end.
    order = [index for index, count in enumerate(waiting) if count == 0]
    for index in order:
        for child in children[index]:
            waiting[child] -= 1
            if waiting[child] == 0:
                order.append(child)
    path = list(weight)
    for index in reversed(order):
        path[index] = weight[index] + max((path[child] for child in children[index]),
                                          default=0.0)
    return tuple(path)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def candidates_from_list(images: Sequence[ImageReference],
                         details: Mapping[ImageReference, str] | None = None) -> list[Candidate]:
    """Candidates for images read from a vulnerable.list (nothing known but the name)."""
    return [Candidate(image, (details or {}).get(image, "listed in vulnerable.list"))
            for image in images]
