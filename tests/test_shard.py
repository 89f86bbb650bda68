from __future__ import annotations

import functools
import string
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from careen.errors import UsageError
from careen.plan import Plan, PlanStep, SkippedImage, SkipReason, StepReason
from careen.reference import ImageReference
from careen.results import ImageResult, Outcome, RunResult
from careen.shard import merge_results, parse_shard, shard

CREATED = datetime(2017, 12, 8, 2, tzinfo=UTC)


#: [a-z][a-z0-9]{0,6}, from alphabets: st.from_regex spent most of these tests' time.
NAMES = st.tuples(st.sampled_from(string.ascii_lowercase),
                  st.text(string.ascii_lowercase + string.digits, max_size=6)).map("".join)


@functools.cache
def parent_positions(count: int) -> st.SearchStrategy[list[int]]:
    """1 to 3 distinct positions among ``count`` candidate parents, in the order drawn: what
    ``st.lists(st.sampled_from(candidates), ...)`` draws (an index per element), from one
    strategy per count instead of a new one per step (building and checking a strategy
    cost more than drawing from it)."""
    return st.lists(st.integers(0, count - 1), min_size=1, max_size=3, unique=True)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A random plan: images on levels, each above level 0 with parents one level up or
    more."""
    count = draw(st.integers(0, 30))
    names = draw(st.lists(NAMES, min_size=count, max_size=count, unique=True))
    steps: list[PlanStep] = []
    for index, name in enumerate(names):
        earlier = list(steps)
        level = 0 if not earlier else draw(st.integers(0, max(s.level for s in earlier) + 1))
        candidates = [s.image for s in earlier if s.level < level]
        if level and not candidates:
            level = 0
        parents: tuple[ImageReference, ...] = ()
        if level:
            chosen = [candidates[i] for i in draw(parent_positions(len(candidates)))]
            level = 1 + max(s.level for s in steps if s.image in chosen)
            parents = tuple(chosen)
        image = ImageReference(f"library/{name}", str(index))
        steps.append(PlanStep(image, level, StepReason.CASCADE if parents else
                              StepReason.SELECTED, "", parents, f"{name}/{index}",
                              f"{name}/{index}/Dockerfile"))
    skipped = tuple(SkippedImage(ImageReference(f"apps/skip{i}", "1"), SkipReason.NO_FOLDER, "")
                    for i in range(draw(st.integers(0, 3))))
    steps.sort(key=lambda s: (s.level, s.image.short))
    return Plan(tuple(steps), skipped, "/tree", CREATED, id="plan-1")


@settings(max_examples=60, deadline=None)
@given(plans(), st.integers(1, 6))
def test_shards_partition_the_plan_exactly(plan: Plan, n: int) -> None:
    shards = [shard(plan, k, n) for k in range(1, n + 1)]
    images = [step.image for part in shards for step in part.steps]
    assert sorted(images) == sorted(step.image for step in plan.steps)  # each exactly once
    assert [s for part in shards for s in part.skipped] == list(plan.skipped)
    for k, part in enumerate(shards, start=1):
        assert part.id == plan.id and part.extra["shard"] == (k, n)
        assert list(part.steps) == sorted(part.steps, key=lambda s: (s.level, s.image.short))
        assert all(step in plan.steps for step in part.steps)  # levels and parents kept
    for level in plan.levels:  # each level dealt out evenly
        sizes = [sum(1 for s in part.steps if s.level == level[0].level) for part in shards]
        assert max(sizes) - min(sizes) <= 1
    assert shard(plan, 1, n) == shards[0]  # deterministic


@settings(max_examples=40, deadline=None)
@given(plans(), st.integers(1, 5))
def test_shard_results_merge_back_into_the_whole_run(plan: Plan, n: int) -> None:
    def run_of(part: Plan, k: int) -> RunResult:
        images = tuple(ImageResult(s.image, Outcome.FIXED, "r", level=s.level,
                                   parents=s.parents) for s in part.steps)
        started = CREATED + timedelta(minutes=k)
        return RunResult(f"run-{k}", started, started + timedelta(minutes=10 * k), "high > 0",
                         images, plan_id=plan.id, unscanned=(("library/x:1", "error"),),
                         judged=k)

    results = [run_of(shard(plan, k, n), k) for k in range(1, n + 1)]
    merged = merge_results(results)
    assert sorted(r.image for r in merged.images) == sorted(s.image for s in plan.steps)
    assert merged.started_at == CREATED + timedelta(minutes=1)
    assert merged.finished_at == CREATED + timedelta(minutes=n + 10 * n)
    assert merged.run_id == "+".join(f"run-{k}" for k in range(1, n + 1))
    assert merged.unscanned == (("library/x:1", "error"),)
    assert merged.counts["fixed"] == len(plan.steps)
    assert [r.image for r in merged.images] == sorted(
        (r.image for r in merged.images), key=lambda i: (
            next(s.level for s in plan.steps if s.image == i), i.short))


def result(run_id: str, *images: str, plan_id: str = "plan-1",
           policy: str = "high > 0") -> RunResult:
    return RunResult(run_id, CREATED, CREATED, policy,
                     tuple(ImageResult(ImageReference.parse(i), Outcome.FIXED, "r")
                           for i in images), plan_id=plan_id)


def test_an_image_in_two_shards_is_an_error() -> None:
    with pytest.raises(UsageError, match=r"library/a:1 is in run r1 and in run r2"):
        merge_results([result("r1", "library/a:1"), result("r2", "library/b:1", "library/a:1")])


@pytest.mark.parametrize(("other", "what"), [
    (result("r2", plan_id="plan-2"), "plans"), (result("r2", policy="medium >= 3"), "policies"),
])
def test_shards_of_different_plans_or_policies_do_not_merge(other: RunResult,
                                                           what: str) -> None:
    with pytest.raises(UsageError, match=f"different {what}"):
        merge_results([result("r1"), other])


def test_nothing_to_merge() -> None:
    with pytest.raises(UsageError, match="nothing to merge"):
        merge_results([])


def test_merged_run_id_can_be_given() -> None:
    assert merge_results([result("r1")], run_id="run-x").run_id == "run-x"


@pytest.mark.parametrize(("text", "expected"), [("1/1", (1, 1)), ("2/5", (2, 5)),
                                                (" 3 / 3 ", (3, 3))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "2", "1/2/3", "-1/2"])
def test_bad_shard_specs(text: str) -> None:
    with pytest.raises(UsageError):
        parse_shard(text)


def test_shard_checks_k_and_n() -> None:
    plan = Plan((), (), "/tree", CREATED)
    with pytest.raises(UsageError):
        shard(plan, 0, 2)
