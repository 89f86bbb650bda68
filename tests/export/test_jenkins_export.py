from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from careen.errors import UsageError
from careen.export.jenkins import groovy_string, jenkins_stage
from careen.plan import Plan
from tests.export.plans import sample_plan
from tests.jenkins.groovy import result, run_groovy, steps

PLAN_ID = "plan-20171208-020001-beef"


def pipeline(stage: str) -> str:
    indented = "\n".join("        " + line if line else line for line in stage.splitlines())
    return f"pipeline {{\n    agent none\n    stages {{\n{indented}\n    }}\n}}\n"


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    return sample_plan(tmp_path)


def test_one_sequential_stage_per_level_with_parallel_branches(plan: Plan) -> None:
    text = jenkins_stage(plan, plan_id=PLAN_ID, agent_label="docker && linux")
    assert text.count("parallel {") == 3
    levels = text.split("stage('level ")[1:]
    assert [chunk.count("careen update") for chunk in levels] == [3, 1, 1]
    assert "agent { label 'docker && linux' }" in text
    assert ("sh(script: 'careen update --plan careen-plan.json --only library/jre:8u191 "
            "--reports-dir reports/library_jre_8u191', returnStatus: true)") in text
    # Agents share no state: each branch gets the tree and the plan file the planning
    # stage stashed, and stashes its result for 'careen report --merge'.
    assert text.count("checkout scm") == text.count("careen update") == 5
    assert text.count("unstash 'careen-plan'") == 5
    assert "includes: 'reports/library_jre_8u191/careen.json'" in text


def test_the_stage_parses_and_runs_each_image_once_in_level_order(
        plan: Plan, tmp_path: Path) -> None:
    label = "x' ) } ; sh('rm -rf /') ; { ('"  # a label cannot escape its string
    plain, hostile = tmp_path / "Jenkinsfile", tmp_path / "Jenkinsfile.hostile"
    plain.write_text(pipeline(jenkins_stage(plan, plan_id=PLAN_ID, agent_label="docker")))
    hostile.write_text(pipeline(jenkins_stage(plan, plan_id=PLAN_ID, agent_label=label)))
    # Each file is run, which compiles all of it first: a run that ends with a RESULT line
    # is also the syntax check. Both files in one Groovy start (a start costs seconds).
    answers = run_groovy(run={plain: [0, 1, 3], hostile: [0]})
    runs, hostile_run = answers.runs_of(plain), answers.runs_of(hostile)[0]
    commands = [shlex.split(line.split("script=", 1)[1].rsplit(",returnStatus", 1)[0])
                for line in steps(runs[0]) if line.startswith("sh ")]
    assert commands == [["careen", "update", "--plan", "careen-plan.json", "--only",
                         s.image.short, "--reports-dir",
                         "reports/" + s.image.short.replace("/", "_").replace(":", "_")]
                        for s in plan.steps]
    assert [result(runs[status]) for status in (0, 1, 3)] == ["SUCCESS", "UNSTABLE", "FAILURE"]
    assert result(hostile_run) == "SUCCESS"
    hostile_steps = steps(hostile_run)
    labels = [line for line in hostile_steps if line.startswith("label ")]
    assert labels == [f"label {label}"] * len(plan.steps)
    assert [line for line in hostile_steps if line.startswith("sh ")] == [
        line for line in steps(runs[0]) if line.startswith("sh ")]


def test_groovy_string_escapes() -> None:
    assert groovy_string("a'b\\c$d") == "'a\\'b\\\\c$d'"
    with pytest.raises(UsageError):
        groovy_string("line\nbreak")


@pytest.mark.parametrize("plan_id", ["", "plan id", "x'y", "-rf"])
def test_bad_plan_ids_are_refused(plan: Plan, plan_id: str) -> None:
    with pytest.raises(UsageError, match="plan id"):
        jenkins_stage(plan, plan_id=plan_id, agent_label="docker")


def test_empty_label_is_refused(plan: Plan) -> None:
    with pytest.raises(UsageError, match="agent label"):
        jenkins_stage(plan, plan_id=PLAN_ID, agent_label=" ")


def test_an_empty_plan_is_a_stage_that_says_so(plan: Plan) -> None:
    empty = Plan((), (), plan.tree_root, plan.created_at)
    text = jenkins_stage(empty, plan_id=PLAN_ID, agent_label="docker")
    assert "nothing to rebuild" in text and "parallel" not in text
