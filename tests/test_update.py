"""Executing a plan: order, concurrency, failures that skip children, resume."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from careen.attention import AttentionKind
from careen.builders.interface import (
    BuildRequest,
    BuildResult,
    Failure,
    PushResult,
    Status,
)
from careen.events import NullObserver
from careen.plan import Candidate, Plan, PlanStep, make_plan
from careen.reference import ImageReference
from careen.shard import only_images
from careen.tree.discover import discover_tree
from careen.update import (
    StepOutcome,
    StepStatus,
    UpdateOptions,
    execute_plan,
    outcome_attention,
)


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


@dataclass
class FakeBuilder:
    """Records what it was asked; fails the images named in ``fail``."""

    name: str = "fake"
    fail: set[str] = field(default_factory=set)
    fail_push: set[str] = field(default_factory=set)
    delay: float = 0.0
    events: list[tuple[str, str]] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def build(self, request: BuildRequest) -> BuildResult:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.events.append(("build", request.image.short))
        time.sleep(self.delay)
        with self.lock:
            self.running -= 1
        status = Status.FAILED if request.image.short in self.fail else Status.SUCCEEDED
        return BuildResult(request.image, status, 0.0, request.log_path, ("step 1",),
                           error=Failure.BUILD_FAILED if status is Status.FAILED else None)

    def push(self, request: BuildRequest) -> PushResult:
        self.events.append(("push", request.image.short))
        if request.image.short in self.fail_push:
            return PushResult(request.image, Status.FAILED, 0.0, request.log_path,
                              error=Failure.AUTH_REJECTED)
        return PushResult(request.image, Status.SUCCEEDED, 0.0, request.log_path,
                          digest="sha256:" + "c" * 64)


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    """base <- jre <- tomcat; base <- nginx; tools alone."""
    for folder, text in {
        "base/1.0": "FROM scratch\n", "jre/8": "FROM library/base:1.0\n",
        "tomcat/8.5": "FROM library/jre:8\n", "nginx/1.25": "FROM library/base:1.0\n",
        "tools/1": "FROM scratch\n",
    }.items():
        (tmp_path / "tree" / folder).mkdir(parents=True)
        (tmp_path / "tree" / folder / "Dockerfile").write_text(text)
    tree = discover_tree(tmp_path / "tree")
    return make_plan([Candidate(ref("library/base:1.0"), "high 1 > 0"),
                      Candidate(ref("library/tools:1"), "high 1 > 0")], tree,
                     now=datetime(2026, 1, 1, tzinfo=UTC))


def options(tmp_path: Path, **extra: object) -> UpdateOptions:
    return UpdateOptions(registry="registry.abc.com", run_id="run-1",
                         log_dir=tmp_path / "logs", revision="abc123", **extra)  # type: ignore[arg-type]


async def test_parents_are_pushed_before_children(plan: Plan, tmp_path: Path) -> None:
    builder = FakeBuilder()
    outcomes = await execute_plan(plan, builder, options(tmp_path))
    assert all(o.status is StepStatus.PUSHED for o in outcomes)
    pushes = [image for kind, image in builder.events if kind == "push"]
    for parent, child in [("base:1.0", "jre:8"), ("jre:8", "tomcat:8.5"),
                          ("base:1.0", "nginx:1.25")]:
        assert pushes.index(f"library/{parent}") < builder.events.index(
            ("build", f"library/{child}"))
    assert outcomes[0].image == ref("registry.abc.com/library/base:1.0")


async def test_a_failed_parent_skips_its_children_only(plan: Plan, tmp_path: Path) -> None:
    builder = FakeBuilder(fail={"library/jre:8"})
    outcomes = {o.step.image.short: o for o in await execute_plan(plan, builder,
                                                                   options(tmp_path))}
    assert outcomes["library/jre:8"].status is StepStatus.FAILED
    assert outcomes["library/jre:8"].reason == "build failed"
    assert outcomes["library/tomcat:8.5"].status is StepStatus.SKIPPED
    assert outcomes["library/tomcat:8.5"].reason == "parent library/jre:8 failed"
    assert outcomes["library/nginx:1.25"].status is StepStatus.PUSHED
    assert outcomes["library/tools:1"].status is StepStatus.PUSHED
    assert ("build", "library/tomcat:8.5") not in builder.events
    # A person must look at the failed build (its log) and the child it held back.
    items = outcome_attention(outcomes.values())
    assert [(i.kind, i.subject) for i in items] == [
        (AttentionKind.BUILD_FAILED, "library/jre:8"),
        (AttentionKind.PARENT_FAILED, "library/tomcat:8.5")]
    assert items[0].path == str(outcomes["library/jre:8"].log_path)
    assert items[0].reason == f"build failed (log: {outcomes['library/jre:8'].log_path})"
    assert items[1].advice == "fix library/jre:8 first; its children follow"


async def test_auth_rejected_push_is_a_failure(plan: Plan, tmp_path: Path) -> None:
    builder = FakeBuilder(fail_push={"library/tools:1"})
    outcomes = {o.step.image.short: o for o in await execute_plan(plan, builder,
                                                                   options(tmp_path))}
    assert outcomes["library/tools:1"].status is StepStatus.FAILED
    assert outcomes["library/tools:1"].reason == "auth rejected"


async def test_jobs_build_independent_images_at_once(plan: Plan, tmp_path: Path) -> None:
    builder = FakeBuilder(delay=0.05)
    await execute_plan(plan, builder, options(tmp_path, jobs=2))
    assert builder.most_at_once == 2
    serial = FakeBuilder(delay=0.01)
    await execute_plan(plan, serial, options(tmp_path, jobs=1))
    assert serial.most_at_once == 1


async def test_jobs_beyond_the_default_thread_pool_all_build_at_once(tmp_path: Path) -> None:
    """--jobs 16 on a 2-CPU agent means 16 builds at once: asyncio's default executor has
    min(32, CPUs + 4) threads, so 16 builds that each wait for all 16 to have started would
    break the barrier (its timeout) if the executor borrowed that pool."""
    for n in range(16):
        (tmp_path / "tree" / f"app{n:02d}" / "1.0").mkdir(parents=True)
        (tmp_path / "tree" / f"app{n:02d}" / "1.0" / "Dockerfile").write_text("FROM scratch\n")
    tree = discover_tree(tmp_path / "tree")
    wide = make_plan([Candidate(ref(f"library/app{n:02d}:1.0"), "high 1 > 0")
                      for n in range(16)], tree, now=datetime(2026, 1, 1, tzinfo=UTC))
    barrier = threading.Barrier(16, timeout=10)

    class MeetingBuilder(FakeBuilder):
        def build(self, request: BuildRequest) -> BuildResult:
            barrier.wait()
            return super().build(request)

    builder = MeetingBuilder()
    outcomes = await execute_plan(wide, builder, options(tmp_path, jobs=16))
    assert [o.status for o in outcomes] == [StepStatus.PUSHED] * 16
    assert not barrier.broken


async def test_resume_does_not_build_what_was_pushed(plan: Plan, tmp_path: Path) -> None:
    builder = FakeBuilder()
    pushed = {"library/base:1.0": "sha256:" + "a" * 64}
    outcomes = {o.step.image.short: o for o in await execute_plan(
        plan, builder, options(tmp_path), already_pushed=pushed)}
    assert outcomes["library/base:1.0"].status is StepStatus.ALREADY_PUSHED
    assert outcomes["library/base:1.0"].digest == "sha256:" + "a" * 64
    assert ("build", "library/base:1.0") not in builder.events
    assert outcomes["library/jre:8"].status is StepStatus.PUSHED


async def test_dry_run_builds_nothing(plan: Plan, tmp_path: Path) -> None:
    builder = FakeBuilder()
    outcomes = await execute_plan(plan, builder, options(tmp_path, dry_run=True))
    assert {o.status for o in outcomes} == {StepStatus.WOULD_BUILD}
    assert builder.events == []


async def test_only_limits_the_run(plan: Plan, tmp_path: Path) -> None:
    builder = FakeBuilder()
    outcomes = await execute_plan(only_images(plan, [ref("library/tools:1")]), builder,
                                  options(tmp_path))
    assert [e for e in builder.events if e[0] == "build"] == [("build", "library/tools:1")]
    assert "library/base:1.0" not in {o.step.image.short for o in outcomes}


async def test_every_outcome_is_recorded_with_labels(plan: Plan, tmp_path: Path) -> None:
    seen: list[StepOutcome] = []
    requests: list[BuildRequest] = []

    class Recorder:
        def step_started(self, step: object, image: ImageReference, log_path: Path) -> None:
            pass

        def step_finished(self, outcome: StepOutcome) -> None:
            seen.append(outcome)

    class LabelCheck(FakeBuilder):
        def build(self, request: BuildRequest) -> BuildResult:
            requests.append(request)
            return super().build(request)

    await execute_plan(plan, LabelCheck(), options(tmp_path), recorder=Recorder())
    assert len(seen) == len(plan.steps)
    labels = requests[0].labels
    assert labels["org.opencontainers.image.revision"] == "abc123"
    assert labels["careen.run"] == "run-1"
    assert requests[0].context == Path(plan.tree_root) / "base/1.0"


async def test_ctrl_c_while_children_wait_still_records_the_parent_in_flight(
    plan: Plan, tmp_path: Path,
) -> None:
    """Ctrl-C cancels the children waiting for base as well as base's own step; base's build
    in flight ends, and its push is recorded (a resume trusts that record), not lost to the
    children's cancelled wait."""
    building = threading.Event()
    release = threading.Event()

    class SlowBaseBuilder(FakeBuilder):
        def build(self, request: BuildRequest) -> BuildResult:
            if request.image.short == "library/base:1.0":
                building.set()
                release.wait(30)
            return super().build(request)

    recorded: list[StepOutcome] = []

    class Recorder:
        def step_started(self, step: object, image: object, log_path: object) -> None:
            pass

        def step_finished(self, outcome: StepOutcome) -> None:
            recorded.append(outcome)

    warnings: list[str] = []

    class Watcher(NullObserver):
        def warning(self, message: str) -> None:
            warnings.append(message)

    running = asyncio.ensure_future(execute_plan(plan, SlowBaseBuilder(), options(tmp_path),
                                                 recorder=Recorder(), observer=Watcher()))
    while not building.is_set():
        await asyncio.sleep(0.01)
    running.cancel()
    await asyncio.sleep(0.05)  # the cancellation reaches the waiting children first
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await running
    base = [o for o in recorded if o.step.image.short == "library/base:1.0"]
    assert [o.status for o in base] == [StepStatus.PUSHED]
    assert warnings == []  # no step broke while stopping (the parent's result was delivered)


