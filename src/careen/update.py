"""Execute a plan: build and push each step, parents before children, N at once.

The seed's ``update-images`` ran ``docker build`` then ``docker push`` per line, one after the
other, and stopped at nothing. Here:

* a step starts when every parent it has in the plan is pushed (so with ``jobs > 1``
  independent images of a level build at once, and a slow branch never holds up another);
* a failed build or push never stops the others: the step's children are skipped with the
  reason ("parent library/base:1.0 failed");
* every state change goes to the recorder (the state database) as it happens, so a run
  killed half-way is resumed without building or pushing again what was pushed
  (``already_pushed``); a child starts only once its parents' pushes are recorded;
* a push starts only once the recorder has committed that it starts, with the built image's
  id: a run killed after the registry took the push but before its record is resumed by
  asking the registry whether the tag serves that image (:mod:`careen.nightly`), not by
  pushing it again;
* when more steps are ready than ``jobs`` allows, the one heading the longest chain of
  builds still to come starts first (by the builds' past durations where the state has
  them), so the night does not end on a long chain begun late;
* Ctrl-C (cancellation) stops starting new steps; what finished is recorded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import heapq
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeAlias

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
from careen.plan import Plan, PlanStep, remaining_paths, step_links
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
    """Where the executor reports each state change (the state store implements it).

    The executor calls it from one thread of its own, never the event loop's, one call at a
    time and in order (a step's start before its end). A recorder may also offer
    ``grouped()``, a context manager making the calls inside it one transaction: the
    executor then writes the records that queued up meanwhile together."""

    def step_started(self, step: PlanStep, image: ImageReference, log_path: Path) -> None: ...

    def push_starting(self, step: PlanStep, image: ImageReference, image_id: str,
                      built_seconds: float) -> None:
        """The step's image ``image_id`` (its config digest) is built and is about to be
        pushed. Must be committed when it returns (or when its group commits; a commit that
        survives Careen being killed is enough): the push waits for it, so that a push the
        registry took is never unknown to a resume."""
        ...

    def step_finished(self, outcome: StepOutcome) -> None: ...


class NullRecorder:
    def step_started(self, step: PlanStep, image: ImageReference, log_path: Path) -> None:
        pass

    def push_starting(self, step: PlanStep, image: ImageReference, image_id: str,
                      built_seconds: float) -> None:
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
    #: ``repository:tag`` -> seconds its last build took (the state's history): of the steps
    #: ready to build, the one heading the longest chain by them starts first.
    build_seconds: Mapping[str, float] = field(default_factory=dict)

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
    ``--level``) is a plan of its own whose steps' parents outside it were built elsewhere.

    A step is ready once every parent's outcome is recorded; of the ready steps, the one
    heading the longest remaining chain of builds starts first when a slot frees
    (:func:`careen.plan.remaining_paths`, weighed by ``options.build_seconds``), plan order
    breaking ties. Each slot is a thread that takes the next ready step itself as soon as
    its build is pushed, and the recorder's writes run in a thread of their own
    (:class:`_RecordWriter`): no build waits for the event loop, nor for a push of another
    branch being written to disk."""
    record = recorder or NullRecorder()
    pushed_before = dict(already_pushed or {})
    created = datetime.now(UTC)
    options.log_dir.mkdir(parents=True, exist_ok=True)
    steps = plan.steps
    total = len(steps)
    if not total:
        return []
    parents_of, children = step_links(plan)
    waiting = [len(parents) for parents in parents_of]
    rank = remaining_paths(plan, options.build_seconds)
    outcomes: list[StepOutcome | None] = [None] * total
    requests: dict[int, BuildRequest] = {}
    loop = asyncio.get_running_loop()
    writer = _RecordWriter(record, loop)
    all_recorded: asyncio.Future[None] = loop.create_future()
    recorded_count = 0
    # What the build threads share with the event loop, under ``schedule``'s lock: the
    # ready steps, the parents each step still waits for, the slots in use.
    schedule = threading.Condition()
    #: Ready steps waiting for a slot: the longest remaining chain first, then plan order.
    ready: list[tuple[float, int]] = []
    #: Builds in flight (a thread frees its slot itself, and takes the next ready step
    #: without waiting for the event loop: no round trip between two builds).
    building = 0
    #: Slots kept free for a child about to be released (see holds_slot).
    held = 0
    #: Builds taken by a thread whose outcome the event loop has not received yet.
    undelivered = 0
    stopping = False
    closing = False
    idle: asyncio.Future[None] = loop.create_future()

    def fail(error: BaseException) -> None:
        if not all_recorded.done():
            all_recorded.set_exception(error)

    def settle(index: int, outcome: StepOutcome, *, holding: bool = False) -> None:
        outcomes[index] = outcome
        writer.submit(record.step_finished, outcome).add_done_callback(
            functools.partial(recorded, index, holding))

    def recorded(index: int, holding: bool, written: asyncio.Future[None]) -> None:
        # A push is on disk: its children may start (a resume trusts that record).
        nonlocal recorded_count, held
        try:
            with schedule:
                if holding:
                    held -= 1
                written.result()
                recorded_count += 1
                observer.progress("images", recorded_count, total)
                if not stopping:
                    for child in children[index]:
                        waiting[child] -= 1
                        if waiting[child] == 0:
                            become_ready(child)
                schedule.notify_all()
            if recorded_count == total and not all_recorded.done():
                all_recorded.set_result(None)
        except BaseException as error:  # a callback's error would only be logged by asyncio
            fail(error)

    def become_ready(index: int) -> None:
        step = steps[index]
        parents = [outcome for outcome in (outcomes[p] for p in parents_of[index])
                   if outcome is not None]
        request = build_request(step, plan, options, created, {
            p.step.image: p.digest for p in parents if p.digest is not None})
        failed = [p for p in parents if not p.ok]
        if failed:
            settle(index, StepOutcome(
                step, StepStatus.SKIPPED, request.image,
                reason=f"parent {failed[0].step.image.short} "
                       f"{'was skipped' if failed[0].status is StepStatus.SKIPPED else 'failed'}",
                blocked_by=failed[0].step.image,
            ))
        elif step.image.short in pushed_before:
            observer.info(f"{step.image.short}: pushed by an earlier run of this plan "
                          f"({pushed_before[step.image.short][:19]}...), not built again")
            settle(index, StepOutcome(step, StepStatus.ALREADY_PUSHED, request.image,
                                      digest=pushed_before[step.image.short]))
        elif options.dry_run:
            observer.processing(f"{request.image} (dry run: would build {step.folder})")
            settle(index, StepOutcome(step, StepStatus.WOULD_BUILD, request.image,
                                      log_path=request.log_path))
        else:
            requests[index] = request
            heapq.heappush(ready, (-rank[index], index))

    def holds_slot(index: int) -> bool:
        """Whether the slot step ``index`` frees waits for its child: the child its record
        releases outranks every ready step. Its push is being written (a fsync): given to a
        lesser step now, the slot would keep the longest chain waiting a whole build. Never
        with one slot (the night lasts the sum of its builds in any order), nor with nothing
        ready (no step would take the slot: the child finds it free)."""
        if options.jobs == 1 or not ready:
            return False
        released = [rank[child] for child in children[index] if waiting[child] == 1]
        return bool(released) and max(released) > -ready[0][0]

    def build_thread() -> None:
        nonlocal building, held, undelivered
        while True:
            with schedule:
                while not closing and (stopping or not ready or building + held >= options.jobs):
                    schedule.wait()
                if closing:
                    return
                _, index = heapq.heappop(ready)
                building += 1
                undelivered += 1
                request = requests.pop(index)
            loop.call_soon_threadsafe(build_starting, request)
            # Queued by this thread itself (no hop through the event loop): the step's push
            # start, queued by this thread too, and its outcome, queued by the event loop
            # once this thread hands it over, come after it. Not waited for: the build
            # needs no record to start.
            writer.submit_from_thread(record.step_started, steps[index], request.image,
                                      request.log_path).add_done_callback(started_recorded)
            started = time.monotonic()
            error: BaseException | None = None
            built: BuildResult | None = None
            pushed: PushResult | None = None
            try:
                built, pushed = _build_and_push(builder, request, functools.partial(
                    push_recorded, index, request, started))
            except BaseException as failure:  # delivered to the event loop, raised there
                error = failure
            duration = time.monotonic() - started
            with schedule:
                building -= 1
                holding = (error is None and pushed is not None and pushed.ok
                           and not stopping and holds_slot(index))
                if holding:
                    held += 1
                else:
                    schedule.notify()
            loop.call_soon_threadsafe(build_done, index, request, built, pushed, duration,
                                      error, holding)

    def push_recorded(index: int, request: BuildRequest, started: float,
                      built: BuildResult) -> None:
        """In a build thread, between a successful build and its push: record that the push
        starts, and wait until that record is committed (the recorder's contract).
        A builder that reports no image id gives a resume nothing to compare the registry's
        answer with: no record then."""
        if built.image_id is None:
            return
        writer.submit_from_thread(record.push_starting, steps[index], request.image,
                                  built.image_id, time.monotonic() - started).result()

    def build_starting(request: BuildRequest) -> None:
        try:
            observer.processing(str(request.image))
        except BaseException as error:
            fail(error)

    def started_recorded(written: concurrent.futures.Future[None]) -> None:
        # In the record thread: a start record that failed fails the run, on the event loop.
        error = written.exception()
        if error is not None:
            with contextlib.suppress(RuntimeError):  # the event loop is closed: run over
                loop.call_soon_threadsafe(fail, error)

    def build_done(index: int, request: BuildRequest, built: BuildResult | None,
                   pushed: PushResult | None, duration: float, error: BaseException | None,
                   holding: bool) -> None:
        nonlocal undelivered
        try:
            if error is not None or built is None:
                failure = error or RuntimeError("a build ended without a result")
                if stopping:  # the run is ending anyway: said, not swallowed
                    observer.warning(f"while stopping: {type(failure).__name__}: {failure}")
                fail(failure)
            else:
                settle(index, _outcome(steps[index], request, built, pushed, duration,
                                       observer), holding=holding)
        except BaseException as failure:
            fail(failure)
        finally:
            with schedule:
                undelivered -= 1
                if stopping and not undelivered and not idle.done():
                    idle.set_result(None)

    # A thread per slot, each taking the next ready step as soon as its build is pushed
    # (not asyncio's default executor: min(32, CPUs + 4) threads would cap --jobs 16 at 6
    # builds at once on a 2-CPU agent).
    for number in range(options.jobs):
        threading.Thread(target=build_thread, name=f"careen-build-{number}",
                         daemon=True).start()
    try:
        with schedule:
            for index in range(total):
                if waiting[index] == 0:
                    become_ready(index)
            schedule.notify_all()
        # Shielded: cancelling this wait (Ctrl-C) must leave the future to the callbacks.
        await asyncio.shield(all_recorded)
    except BaseException:
        # Start nothing new; let every build in flight end (Ctrl-C reached the build tool
        # too, so it ends soon: a thread cannot be stopped) and record how it ended, so a
        # push that completed is known to the resume and never made twice.
        with schedule:
            stopping = True
            if not undelivered:
                idle.set_result(None)
        await _uncancellable(idle)
        for error in await _uncancellable_result(writer.drained()):
            # A write that failed while stopping is a state write that did not happen:
            # said, not swallowed.
            if isinstance(error, Exception):
                observer.warning(f"while stopping: {type(error).__name__}: {error}")
        raise
    finally:
        if all_recorded.done() and not all_recorded.cancelled():
            all_recorded.exception()  # raised above, or superseded by the cancellation
        with schedule:
            closing = True
            schedule.notify_all()
        writer.close()
    return [outcome for outcome in outcomes if outcome is not None]


class _RecordWriter:
    """Runs the recorder's calls in one thread of their own, in the order they were given,
    so that a state write's fsync holds up neither the event loop nor a build thread taking
    its next step. The calls that queue up while one group is being written are written
    together, as one transaction where the recorder offers ``grouped()`` (group commit:
    one fsync for all of them). A call's future is done once its group is committed."""

    def __init__(self, recorder: UpdateRecorder, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        grouped = getattr(recorder, "grouped", None)
        self._grouped: Callable[[], AbstractContextManager[object]] = (
            grouped if callable(grouped) else contextlib.nullcontext)
        self._queue: queue.SimpleQueue[_RecordCall | None] = queue.SimpleQueue()
        self._pending: set[asyncio.Future[None]] = set()
        #: Calls submitted by other threads (:meth:`submit_from_thread`) not written yet.
        self._from_threads: set[concurrent.futures.Future[None]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="careen-record", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[..., None], *args: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        self._queue.put((call, args, future))
        return future

    def submit_from_thread(self, call: Callable[..., None],
                           *args: Any) -> concurrent.futures.Future[None]:
        """:meth:`submit` for a thread other than the event loop's (a build thread): queued
        at once, in that thread's order; its future is done, in the record thread, once its
        group is committed."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self._from_threads.add(future)
        future.add_done_callback(self._written_from_thread)
        self._queue.put((call, args, future))
        return future

    def _written_from_thread(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._from_threads.discard(future)

    def drained(self) -> asyncio.Future[list[Any]]:
        """Done when every call submitted so far is written (or failed)."""
        with self._lock:
            from_threads = [asyncio.wrap_future(future, loop=self._loop)
                            for future in self._from_threads]
        return asyncio.gather(*self._pending, *from_threads, return_exceptions=True)

    def close(self) -> None:
        """The thread ends once it has written what was submitted before."""
        self._queue.put(None)

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is None:
                return
            calls = [first]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                calls.append(item)
            on_loop: list[tuple[asyncio.Future[None], Exception | None]] = []
            for future, error in self._write(calls):
                if isinstance(future, concurrent.futures.Future):  # its thread waits here
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
                else:
                    on_loop.append((future, error))
            if not on_loop:  # nothing for the event loop: do not wake it
                continue
            try:
                self._loop.call_soon_threadsafe(_deliver, on_loop)
            except RuntimeError:  # the event loop is closed: nobody waits for these
                return

    def _write(self, calls: list[_RecordCall]) -> list[tuple[_Written, Exception | None]]:
        results: list[tuple[_Written, Exception | None]] = []
        try:
            with self._grouped():
                for call, args, future in calls:
                    try:
                        call(*args)
                    except Exception as error:  # this call's own failure, delivered to it
                        results.append((future, error))
                    else:
                        results.append((future, None))
        except Exception as error:  # the group's commit failed: none of it is recorded
            return [(future, error) for _, _, future in calls]
        return results


#: Where a written call's outcome goes: the event loop's future (:meth:`_RecordWriter.submit`)
#: or another thread's (:meth:`_RecordWriter.submit_from_thread`).
_Written: TypeAlias = "asyncio.Future[None] | concurrent.futures.Future[None]"
_RecordCall = tuple[Callable[..., None], tuple[Any, ...], _Written]


def _deliver(results: list[tuple[asyncio.Future[None], Exception | None]]) -> None:
    for future, error in results:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


async def _uncancellable_result(future: asyncio.Future[list[Any]]) -> list[Any]:
    await _uncancellable(future)
    return future.result()


async def _uncancellable(future: asyncio.Future[Any]) -> None:
    """Wait for ``future`` even if the waiting task is cancelled meanwhile."""
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            continue


def _build_and_push(builder: Builder, request: BuildRequest,
                    before_push: Callable[[BuildResult], None],
                    ) -> tuple[BuildResult, PushResult | None]:
    """Build; if it succeeded, ``before_push`` (the committed record that the push starts),
    then push."""
    built = builder.build(request)
    if not built.ok:
        return built, None
    before_push(built)
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
