"""The nightly job's CVE step (issue 14): read the details of the images that matter, keep
them in the state, and explain each rebuild with them.

:class:`CveStep` is called twice by :func:`careen.nightly.run_nightly`: :meth:`CveStep.before`
once the plan is made (every plan image, as Harbor scanned it), :meth:`CveStep.after` once the
pushed digests are rescanned. :meth:`CveStep.explain` then adds the lists to each image's
result and rewrites a "rebuild did not help" note from the data (see
:func:`careen.details.explain_not_helped`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from careen.details import (
    DETAILS_CONCURRENCY,
    Details,
    DetailsSource,
    Finding,
    explain_not_helped,
    read_details,
)
from careen.errors import CareenError
from careen.events import NULL_OBSERVER, Observer
from careen.inventory import Image
from careen.plan import Plan
from careen.policy import Policy, VerdictKind
from careen.reference import ImageReference
from careen.results import ImageResult, Outcome
from careen.scan import ScanSummary
from careen.state.details import DetailsStore
from careen.state.store import ScanPhase, StateStore
from careen.tree.discover import image_key
from careen.tree.dockerfile import read_dockerfile

__all__ = ["CveStep", "from_lines"]

#: External base images looked up in Harbor per run, at most.
MIRROR_BASES = 20
COUNTS_ONLY = ("Harbor did not give the vulnerability details (the robot account lacks "
               "'artifact-addition' read, or the scanner gives none): counts only")


class CveStep:
    def __init__(self, source: object, store: StateStore | None, run_id: str, *,
                 by_digest: bool = True, observer: Observer = NULL_OBSERVER,
                 policy: Policy | None = None, own_hosts: Iterable[str | None] = ()) -> None:
        self.source = source
        self.store = DetailsStore(store) if store is not None else None
        self.run_id = run_id
        self.by_digest = by_digest
        self.observer = observer
        self.before_details: dict[ImageReference, tuple[Finding, ...] | None] = {}
        self.after_details: dict[ImageReference, tuple[Finding, ...] | None] = {}
        self.refused = False
        #: Rebuilt image -> (external base, the newest tag of its Harbor mirror passing).
        self.suggestions: dict[ImageReference, list[tuple[ImageReference, ImageReference]]] = {}
        #: Judges the tags of a base image's mirror (no suggestion without it).
        self.policy = policy
        #: Registries whose images are the tree's own (never a base to suggest for).
        self.own_hosts = {host for host in own_hosts if host} | {
            str(getattr(source, "registry", "") or "")}

    @property
    def note(self) -> str:
        """Why the reports show counts only, when they do."""
        return COUNTS_ONLY if self.refused else ""

    async def before(self, plan: Plan, scans: Mapping[ImageReference, Image]) -> None:
        """Read the findings of every plan image (steps and skipped ones) that Harbor
        scanned, as it scanned them (by digest when known)."""
        wanted: dict[ImageReference, ImageReference] = {}
        for image in [*(s.image for s in plan.steps), *(s.image for s in plan.skipped)]:
            known = scans.get(image)
            if known is None or not known.scan.succeeded:
                continue
            wanted[image] = self._reference(image, known.digest)
        self.before_details = await self._read(wanted, ScanPhase.BEFORE, "plan images")

    async def after(self, plan: Plan, targets: Mapping[ImageReference, ImageReference],
                    scans: Mapping[ImageReference, ScanSummary]) -> None:
        """Read the findings of each rescanned image (``targets``: plan image -> the
        reference that was rescanned; ``scans``: its rescan); for a rebuilt image still
        breaking the policy because its base image holds a fix back, look for a newer tag of
        that base in Harbor (while the client is open)."""
        if self.refused:
            return
        self.after_details = await self._read(dict(targets), ScanPhase.AFTER,
                                              "rebuilt images")
        if self.policy is None:
            return
        steps = {step.image: step for step in plan.steps}
        wanting: dict[ImageReference, list[ImageReference]] = {}
        for image, found in self.after_details.items():
            scan, step = scans.get(image), steps.get(image)
            if not found or scan is None or step is None or self.policy.evaluate(
                    Image(image, None, scan)).kind is not VerdictKind.VIOLATES:
                continue
            dockerfile = Path(plan.tree_root) / step.dockerfile
            pins = pinned_packages(dockerfile, {f.package for f in found})
            if any(f.fixable and f.package not in pins for f in found):
                wanting[image] = self._external_bases(dockerfile)
        if wanting:
            newest = await self._newest_passing(
                {base for bases in wanting.values() for base in bases})
            for image, bases in wanting.items():
                self.suggestions[image] = [(base, tag) for base in bases
                                           if (tag := newest.get(base)) is not None]

    def _reference(self, image: ImageReference, digest: str | None) -> ImageReference:
        if self.by_digest and digest:
            return ImageReference(image.repository, None, digest, image.registry)
        return image

    async def _read(self, wanted: Mapping[ImageReference, ImageReference], phase: ScanPhase,
                    what: str) -> dict[ImageReference, tuple[Finding, ...] | None]:
        # A scan source without details (a test double, a future adapter): counts only.
        if not wanted or self.refused or not isinstance(self.source, DetailsSource):
            return {}
        read: Details = await read_details(self.source, wanted.values(), what=what,
                                           observer=self.observer)
        if not read:
            self.refused = True
            return {}
        found = {image: read.get(reference) for image, reference in wanted.items()}
        if self.store is not None:
            self.store.record(self.run_id, phase, found,
                              {image: ref.digest for image, ref in wanted.items()})
        return found

    def explain(self, results: Iterable[ImageResult], plan: Plan) -> tuple[ImageResult, ...]:
        """Each result with its CVE lists; a rebuild that did not help (or only improved)
        says why from them, and — when a fix is held by an external base image whose
        repository Harbor also holds (a proxy-cache or mirror project) — names the newest tag
        of it that passes the policy."""
        steps = {step.image: step for step in plan.steps}
        out: list[ImageResult] = []
        for result in results:
            before = self.before_details.get(result.image)
            after = self.after_details.get(result.image)
            updated = replace(result, cves_before=before, cves_after=after)
            if after and result.outcome in (Outcome.NOT_HELPED, Outcome.IMPROVED):
                step = steps.get(result.image)
                dockerfile = Path(plan.tree_root) / step.dockerfile if step else None
                lines = from_lines(dockerfile) if dockerfile is not None else []
                pins = (pinned_packages(dockerfile, {f.package for f in after})
                        if dockerfile is not None else {})
                why = explain_not_helped(after, lines, pins)
                if result.outcome is Outcome.NOT_HELPED and \
                        result.before_digest != result.after_digest:
                    updated = replace(updated, note=f"rebuild did not help: {why}")
                else:
                    updated = replace(updated, note=f"{result.note}; what remains: {why}")
                hints = "; ".join(f"Harbor holds {tag.short}, which passes the policy: build "
                                  f"FROM it instead of {base.short}"
                                  for base, tag in self.suggestions.get(result.image, ()))
                if hints:
                    updated = replace(updated, note=f"{updated.note}; {hints}")
            out.append(updated)
        return tuple(out)

    def _external_bases(self, dockerfile: Path) -> list[ImageReference]:
        try:
            parsed = read_dockerfile(dockerfile)
        except CareenError:
            return []
        return [stage.reference for stage in parsed.stages if stage.reference is not None
                and stage.reference.registry not in self.own_hosts
                and stage.reference.tag is not None]

    async def _newest_passing(
            self, bases: set[ImageReference]) -> dict[ImageReference, ImageReference | None]:
        """For each external base, the newest tag (by push time) of a repository of Harbor
        that mirrors it (``PROJECT/<its path>``, with or without Docker Hub's ``library/``)
        that passes the policy. Harbor 2.x only; never raises (a note is only a hint)."""
        lister = getattr(self.source, "repository_artifacts", None)
        projects_of = getattr(self.source, "projects", None)
        if lister is None or projects_of is None or self.policy is None or not bases:
            return {}
        # A mirror project is often in [policy] ignore; its tags are judged on their findings.
        policy = replace(self.policy, ignore=())
        try:
            projects = [p for p in await projects_of() if isinstance(p, str)]
        except CareenError:
            return {}
        limit = asyncio.Semaphore(DETAILS_CONCURRENCY)

        async def newest(base: ImageReference) -> ImageReference | None:
            path = base.normalized().repository
            tails = dict.fromkeys([path, path.removeprefix("library/")])
            best: tuple[datetime, str, ImageReference] | None = None
            for project in projects:
                for tail in tails:
                    async with limit:
                        try:
                            artifacts = await lister(f"{project}/{tail}")
                        except CareenError:
                            continue
                    for artifact in artifacts:
                        for image in artifact.images():
                            if image.reference.tag is None or policy.evaluate(
                                    image).kind is not VerdictKind.PASSES:
                                continue
                            when = artifact.push_time or datetime.min.replace(tzinfo=UTC)
                            key = (when, image.reference.tag, image.reference)
                            if best is None or key[:2] > best[:2]:
                                best = key
            return best[2] if best is not None else None

        chosen = sorted(bases, key=lambda b: b.short)[:MIRROR_BASES]
        found = await asyncio.gather(*(newest(base) for base in chosen))
        return dict(zip(chosen, found, strict=True))


def from_lines(dockerfile: Path) -> list[str]:
    """``Dockerfile line 4: FROM ${REGISTRY}/upstream/os:stable`` for each ``FROM`` of an
    image, as written (a ``FROM`` of an earlier stage, or of scratch, is left out)."""
    try:
        parsed = read_dockerfile(dockerfile)
    except CareenError:
        return []
    return [f"{dockerfile.name} line {stage.line}: FROM {stage.base}"
            for stage in parsed.stages if stage.from_stage is None and not stage.is_scratch]


def pinned_packages(dockerfile: Path, packages: Iterable[str]) -> dict[str, str]:
    """Each of ``packages`` that a line of the Dockerfile pins to a version
    (``openssl=3.0.11-1``, ``openssl==3.0``, ``openssl@3.0``, ``openssl-3.0.11``) -> ``Dockerfile
    line 3: RUN apt-get install -y openssl=3.0.11-1~deb12u1``."""
    try:
        text = dockerfile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    wanted = [p for p in packages if p]
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        for package in wanted:
            if package not in found and re.search(
                    rf"(?<![\w.+-]){re.escape(package)}(?:==|=|@|-(?=\d))[\w.:~+-]*\d", line):
                shown = " ".join(line.split())
                found[package] = f"{dockerfile.name} line {number}: {shown[:120]}"
    return found


def scans_of_plan(in_tree: Mapping[ImageReference, Image],
                  selected: Sequence[Image]) -> dict[ImageReference, Image]:
    """The scan of every plan image: the tree's images, and the selected images the tree
    cannot build (skipped ones show their real scans, not "no scan")."""
    scans: dict[ImageReference, Image] = {}
    for image in selected:
        scans[image_key(image.reference) or image.reference] = image
    scans.update(in_tree)
    return scans
