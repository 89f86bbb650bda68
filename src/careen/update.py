"""Execute a plan: build and push each step, parents before children, N at once.

The seed's ``update-images`` ran ``docker build`` then ``docker push`` per line, one after the
other, and stopped at nothing. Here:

* a step starts when every parent it has in the plan is pushed (so with ``jobs > 1``
  independent images of a level build at once, and a slow branch never holds up another);
* a failed build or push never stops the others: the step's children are skipped with the
  reason ("parent library/base:1.0 failed");
* every state change goes to the recorder (the state database) as it happens, so a run
  killed half-way is resumed without building or pushing again what was pushed
  (``already_pushed``);
* Ctrl-C (cancellation) stops starting new steps; what finished is recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from careen.attention import AttentionItem, AttentionKind
from careen.builders.interface import (
    Builder,
    BuildRequest,
    BuildResult,
    PushResult,
    standard_labels,
)
from careen.builders.interface import (
    Status as BuildStatus,
)
from careen.events import NULL_OBSERVER, Observer
from careen.plan import Plan, PlanStep
from careen.reference import ImageReference


class StepStatus(StrEnum):
    PUSHED = "pushed"
    #: Pushed by an earlier, interrupted run of the same plan: not built again.
    ALREADY_PUSHED = "already_pushed"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: ``--dry-run``: what would be built.
    WOULD_BUILD = "would_build"


@dataclass(frozen=True, slots=True)
class StepOutcome:
    step: PlanStep
    status: StepStatus
    image: ImageReference
    digest: str | None = None
    duration: float = 0.0
    log_path: Path | None = None
    log_tail: tuple[str, ...] = ()
    #: Why it failed (``build failed``, ``auth rejected``...) or was skipped.
    reason: str | None = None
    #: The parent whose failure (or skip) made this step be skipped.
    blocked_by: ImageReference | None = None

    @property
    def ok(self) -> bool:
        return self.status in (StepStatus.PUSHED, StepStatus.ALREADY_PUSHED,
                               StepStatus.WOULD_BUILD)


def outcome_attention(outcomes: Iterable[StepOutcome]) -> tuple[AttentionItem, ...]:
    """The steps a person must look at: failed builds or pushes (with their log), and the
    steps skipped because a parent failed."""
    items: list[AttentionItem] = []
    for outcome in outcomes:
        image = outcome.step.image.short
        if outcome.status is StepStatus.FAILED:
            log = f" (log: {outcome.log_path})" if outcome.log_path else ""
            items.append(AttentionItem(
                AttentionKind.BUILD_FAILED, image, f"{outcome.reason or 'failed'}{log}",
                path=str(outcome.log_path) if outcome.log_path else None))
        elif outcome.status is StepStatus.SKIPPED and outcome.blocked_by is not None:
            items.append(AttentionItem(
                AttentionKind.PARENT_FAILED, image,
                f"not rebuilt: {outcome.reason or 'a parent failed'}",
                next_step=f"fix {outcome.blocked_by.short} first; its children follow"))
    return tuple(items)


class UpdateRecorder(Protocol):
    """Where the executor reports each state change (the state store implements it)."""

    def step_started(self, step: PlanStep, image: ImageReference, log_path: Path) -> None: ...

    def step_finished(self, outcome: StepOutcome) -> None: ...


class NullRecorder:
    def step_started(self, step: PlanStep, image: ImageReference, log_path: Path) -> None:
        pass

    def step_finished(self, outcome: StepOutcome) -> None:
        pass


@dataclass(frozen=True)
class UpdateOptions:
    """How to build. ``registry`` is the host images are pushed to (``registry.abc.com``);
    ``revision`` the tree's git commit and ``source`` its URL (both become OCI labels)."""

    registry: str
    run_id: str
    log_dir: Path
    jobs: int = 1
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = True
    pull: bool = True
    timeout: float = 3600.0
    revision: str | None = None
    source: str | None = None
    dry_run: bool = False
    #: The labels recording a step's inputs (careen.hold), given the digests its parents
    #: were pushed under in this run; ``None``: no input labels.
    input_labels: Callable[[PlanStep, Mapping[ImageReference, str]], Mapping[str, str]] | \
        None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError("jobs must be at least 1")


def build_request(step: PlanStep, plan: Plan, options: UpdateOptions,
                  created: datetime,
                  pushed_parents: Mapping[ImageReference, str] | None = None) -> BuildRequest:
    """The builder's request for one step: the image named on the push registry, the
    folder and Dockerfile under the plan's tree root, Careen's labels on top of the config's."""
    root = Path(plan.tree_root)
    image = ImageReference(step.image.repository, step.image.tag, None, options.registry)
    labels = {
        **options.labels,
        **standard_labels(created, options.revision or "unknown",
                          options.source or str(root), options.run_id,
                          tree_path=step.folder),
        **(options.input_labels(step, pushed_parents or {}) if options.input_labels else {}),
    }
    safe_name = f"{step.image.repository.replace('/', '_')}_{step.image.tag}"
    return BuildRequest(
        image=image, context=root / step.folder, dockerfile=root / step.dockerfile,
        log_path=options.log_dir / f"{safe_name}.log", build_args=options.build_args,
        labels=labels, no_cache=options.no_cache, pull=options.pull,
        platforms=step.platforms, timeout=options.timeout, extra_tags=step.tags[1:],
    )


