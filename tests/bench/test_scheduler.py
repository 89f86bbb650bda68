from __future__ import annotations

import json
from pathlib import Path

from bench import scheduler


def test_fleet_is_levelled_and_seeded() -> None:
    fleet = scheduler.make_fleet(120, 6, 40.0, seed=3)
    assert len(fleet.names) == 120 and sorted(set(fleet.levels)) == list(range(6))
    for index, parents in enumerate(fleet.parents):
        assert all(fleet.levels[p] == fleet.levels[index] - 1 for p in parents)
    assert fleet == scheduler.make_fleet(120, 6, 40.0, seed=3)
    assert fleet.lower_bound(1) == sum(fleet.seconds)
    assert fleet.lower_bound(10_000) == fleet.critical_path()


def test_scheduler_bench_runs_at_a_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    scheduler.main(["--in-process", "--steps", "30", "--jobs", "1", "4", "--median-ms", "1",
                    "--repeat", "1", "--json", str(out)])
    report = json.loads(out.read_text())
    assert [case["jobs"] for case in report["cases"]] == [1, 4]
    assert all(case["order_violations"] == 0 for case in report["cases"])
    assert report["install"].startswith("this process")


def test_ideal_list_schedule_is_between_the_bound_and_one_job() -> None:
    fleet = scheduler.make_fleet(200, 6, 40.0, seed=1)
    for jobs in (1, 4, 16):
        ideal = fleet.ideal_list_schedule(jobs)
        assert fleet.lower_bound(jobs) - 1e-9 <= ideal <= sum(fleet.seconds) + 1e-9
    assert abs(fleet.ideal_list_schedule(1) - sum(fleet.seconds)) < 1e-9
    assert abs(fleet.ideal_list_schedule(10_000) - fleet.critical_path()) < 1e-9


def test_the_bench_ranks_as_the_executor_does() -> None:
    """The ideal schedule 'by Careen's priority' restates careen.plan.remaining_paths: the
    same ranks, with last night's durations and without."""
    from datetime import UTC, datetime

    from careen.plan import Plan, PlanStep, StepReason, remaining_paths
    from careen.reference import ImageReference

    fleet = scheduler.make_fleet(150, 6, 40.0, seed=2)
    refs = [ImageReference.parse_short(name) for name in fleet.names]
    plan = Plan(steps=tuple(
        PlanStep(image=ref, level=fleet.levels[i], reason=StepReason.CASCADE, detail="",
                 parents=tuple(refs[p] for p in fleet.parents[i]), folder="f", dockerfile="d")
        for i, ref in enumerate(refs)), skipped=(), tree_root="/", created_at=datetime.now(UTC))
    history = {ref.short: fleet.previous[i] for i, ref in enumerate(refs)}
    assert list(remaining_paths(plan, history)) == fleet.remaining_paths(True)
    assert list(remaining_paths(plan)) == fleet.remaining_paths(False)
    for jobs in (1, 4, 16):
        ranked = fleet.ideal_list_schedule(jobs, fleet.remaining_paths(True))
        assert fleet.lower_bound(jobs) - 1e-9 <= ranked <= sum(fleet.seconds) + 1e-9
