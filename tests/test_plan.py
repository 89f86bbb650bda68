"""The plan: what to rebuild, in which order, and why."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from careen.attention import AttentionItem, AttentionKind
from careen.errors import UsageError
from careen.plan import Candidate, Plan, SkipReason, StepReason, make_plan, remaining_paths
from careen.reference import ImageReference
from careen.scan import SeverityCounts
from careen.tree.discover import discover_tree


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def write(root: Path, folder: str, dockerfile: str) -> None:
    (root / folder).mkdir(parents=True)
    (root / folder / "Dockerfile").write_text(dockerfile)


@pytest.fixture
def tree_root(tmp_path: Path) -> Path:
    """base <- jre <- tomcat; base <- nginx; unrelated tools; cyclic a <-> b."""
    write(tmp_path, "base/1.0", "FROM scratch\n")
    write(tmp_path, "jre/8u191",
          "ARG REGISTRY=registry.abc.com\nFROM ${REGISTRY}/library/base:1.0\n")
    write(tmp_path, "tomcat/8.5", "FROM library/jre:8u191\n")
    write(tmp_path, "nginx/1.25", "FROM library/base:1.0\n")
    write(tmp_path, "tools/latest", "FROM alpine:3.19\n")
    write(tmp_path, "a/1", "FROM library/b:1\n")
    write(tmp_path, "b/1", "FROM library/a:1\n")
    return tmp_path


def plan_for(root: Path, *candidates: Candidate, **options: object) -> Plan:
    tree = discover_tree(root, registry="registry.abc.com")
    return make_plan(candidates, tree, now=datetime(2026, 11, 27, tzinfo=UTC), **options)  # type: ignore[arg-type]


def test_selected_base_cascades_to_children_in_level_order(tree_root: Path) -> None:
    plan = plan_for(tree_root, Candidate(ref("registry.abc.com/library/base:1.0"), "high 2 > 0",
                                         SeverityCounts(high=2)))
    order = [(s.level, s.image.short, s.reason) for s in plan.steps]
    assert order == [
        (0, "library/base:1.0", StepReason.SELECTED),
        (1, "library/jre:8u191", StepReason.CASCADE),
        (1, "library/nginx:1.25", StepReason.CASCADE),
        (2, "library/tomcat:8.5", StepReason.CASCADE),
    ]
    assert plan.steps[0].detail == "high 2 > 0"
    assert plan.steps[0].counts == SeverityCounts(high=2)
    assert plan.step(ref("library/tomcat:8.5")).detail == "child of library/jre:8u191"  # type: ignore[union-attr]
    assert plan.step(ref("library/tomcat:8.5")).parents == (ref("library/jre:8u191"),)  # type: ignore[union-attr]
    assert ref("library/tools:latest") not in {s.image for s in plan.steps}
    assert [len(level) for level in plan.levels] == [1, 2, 1]


def test_no_cascade_rebuilds_only_the_selected(tree_root: Path) -> None:
    plan = plan_for(tree_root, Candidate(ref("library/base:1.0"), "x"), cascade=False)
    assert [s.image.short for s in plan.steps] == ["library/base:1.0"]


def test_levels_count_only_parents_in_the_plan(tree_root: Path) -> None:
    plan = plan_for(tree_root, Candidate(ref("library/tomcat:8.5"), "medium 3 >= 3"))
    assert [(s.level, s.image.short, s.parents) for s in plan.steps] == [
        (0, "library/tomcat:8.5", ())
    ]


def test_skips_carry_their_reasons(tree_root: Path) -> None:
    plan = plan_for(
        tree_root,
        Candidate(ref("library/nosuch:1"), "high 1 > 0"),
        Candidate(ref("library/nginx:1.25"), "high 1 > 0", immutable=True),
        Candidate(ref("library/a:1"), "high 1 > 0"),
        Candidate(ref("library/tools:latest"), "high 1 > 0", is_index=True,
                  platforms=("linux/amd64", "linux/arm64")),
        Candidate(ImageReference("library/jre", None, "sha256:" + "a" * 64), "high 1 > 0"),
        multi_platform=False,
    )
    reasons = {s.image.short: s.reason for s in plan.skipped}
    # The untagged artifact is no image to rebuild: not a step, not a skip row either.
    assert reasons == {
        "library/nosuch:1": SkipReason.NO_FOLDER,
        "library/nginx:1.25": SkipReason.IMMUTABLE,
        "library/a:1": SkipReason.CYCLE,
        "library/tools:latest": SkipReason.MULTI_ARCH,
    }
    assert plan.steps == ()
    assert "no Dockerfile folder" in next(s.detail for s in plan.skipped
                                          if s.reason is SkipReason.NO_FOLDER)
    # Of these, a person must act on the missing folder and the cycle only (an immutable tag
    # and a builder without multi-arch were never Careen's to fix).
    assert [(item.kind, item.subject) for item in plan.attention] == [
        (AttentionKind.CYCLE, "library/a:1"), (AttentionKind.NO_FOLDER, "library/nosuch:1")]
    assert plan.attention[1].line() == (
        f"needs attention: library/nosuch:1: no Dockerfile folder for it under {tree_root}; "
        "next: add its folder to the tree, map it in [tree.mapping], or ignore it in "
        "[policy] ignore")


def test_a_plan_keeps_its_unreadable_lines_through_json(tree_root: Path) -> None:
    line = AttentionItem(AttentionKind.UNREADABLE_LINE, "vulnerable.list:4",
                         "the head before the comma must be 'SEVERITY=COUNT', e.g. '5=6'")
    plan = replace(plan_for(tree_root, Candidate(ref("library/nosuch:9"), "x")),
                   problems=(line,)).with_id("plan-2")
    document = plan.to_dict()
    assert [item["kind"] for item in document["attention"]] == ["unreadable_line", "no_folder"]
    again = Plan.from_dict(document)
    assert again.problems == (line,)  # the skip's item is derived again, not doubled
    assert again.attention == plan.attention


def test_ignored_and_immutable_children_stop_the_cascade(tree_root: Path) -> None:
    jre = ref("library/jre:8u191")
    plan = plan_for(
        tree_root, Candidate(ref("library/base:1.0"), "high 1 > 0"),
        ignored_by=lambda image: "library/nginx*" if image.repository == "library/nginx" else None,
        known={jre: Candidate(jre, "", immutable=True)},
    )
    assert [s.image.short for s in plan.steps] == ["library/base:1.0"]
    reasons = {s.image.short: s.reason for s in plan.skipped}
    assert reasons == {"library/jre:8u191": SkipReason.IMMUTABLE,
                       "library/nginx:1.25": SkipReason.IGNORED}


def test_already_rebuilt_images_are_skipped(tree_root: Path) -> None:
    plan = plan_for(tree_root, Candidate(ref("library/nginx:1.25"), "x"),
                    already_rebuilt=[ref("registry.abc.com/library/nginx:1.25")])
    assert [(s.image.short, s.reason) for s in plan.skipped] == [
        ("library/nginx:1.25", SkipReason.ALREADY_REBUILT)
    ]


def test_plan_round_trips_through_json(tree_root: Path) -> None:
    plan = plan_for(tree_root, Candidate(ref("library/base:1.0"), "high 2 > 0",
                                         SeverityCounts(high=2), digest="sha256:" + "b" * 64),
                    Candidate(ref("library/nosuch:1"), "x"), policy="high > 0").with_id("plan-1")
    again = Plan.from_dict(plan.to_dict())
    assert again == plan
    assert again.id == "plan-1"


def test_a_project_named_like_a_host_stays_a_project_in_a_stored_plan(tmp_path: Path) -> None:
    """Harbor accepts project names such as ``team.a``; a stored plan names images by their
    short form, which must read back as the project, not as a registry host."""
    write(tmp_path, "app/1", "FROM scratch\n")
    tree = discover_tree(tmp_path, project="team.a", registry="harbor.example.com")
    image = ImageReference("team.a/app", "1")
    plan = make_plan([Candidate(image, "high 1 > 0")], tree)
    again = Plan.from_dict(plan.to_dict())
    assert [s.image for s in again.steps] == [image]
    assert again.steps[0].image.registry is None


def test_damaged_or_foreign_plans_are_refused(tree_root: Path) -> None:
    data = plan_for(tree_root, Candidate(ref("library/base:1.0"), "x")).to_dict()
    with pytest.raises(UsageError, match="schema version"):
        Plan.from_dict({**data, "schema_version": 99})
    data["steps"][0]["image"] = "library/base;rm -rf /"
    with pytest.raises(UsageError, match="damaged"):
        Plan.from_dict(data)


def test_remaining_paths_count_the_longest_chain_below_each_step(tree_root: Path) -> None:
    plan = plan_for(tree_root, Candidate(ref("library/base:1.0"), "high"),
                    Candidate(ref("library/tools:latest"), "high"))
    images = [step.image.short for step in plan.steps]
    depth = dict(zip(images, remaining_paths(plan), strict=True))
    # base <- jre <- tomcat is three builds long; nginx, tomcat and tools are one.
    assert depth == {"library/base:1.0": 3.0, "library/tools:latest": 1.0,
                     "library/jre:8u191": 2.0, "library/nginx:1.25": 1.0,
                     "library/tomcat:8.5": 1.0}


def test_remaining_paths_weigh_builds_by_their_past_seconds(tree_root: Path) -> None:
    plan = plan_for(tree_root, Candidate(ref("library/base:1.0"), "high"),
                    Candidate(ref("library/tools:latest"), "high"))
    history = {"library/base:1.0": 10.0, "library/jre:8u191": 100.0,
               "library/nginx:1.25": 400.0, "library/tools:latest": 50.0}
    images = [step.image.short for step in plan.steps]
    seconds = dict(zip(images, remaining_paths(plan, history), strict=True))
    # tomcat was never built: it weighs the median of the known (75 s).
    assert seconds["library/tomcat:8.5"] == 75.0
    assert seconds["library/jre:8u191"] == 175.0
    # base heads nginx (400 s), longer than jre and tomcat (175 s).
    assert seconds["library/base:1.0"] == 410.0
    assert seconds["library/tools:latest"] == 50.0


def test_remaining_paths_do_not_trust_the_steps_order(tree_root: Path) -> None:
    """A plan read back or cut into parts may list a child first: the ranks are the same."""
    plan = plan_for(tree_root, Candidate(ref("library/base:1.0"), "high"))
    reversed_plan = replace(plan, steps=tuple(reversed(plan.steps)))
    forward = dict(zip(plan.steps, remaining_paths(plan), strict=True))
    backward = dict(zip(reversed_plan.steps, remaining_paths(reversed_plan), strict=True))
    assert forward == backward
