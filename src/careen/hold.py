"""Hold what no rebuild can change: nights that do only useful work.

An image whose findings no rebuild can fix (no fix upstream, a base that pins the package)
breaks the policy again the next morning. Without memory it is rebuilt every night, pushed
under a new digest, rescanned and judged "did not help" again — with its whole cascade when it
is a base. Here, when planning, an image that the policy selects is **held** (not rebuilt,
listed in needs-attention with the date of the rebuild that did not help and why) when:

* its last rebuild by Careen did not help (the state database's verdict history,
  :mod:`careen.state.memory`);
* the tag still names the image that rebuild pushed;
* its inputs are unchanged (:mod:`careen.inputs`: the folder's content, the build args, the
  digest of every FROM; read from the image's own labels in Harbor's listing, else from the
  state), and unknown inputs never hold;
* no finding became fixable since (the summary's fixable count; the severity counts when the
  scanner gives no fixable count).

A held image's children are not rebuilt on its account (they may be selected on their own).
It is **let go** as soon as something changed, and the plan's step says which input did.
``--rebuild IMAGE`` and ``--no-hold`` (``[run] hold = false``) override. The decision is part
of the stored plan, so every shard of it agrees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from careen.errors import InvalidReferenceError, UsageError
from careen.inputs import BaseDigests, BuildInputs, InputsCalculator
from careen.inventory import Image
from careen.plan import Candidate, Plan, PlanStep, SkippedImage, SkipReason
from careen.reference import ImageReference
from careen.results import Outcome, RunResult
from careen.state.memory import RebuildMemory
from careen.state.store import StateStore
from careen.tree.discover import DockerfileTree, image_key
from careen.tree.scm import TreeRevision

__all__ = ["Held", "HoldDecision", "HoldSettings", "LetGo", "NightMemory", "night_memory"]

#: Outcomes whose rebuild is remembered (a failed or unscanned one says nothing of the inputs).
REMEMBERED = frozenset({Outcome.FIXED, Outcome.IMPROVED, Outcome.NOT_HELPED, Outcome.REBUILT})


@dataclass(frozen=True, slots=True)
class HoldSettings:
    """``[run] hold`` (off with ``--no-hold``) and the images ``--rebuild`` names."""

    enabled: bool = True
    rebuild: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Held:
    image: ImageReference
    since: datetime
    run_id: str
    why: str

    @property
    def reason(self) -> str:
        why = self.why.removeprefix("rebuild did not help: ")
        return (f"held: its rebuild of {_day(self.since)} (run {self.run_id}) did not help "
                f"({why}), and nothing changed since: same folder, build args, base digests "
                "and fixable findings")


@dataclass(frozen=True, slots=True)
class LetGo:
    image: ImageReference
    since: datetime
    changes: tuple[str, ...]

    @property
    def reason(self) -> str:
        return (f"let go: {'; '.join(self.changes)} since its rebuild of {_day(self.since)} "
                "that did not help")


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class HoldDecision:
    held: Mapping[ImageReference, Held] = field(default_factory=dict)
    let_go: Mapping[ImageReference, LetGo] = field(default_factory=dict)

    def apply(self, candidates: Iterable[Candidate], tree: DockerfileTree) -> list[Candidate]:
        """The candidates without the held images (by any of their tags); a let-go image's
        detail says which input changed."""
        kept: list[Candidate] = []
        for candidate in candidates:
            key = _key(tree, candidate.image)
            if key is not None and key in self.held:
                continue
            let_go = self.let_go.get(key) if key is not None else None
            kept.append(candidate if let_go is None else
                        replace(candidate, detail=f"{candidate.detail}; {let_go.reason}"))
        return kept

    def annotate(self, plan: Plan) -> Plan:
        """``plan`` with every held image among the skipped ones and in needs-attention."""
        # A held image whose parent is rebuilt is rebuilt with it (the cascade): not held.
        rebuilt = {step.image for step in plan.steps}
        held = sorted(((key, item) for key, item in self.held.items() if key not in rebuilt),
                      key=lambda pair: pair[0].short)
        if not held:
            return plan
        present = {s.image for s in plan.skipped}
        skipped = list(plan.skipped) + [SkippedImage(key, SkipReason.HELD, item.reason)
                                        for key, item in held if key not in present]
        # Each held skip is a needs-attention item of kind HELD (plan.ATTENTION_SKIPS).
        return replace(plan, skipped=tuple(sorted(skipped, key=lambda s: s.image.short)))


def _key(tree: DockerfileTree, image: ImageReference) -> ImageReference | None:
    raw = image_key(image)
    return None if raw is None else tree.primary(raw)


def night_memory(tree: DockerfileTree, revision: TreeRevision, store: StateStore | None,
                 settings: HoldSettings, *, build_args: Mapping[str, str],
                 registry: str | None, images: Mapping[ImageReference, Image],
                 source: BaseDigests | None = None) -> NightMemory:
    """The night's memory: the tree's inputs (git tree hashes when the tree is a clean
    checkout), the digests Harbor listed, the state's verdict history, and ``source`` to
    resolve the bases (``None``: none resolved, so nothing is held on unknown bases)."""
    calculator = InputsCalculator(
        tree, build_args, use_git=revision.is_git and not revision.dirty,
        known=NightMemory.known_digests(tree, images), registry=registry)
    return NightMemory(calculator, memory=RebuildMemory.of(store) if store else None,
                       settings=settings, source=source)


class NightMemory:
    """What one night knows of earlier rebuilds and of inputs: decides the holds, labels each
    build with its inputs, and remembers each verdict at the end."""

    def __init__(self, calculator: InputsCalculator, *, memory: RebuildMemory | None,
                 settings: HoldSettings = HoldSettings(),
                 source: BaseDigests | None = None) -> None:
        self.calculator = calculator
        self.memory = memory
        self.settings = settings
        self.source = source
        #: The inputs each build of this night was labelled with, by tree key.
        self.built: dict[ImageReference, BuildInputs] = {}
        self.forced = self._forced(calculator.tree, settings.rebuild)

    @staticmethod
    def _forced(tree: DockerfileTree, names: Iterable[str]) -> frozenset[ImageReference]:
        keys: set[ImageReference] = set()
        for name in names:
            try:
                reference = ImageReference.parse_short(name)
            except InvalidReferenceError as error:
                raise UsageError(f"--rebuild {name!r}: {error}",
                                 hint="name the image as repository:tag, e.g. "
                                      "library/app:1.0") from None
            key = _key(tree, reference)
            if key is None:
                raise UsageError(f"--rebuild {name}: no folder of the tree builds it",
                                 hint="name an image of the tree ('careen tree' lists them)")
            keys.add(key)
        return frozenset(keys)

    @staticmethod
    def known_digests(tree: DockerfileTree,
                      images: Mapping[ImageReference, Image]) -> dict[ImageReference, str]:
        """The digest Harbor lists for every tree image (by key), from the inventory."""
        known: dict[ImageReference, str] = {}
        for reference, image in images.items():
            key = _key(tree, reference)
            if key is not None and image.digest and image_key(reference) == key:
                known[key] = image.digest
        return known

    async def decide(self, selected: Iterable[ImageReference],
                     images: Mapping[ImageReference, Image]) -> HoldDecision:
        """Which selected images to hold, and which to let go with the input that changed.
        ``images`` is what Harbor lists of the tree's images (digest, labels, scan)."""
        if not self.settings.enabled or self.memory is None:
            return HoldDecision()
        tree = self.calculator.tree
        looked: dict[ImageReference, Image] = {}
        for reference in selected:
            key = _key(tree, reference)
            if key is None or key not in tree.images or key in looked:
                continue
            current = images.get(key) or images.get(image_key(reference) or key)
            if current is not None:
                looked[key] = current
        worth: dict[ImageReference, Image] = {}
        memos = {}
        for key, current in looked.items():
            memo = self.memory.last(key.short)
            if memo is not None and memo.outcome == Outcome.NOT_HELPED.value:
                worth[key], memos[key] = current, memo
        await self.calculator.prepare(worth, self.source)
        held: dict[ImageReference, Held] = {}
        let_go: dict[ImageReference, LetGo] = {}
        for key, current in sorted(worth.items(), key=lambda item: item[0].short):
            memo = memos[key]
            changes = self._changes(key, current, memo.digest, memo.inputs,
                                    memo.counts, memo.fixable)
            if key in self.forced:
                changes = ["--rebuild asked for it", *changes]
            if changes:
                let_go[key] = LetGo(key, memo.recorded_at, tuple(changes))
            else:
                held[key] = Held(key, memo.recorded_at, memo.run_id, memo.note)
        return HoldDecision(held, let_go)

    def _changes(self, key: ImageReference, current: Image, digest: str | None,
                 remembered: BuildInputs | None, counts: object,
                 fixable: int | None) -> list[str]:
        changes: list[str] = []
        if digest is not None and current.digest is not None and current.digest != digest:
            changes.append(f"the tag now names {current.digest[:19]}, not the image that "
                           "rebuild pushed")
        recorded = BuildInputs.from_labels(current.labels) or remembered
        now = self.calculator.inputs(key)
        tree = self.calculator.tree
        folder = f"folder {_relative(tree.images[key].folder, tree.root)}"
        if recorded is None:
            changes.append("that rebuild's inputs are not known")
        elif not recorded.known:
            changes.append("that rebuild's inputs were not all known")
        if not now.known:
            problems = getattr(self.source, "problems", {})
            unknown = [f"{ref} ({problems.get(_parse(ref), 'unresolvable')})"
                       if _parse(ref) in problems else ref for ref in now.unknown_bases]
            changes.append("inputs unknown now: " + (", ".join(
                f"base {ref} cannot be resolved" for ref in unknown) or f"{folder} unreadable"))
        elif recorded is not None and recorded.known:
            changes.extend(now.changes_since(recorded, folder=folder))
        scan = current.scan
        if fixable is not None and scan.fixable_total is not None:
            if scan.fixable_total > fixable:
                changes.append(f"{scan.fixable_total - fixable} more finding(s) fixable "
                               f"(fixable {fixable} -> {scan.fixable_total})")
        elif counts is not None and scan.counts is not None and scan.counts != counts:
            changes.append("the findings changed since (no fixable count to compare)")
        return changes

    # -- building and remembering ---------------------------------------------------------------

    async def prepare_build(self, plan: Plan) -> None:
        """Resolve the bases of every step once, before the builds start."""
        await self.calculator.prepare([step.image for step in plan.steps], self.source)

    def labels(self, step: PlanStep, pushed: Mapping[ImageReference, str]) -> dict[str, str]:
        """The input labels of one build (``pushed``: its parents pushed in this run)."""
        key = step.image
        if key not in self.calculator.tree.images:
            return {}
        inputs = self.calculator.inputs(key, pushed)
        self.built[key] = inputs
        return inputs.labels()

    def remember(self, run_id: str, result: RunResult) -> int:
        """Record the verdict of every image rebuilt and rescanned in this run."""
        if self.memory is None:
            return 0
        count = 0
        for item in result.images:
            after = item.after
            if item.outcome not in REMEMBERED or item.after_digest is None or after is None:
                continue  # not rescanned: no verdict to remember
            self.memory.remember(
                run_id, item.image.short, digest=item.after_digest,
                inputs=self.built.get(item.image), outcome=item.outcome.value, note=item.note,
                counts=after.counts, fixable=after.fixable_total,
                fixable_ids=self.memory.fixable_ids(run_id, item.image.short))
            count += 1
        return count


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _parse(text: str) -> ImageReference | None:
    try:
        return ImageReference.parse(text)
    except InvalidReferenceError:
        return None