def tree_plan(tmp_path: Path, folders: dict[str, str], selected: list[str]) -> Plan:
    for folder, text in folders.items():
        (tmp_path / "tree" / folder).mkdir(parents=True)
        (tmp_path / "tree" / folder / "Dockerfile").write_text(text)
    return make_plan([Candidate(ref(image), "high 1 > 0") for image in selected],
                     discover_tree(tmp_path / "tree"), now=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def chain_and_singles(tmp_path: Path) -> Plan:
    """Three independent images first in plan order (``aa``, ``ab``, ``ac``), then the head of
    a chain of three (``zbase`` <- ``zmid`` <- ``zapp``)."""
    return tree_plan(tmp_path, {
        "aa/1": "FROM scratch\n", "ab/1": "FROM scratch\n", "ac/1": "FROM scratch\n",
        "zbase/1": "FROM scratch\n", "zmid/1": "FROM library/zbase:1\n",
        "zapp/1": "FROM library/zmid:1\n",
    }, ["library/aa:1", "library/ab:1", "library/ac:1", "library/zbase:1"])


def builds(builder: FakeBuilder) -> list[str]:
    return [image.removeprefix("library/") for kind, image in builder.events if kind == "build"]


async def test_a_long_chain_starts_before_short_independent_steps(
    chain_and_singles: Plan, tmp_path: Path,
) -> None:
    """With one slot, the chain's head goes first (its chain is the longest still to
    come), although three single images precede it in plan order."""
    assert [s.image.repository for s in chain_and_singles.steps[:4]] == [
        "library/aa", "library/ab", "library/ac", "library/zbase"]
    builder = FakeBuilder()
    await execute_plan(chain_and_singles, builder, options(tmp_path, jobs=1))
    assert builds(builder)[0] == "zbase:1"
    assert builds(builder)[1:].index("zmid:1") < builds(builder)[1:].index("zapp:1")


async def test_two_slots_keep_the_chain_going_beside_the_singles(
    chain_and_singles: Plan, tmp_path: Path,
) -> None:
    builder = FakeBuilder(delay=0.02)
    await execute_plan(chain_and_singles, builder, options(tmp_path, jobs=2))
    order = builds(builder)
    # The chain's head and the first single start at once. When they end, the slot the
    # head frees waits for its push to be recorded, and goes to the middle link (two builds
    # still to come), not to a single (one): the chain never waits behind the singles.
    assert set(order[:2]) == {"zbase:1", "aa:1"}
    assert set(order[2:4]) == {"zmid:1", "ab:1"}
    # The last link ties with the singles (one build each): plan order decides.
    assert order[4:] == ["ac:1", "zapp:1"]


async def test_past_build_durations_rank_the_chains(tmp_path: Path) -> None:
    """Two chains of the same depth: the one whose builds took longer last time starts
    first; without history plan order decides (``fast`` before ``slow``)."""
    plan = tree_plan(tmp_path, {
        "fast/1": "FROM scratch\n", "fastapp/1": "FROM library/fast:1\n",
        "slow/1": "FROM scratch\n", "slowapp/1": "FROM library/slow:1\n",
    }, ["library/fast:1", "library/slow:1"])
    unranked = FakeBuilder()
    await execute_plan(plan, unranked, options(tmp_path, jobs=1))
    assert builds(unranked)[0] == "fast:1"
    ranked = FakeBuilder()
    history = {"library/fast:1": 10.0, "library/fastapp:1": 5.0,
               "library/slow:1": 60.0, "library/slowapp:1": 30.0}
    await execute_plan(plan, ranked, options(tmp_path, jobs=1, build_seconds=history))
    assert builds(ranked)[0] == "slow:1"


async def test_a_child_starts_only_once_its_parents_push_is_recorded(
    plan: Plan, tmp_path: Path,
) -> None:
    """The recorder writes in a thread of its own; a child's build still waits until its
    parent's outcome is written (what a resume trusts), while independent builds go on."""
    recorded: set[str] = set()
    early: list[str] = []

    class SlowRecorder:
        def step_started(self, step: object, image: object, log_path: object) -> None:
            pass

        def step_finished(self, outcome: StepOutcome) -> None:
            time.sleep(0.05)  # a slow disk
            recorded.add(outcome.step.image.short)

    class Checking(FakeBuilder):
        def build(self, request: BuildRequest) -> BuildResult:
            step = plan.step(request.image)
            assert step is not None
            early.extend(p.short for p in step.parents if p.short not in recorded)
            return super().build(request)

    outcomes = await execute_plan(plan, Checking(), options(tmp_path, jobs=2),
                                  recorder=SlowRecorder())
    assert {o.status for o in outcomes} == {StepStatus.PUSHED}
    assert early == []
    assert len(recorded) == len(plan.steps)


async def test_a_failing_record_fails_the_run(plan: Plan, tmp_path: Path) -> None:
    class BrokenRecorder:
        def step_started(self, step: object, image: object, log_path: object) -> None:
            pass

        def step_finished(self, outcome: StepOutcome) -> None:
            raise OSError("disk full")

    builder = FakeBuilder()
    with pytest.raises(OSError, match="disk full"):
        await execute_plan(plan, builder, options(tmp_path), recorder=BrokenRecorder())
    # Nothing was recorded as pushed, so no child was built on it.
    assert builds(builder) in (["base:1.0"], ["base:1.0", "tools:1"])


# -- a push starts only once its start is on disk (a crash in the push is then resumable) ----

IMAGE_ID = "sha256:" + "1" * 64


class IdBuilder(FakeBuilder):
    """Reports an image id, as buildah and docker do (``--iidfile``)."""

    def build(self, request: BuildRequest) -> BuildResult:
        built = super().build(request)
        return BuildResult(built.image, built.status, built.duration, built.log_path,
                           built.log_tail, image_id=IMAGE_ID if built.ok else None,
                           error=built.error)


async def test_a_push_starts_only_once_its_start_is_recorded(plan: Plan,
                                                              tmp_path: Path) -> None:
    """Each step's calls reach the recorder in order (start, push starting with the built
    image's id and the build's seconds, end), and the push waits until the push-starting
    record has returned (a slow disk), never before."""
    calls: list[tuple[str, str]] = []
    recorded_pushes: set[str] = set()
    early: list[str] = []

    class SlowRecorder:
        def step_started(self, step: PlanStep, image: ImageReference, log_path: Path) -> None:
            calls.append(("started", step.image.short))

        def push_starting(self, step: PlanStep, image: ImageReference, image_id: str,
                          built_seconds: float) -> None:
            assert image_id == IMAGE_ID and built_seconds >= 0
            time.sleep(0.03)  # a fsync on a slow disk
            calls.append(("pushing", step.image.short))
            recorded_pushes.add(image.short)

        def step_finished(self, outcome: StepOutcome) -> None:
            calls.append(("finished", outcome.step.image.short))

    class Checking(IdBuilder):
        def push(self, request: BuildRequest) -> PushResult:
            if request.image.short not in recorded_pushes:
                early.append(request.image.short)
            return super().push(request)

    outcomes = await execute_plan(plan, Checking(), options(tmp_path, jobs=2),
                                  recorder=SlowRecorder())
    assert {o.status for o in outcomes} == {StepStatus.PUSHED}
    assert early == []
    for step in plan.steps:
        mine = [kind for kind, image in calls if image == step.image.short]
        assert mine == ["started", "pushing", "finished"], (step.image.short, mine)


async def test_no_push_starts_when_its_start_cannot_be_recorded(plan: Plan,
                                                                 tmp_path: Path) -> None:
    """A push-starting record that fails (disk full) stops that push and fails the run: a
    push the state could not announce would be unknown to a resume."""
    class FullDisk:
        def step_started(self, step: object, image: object, log_path: object) -> None:
            pass

        def push_starting(self, step: object, image: object, image_id: str,
                          built_seconds: float) -> None:
            raise OSError("disk full")

        def step_finished(self, outcome: StepOutcome) -> None:
            pass

    builder = IdBuilder()
    with pytest.raises(OSError, match="disk full"):
        await execute_plan(plan, builder, options(tmp_path), recorder=FullDisk())
    # The first build's push never started (the other single image may have been built,
    # by the slot taking it before the failure reached the event loop; nor was it pushed).
    assert [kind for kind, _ in builder.events] in (["build"], ["build", "build"])


async def test_a_builder_without_image_ids_records_no_push_start(plan: Plan,
                                                                  tmp_path: Path) -> None:
    """Without the built image's id a resume could prove nothing: no record, no fsync."""
    starts: list[str] = []

    class Recorder:
        def step_started(self, step: object, image: object, log_path: object) -> None:
            pass

        def push_starting(self, step: PlanStep, image: object, image_id: str,
                          built_seconds: float) -> None:
            starts.append(step.image.short)

        def step_finished(self, outcome: StepOutcome) -> None:
            pass

    outcomes = await execute_plan(plan, FakeBuilder(), options(tmp_path), recorder=Recorder())
    assert {o.status for o in outcomes} == {StepStatus.PUSHED}
    assert starts == []
