"""Split a plan over N CI jobs, and merge their results back into one run.

``careen update --plan ID --shard K/N`` runs shard K of N (1-based, as CI matrices count).
Sharding is level-aware: each level's images are dealt out over the N shards (sorted by name,
round robin, so every shard gets about as many images of each level and the split is the same
on every machine), and a shard's plan keeps every level, parents before children.

A shard's step keeps its parents even when another shard builds them: the executor does not
wait for images outside its plan, it expects them pushed. So shards run level by level (a
matrix per level, or ``careen export jenkins``), or the whole matrix after one pass of the
bases; a child whose parent was not pushed is built on the old parent and shows up as "did
not help" in the merged report rather than silently.

Skipped images (no folder, ignored...) belong to shard 1, so that the merged run lists each
once. :func:`merge_results` refuses an image reported by two shards: that is two jobs
pushing one tag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from careen.errors import UsageError
from careen.plan import Plan
from careen.reference import ImageReference
from careen.results import RunResult, sort_results

_SHARD_SPEC = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*\Z")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/5"`` -> ``(2, 5)``; a :class:`UsageError` for anything else."""
    match = _SHARD_SPEC.match(text)
    if match is None:
        raise UsageError(f"--shard {text!r}: expected K/N, like 2/5 (shard 2 of 5)")
    k, n = int(match.group(1)), int(match.group(2))
    _check(k, n)
    return k, n


def _check(k: int, n: int) -> None:
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"--shard {k}/{n}: K must be between 1 and N, and N at least 1",
                         hint="shards count from 1: --shard 1/3, 2/3, 3/3")


def shard(plan: Plan, k: int, n: int) -> Plan:
    """Shard ``k`` of ``n`` (1-based) of ``plan``: the same plan id, a subset of its steps."""
    _check(k, n)
    kept = []
    for level in plan.levels:
        ordered = sorted(level, key=lambda step: step.image.short)
        kept += [step for index, step in enumerate(ordered) if index % n == k - 1]
    kept.sort(key=lambda step: (step.level, step.image.short))
    return replace(plan, steps=tuple(kept), skipped=plan.skipped if k == 1 else (),
                   extra={**plan.extra, "shard": (k, n)})


def only_images(plan: Plan, images: Sequence[ImageReference]) -> Plan:
    """The steps of ``plan`` for ``images`` only (``careen update --plan ID --only IMAGE``):
    their parents are taken as built by an earlier stage (another agent, another level), as
    for a shard. An image the plan does not build is an error naming the plan's images."""
    wanted = {image.short for image in images}
    known = {step.image.short for step in plan.steps}
    # A step pushed under several tags is asked for by any of them.
    unknown = sorted(wanted - {ref.short for step in plan.steps for ref in step.references})
    if unknown:
        some = ", ".join(sorted(known)[:8]) + (" ..." if len(known) > 8 else "")
        raise UsageError(f"--only {unknown[0]}: plan {plan.id} does not rebuild it",
                         hint=f"the plan's images: {some or 'none'}")
    kept = tuple(step for step in plan.steps
                 if any(ref.short in wanted for ref in step.references))
    return replace(plan, steps=kept, skipped=(),
                   extra={**plan.extra, "only": tuple(sorted(wanted))})


def at_level(plan: Plan, level: int) -> Plan:
    """The steps of one level of ``plan`` (``--level L``): a CI matrix builds level 0 in
    parallel jobs, then level 1, ... so no child is built before its parents are pushed."""
    levels = sorted({step.level for step in plan.steps})
    if level not in levels:
        raise UsageError(f"--level {level}: plan {plan.id} has levels "
                         f"{', '.join(map(str, levels)) or 'none'}")
    return replace(plan, steps=tuple(s for s in plan.steps if s.level == level),
                   skipped=plan.skipped if level == levels[0] else (),
                   extra={**plan.extra, "level": (level,)})


def merge_results(results: Sequence[RunResult], *, run_id: str | None = None) -> RunResult:
    """One run made of the shards' runs: their images together, the earliest start and the
    latest end. The shards must have run the same plan under the same policy; an image in
    two of them is an error. ``run_id`` names the merged run (default: the shards' ids
    joined with ``+``)."""
    if not results:
        raise UsageError("nothing to merge: give the JSON results of the shards")
    first = results[0]
    for other in results[1:]:
        for what, mine, theirs in (("plans", first.plan_id, other.plan_id),
                                   ("policies", first.policy, other.policy)):
            if mine != theirs:
                raise UsageError(
                    f"runs {first.run_id} and {other.run_id} have different {what} "
                    f"({mine!r} and {theirs!r}): only shards of one plan can be merged")
    owner: dict[str, str] = {}
    for result in results:
        for image in result.images:
            key = image.image.short
            if key in owner:
                raise UsageError(
                    f"{key} is in run {owner[key]} and in run {result.run_id}: shards "
                    "must not share an image", hint="merge the results of one --shard K/N "
                    "split only, each shard once")
            owner[key] = result.run_id
    unscanned = tuple(dict.fromkeys(pair for result in results for pair in result.unscanned))
    return RunResult(
        run_id=run_id or "+".join(dict.fromkeys(result.run_id for result in results)),
        started_at=min(result.started_at for result in results),
        finished_at=max(result.finished_at for result in results),
        policy=first.policy,
        images=sort_results([image for result in results for image in result.images]),
        plan_id=first.plan_id,
        tree_commit=next((r.tree_commit for r in results if r.tree_commit), None),
        harbor=next((r.harbor for r in results if r.harbor), None),
        registry=next((r.registry for r in results if r.registry), None),
        unscanned=unscanned,
        judged=max(result.judged for result in results),
        dry_run=any(result.dry_run for result in results),
        extra={"shards": [result.run_id for result in results]},
        # Each shard carries the plan's own items (its unreadable lines): once each here.
        untagged=tuple(dict.fromkeys(pair for result in results for pair in result.untagged)),
        attention=tuple(dict.fromkeys(item for result in results for item in result.attention)),
        fleet=next((result.fleet for result in results if result.fleet), {}),
        details_note=next((r.details_note for r in results if r.details_note), ""),
    )
