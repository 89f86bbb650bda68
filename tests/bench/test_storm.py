from __future__ import annotations

import json
from pathlib import Path

from bench import storm


def test_the_fleet_has_the_issues_shape() -> None:
    plan = storm.FleetPlan.of(1000)
    assert len(plan.parents) == 1000
    assert len(plan.no_fix) == len(plan.with_fix) == 150  # 30% break it, half without a fix
    bases = {name for name in plan.no_fix if name.startswith("library/base-")}
    assert len(bases) == 10  # bases among them, with all their children
    for base in bases:
        children = {n for n, parent in plan.parents.items() if parent == f"{base}:1"}
        assert children and children <= plan.no_fix
    assert plan.changed_by_republish("alpine:3.0") == {
        "library/base-0", *(f"library/app-{j}" for j in range(0, 900, 100))}


def test_three_nights_at_a_toy_size_hold_what_did_not_change(tmp_path: Path) -> None:
    out = tmp_path / "storm.json"
    assert storm.main(["--in-process", "--size", "200", "--jobs", "4", "--workdir", str(tmp_path),
                       "--json", str(out)]) == 0
    nights = {(r["hold"], r["night"]): r for r in json.loads(out.read_text())["nights"]}
    # Before this change the unfixable images are rebuilt every night.
    assert nights[(False, 2)]["builds"] == nights[(False, 3)]["builds"] == 30
    # With the hold: nothing on night 2 (all of them held, exit 1), then only the base whose
    # upstream was republished and its children.
    assert nights[(True, 2)]["builds"] == nights[(True, 2)]["pushes"] == 0
    assert nights[(True, 2)]["held"] == 30 and nights[(True, 2)]["exit_code"] == 1
    assert nights[(True, 3)]["builds"] == nights[(True, 3)]["inputs_changed"] == 10
    assert nights[(True, 3)]["held"] == 20