async def execute_plan(
    plan: Plan, builder: Builder, options: UpdateOptions, *,
    recorder: UpdateRecorder | None = None,
    already_pushed: Mapping[str, str] | None = None,
    observer: Observer = NULL_OBSERVER,
) -> list[StepOutcome]:
    """Run the plan's steps; returns one outcome per step, in plan order.

    ``already_pushed`` maps ``repository:tag`` to the digest an earlier run of this plan
    pushed (resume). A part of a plan (``careen.shard``: ``--only``, ``--shard``,
    ``--level``) is a plan of its own whose steps' parents outside it were built elsewhere."""
    record = recorder or NullRecorder()
    pushed_before = dict(already_pushed or {})
    created = datetime.now(UTC)
    options.log_dir.mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(options.jobs)
    # Builds run in threads of their own: asyncio's default executor has min(32, CPUs + 4)
    # threads, which would cap --jobs 16 at 6 builds at once on a 2-CPU agent.
    workers = ThreadPoolExecutor(max_workers=options.jobs, thread_name_prefix="careen-build")
    loop = asyncio.get_running_loop()
    done: dict[ImageReference, asyncio.Future[StepOutcome]] = {
        step.image: asyncio.get_running_loop().create_future() for step in plan.steps
    }
    total = len(plan.steps)
    finished = 0

    def finish(outcome: StepOutcome) -> StepOutcome:
        nonlocal finished
        record.step_finished(outcome)
        finished += 1
        observer.progress("images", finished, total)
        done[outcome.step.image].set_result(outcome)
        return outcome

    async def run_step(step: PlanStep) -> StepOutcome:
        # Shielded: cancelling a waiting child (Ctrl-C) must not cancel its parent's future,
        # which the parent's own step still completes when its build in flight ends.
        parents = [await asyncio.shield(done[parent]) for parent in step.parents
                   if parent in done]
        request = build_request(step, plan, options, created, {
            p.step.image: p.digest for p in parents if p.digest is not None})
        failed = [p for p in parents if not p.ok]
        if failed:
            return finish(StepOutcome(
                step, StepStatus.SKIPPED, request.image,
                reason=f"parent {failed[0].step.image.short} "
                       f"{'was skipped' if failed[0].status is StepStatus.SKIPPED else 'failed'}",
                blocked_by=failed[0].step.image,
            ))
        if step.image.short in pushed_before:
            observer.info(f"{step.image.short}: pushed by an earlier run of this plan "
                          f"({pushed_before[step.image.short][:19]}...), not built again")
            return finish(StepOutcome(step, StepStatus.ALREADY_PUSHED, request.image,
                                      digest=pushed_before[step.image.short]))
        if options.dry_run:
            observer.processing(f"{request.image} (dry run: would build {step.folder})")
            return finish(StepOutcome(step, StepStatus.WOULD_BUILD, request.image,
                                      log_path=request.log_path))
        async with limit:
            observer.processing(str(request.image))
            record.step_started(step, request.image, request.log_path)
            started = time.monotonic()
            work = loop.run_in_executor(workers, _build_and_push, builder, request)
            try:
                built, pushed = await asyncio.shield(work)
            except asyncio.CancelledError:
                # A thread cannot be stopped: wait for the step (Ctrl-C reached the build
                # tool too, so it ends soon) and record it, so a push that completed is
                # known to the resume and never made twice. Further cancellations (a second
                # Ctrl-C, the event loop's shutdown) do not stop that wait.
                await _uncancellable(work)
                built, pushed = work.result()
                finish(_outcome(step, request, built, pushed, time.monotonic() - started,
                                observer))
                raise
            duration = time.monotonic() - started
        return finish(_outcome(step, request, built, pushed, duration, observer))

    tasks = [asyncio.create_task(run_step(step)) for step in plan.steps]
    try:
        return list(await asyncio.gather(*tasks))
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        # Let every step record how it ended (a build in flight finishes first).
        stopping = asyncio.gather(*tasks, return_exceptions=True)
        await _uncancellable(stopping)
        for error in stopping.result():
            # A step that failed while stopping (not one that was cancelled) is a bug or a
            # state write that did not happen: said, not swallowed.
            if isinstance(error, Exception):
                observer.warning(f"while stopping: {type(error).__name__}: {error}")
        raise
    finally:
        workers.shutdown(wait=False)


async def _uncancellable(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` even if the waiting task is cancelled meanwhile."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue


def _build_and_push(builder: Builder,
                    request: BuildRequest) -> tuple[BuildResult, PushResult | None]:
    built = builder.build(request)
    if not built.ok:
        return built, None
    return built, builder.push(request)


def _outcome(step: PlanStep, request: BuildRequest, built: BuildResult,
             pushed: PushResult | None, duration: float, observer: Observer) -> StepOutcome:
    if pushed is not None and pushed.ok:
        observer.info(f"{request.image}: pushed {pushed.digest or '(digest unknown)'} "
                      f"in {duration:.1f} s")
        return StepOutcome(step, StepStatus.PUSHED, request.image, digest=pushed.digest,
                           duration=duration, log_path=request.log_path,
                           log_tail=pushed.log_tail or built.log_tail)
    failure = pushed if pushed is not None else built
    reason = str(failure.error.value) if failure.error is not None else "failed"
    # A builder that cannot do what the step needs (several platforms) skips it; anything
    # else is a failure.
    unsupported = failure.status is BuildStatus.UNSUPPORTED
    status = StepStatus.SKIPPED if unsupported else StepStatus.FAILED
    observer.warning(f"{request.image}: {reason} (log: {request.log_path})")
    return StepOutcome(step, status, request.image, duration=duration,
                       log_path=request.log_path, log_tail=failure.log_tail, reason=reason)
