"""Verify: ask Harbor to rescan what was pushed, and judge each rebuild before/after.

The seed pushed and hoped. After a night's pushes, each pushed image is rescanned (by its new
digest, so the judged scan is the new image's even if the tag moves again; by tag on Harbor
1.x), the scans are awaited up to a deadline, and every image of the plan gets its outcome
(:mod:`careen.results`): fixed, improved, rebuild did not help (with the likely cause),
rescan missing, failed, skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace

from careen.events import NULL_OBSERVER, Observer
from careen.inventory import Image
from careen.plan import Plan, StepReason
from careen.policy import Policy
from careen.reference import ImageReference
from careen.registries.http import HarborApiError
from careen.registries.interface import Clock, ScanSource, Sleep, wait_for_final_scans
from careen.results import ImageResult, Outcome, judge_rebuild, sort_results
from careen.scan import ScanSummary
from careen.update import StepOutcome, StepStatus

#: Rescan requests sent to Harbor at once.
RESCAN_CONCURRENCY = 8


async def rescan(source: ScanSource, images: Iterable[ImageReference], *, timeout: float,
                 interval: float, observer: Observer = NULL_OBSERVER,
                 clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> dict[ImageReference, ScanSummary]:
    """Ask Harbor to scan each image (by digest) and wait until every scan is final or
    ``timeout`` seconds passed; the latest summary of each.

    Harbor learns of a pushed digest from the registry's notification, which may come a
    moment after the push: an artifact Harbor does not know yet (404) is asked again until
    the deadline, and left out of the results if it never becomes known."""
    wanted = list(dict.fromkeys(images))
    deadline = clock() + timeout
    limit = asyncio.Semaphore(RESCAN_CONCURRENCY)
    requested: set[ImageReference] = set()

    async def ask(image: ImageReference) -> None:
        async with limit:
            try:
                await source.request_scan(image)
            except HarborApiError as error:
                if error.status != 404:
                    raise
                return
            requested.add(image)

    while True:
        await asyncio.gather(*(ask(i) for i in wanted if i not in requested))
        if len(requested) == len(wanted) or clock() >= deadline:
            break
        await sleep(min(interval, max(0.0, deadline - clock())))
    results = await wait_for_final_scans(
        source, [i for i in wanted if i in requested],
        timeout=max(0.0, deadline - clock()), interval=interval, observer=observer,
        clock=clock, sleep=sleep)
    missing = [i.short for i in wanted if i not in requested]
    if missing:
        observer.warning(f"Harbor does not know {len(missing)} pushed image(s) after "
                         f"{timeout:.0f} s: {', '.join(missing[:5])}")
    return results


def results_of(plan: Plan, outcomes: Iterable[StepOutcome], *, policy: Policy,
               before: Mapping[ImageReference, Image],
               after: Mapping[ImageReference, ScanSummary] | None) -> tuple[ImageResult, ...]:
    """Every image of the plan, judged. ``after`` maps each pushed image to its rescan;
    ``None`` means no rescan was asked (``[run] rescan = false``, ``update``)."""
    results: list[ImageResult] = []
    for outcome in outcomes:
        step = outcome.step
        old = before.get(step.image)
        base = ImageResult(
            image=step.image, outcome=Outcome.SKIPPED, level=step.level,
            reason=step.detail + (" (first rebuild: Careen never built this tag)"
                                  if step.first_rebuild else ""),
            parents=step.parents, selected=step.reason is StepReason.SELECTED,
            before=old.scan if old is not None else None,
            before_digest=old.digest if old is not None else step.digest,
            after_digest=outcome.digest, duration=outcome.duration or None,
            log_path=str(outcome.log_path) if outcome.log_path else None,
            log_tail=outcome.log_tail,
        )
        if outcome.status in (StepStatus.PUSHED, StepStatus.ALREADY_PUSHED):
            if after is None or outcome.digest is None:
                results.append(replace(base, outcome=Outcome.REBUILT,
                                       note="pushed; not rescanned"))
                continue
            verdict, note = judge_rebuild(policy, step.image, base.before,
                                          after.get(step.image),
                                          before_digest=base.before_digest,
                                          after_digest=outcome.digest)
            results.append(replace(base, outcome=verdict, note=note,
                                   after=after.get(step.image)))
        elif outcome.status is StepStatus.FAILED:
            results.append(replace(base, outcome=Outcome.FAILED,
                                   note=f"{outcome.reason or 'failed'}; see {outcome.log_path}"))
        elif outcome.status is StepStatus.WOULD_BUILD:
            results.append(replace(base, outcome=Outcome.PLANNED, note="dry run"))
        else:
            results.append(replace(base, note=outcome.reason or "skipped"))
    for skipped in plan.skipped:
        old = before.get(skipped.image)
        results.append(ImageResult(
            image=skipped.image, outcome=Outcome.SKIPPED, reason=skipped.detail,
            note=skipped.reason.value, selected=True,
            before=old.scan if old is not None else None,
            before_digest=old.digest if old is not None else None,
        ))
    return sort_results(results)


def scan_targets(outcomes: Iterable[StepOutcome], *,
                 by_digest: bool = True) -> dict[ImageReference, ImageReference]:
    """Each pushed image -> the reference to rescan: its pushed digest, so the scan judged
    is the new image's even if the tag moves again; by tag for Harbor 1.x, whose scan API
    names tags only."""
    return {
        o.step.image: ImageReference(o.step.image.repository, None, o.digest) if by_digest
        else o.step.image
        for o in outcomes
        if o.status in (StepStatus.PUSHED, StepStatus.ALREADY_PUSHED) and o.digest
    }
