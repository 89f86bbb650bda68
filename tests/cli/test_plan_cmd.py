"""``careen plan``, ``careen update --plan`` (a stored plan, a plan file from another machine,
``--only``, ``--shard``), ``careen history`` and ``careen show``: wiring, as a person and a
CI job use them. The nightly job itself is tested in tests/test_nightly*.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from careen.sim.harbor import SimulatorServer
from tests.cli.conftest import SAMPLES

Run = Any


@pytest.fixture
def listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vulnerable.list"
    path.write_text("5=2,   library/base:1.0\n4=3,   library/mysql:5.7.18\nlibrary/nosuch:1\n")
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", "registry.abc.com")
    monkeypatch.setenv("CAREEN_TREE_ROOT", str(SAMPLES / "tree"))
    return path


def test_plan_from_a_list_is_stored_and_printed_as_json(careen: Run, listed: Path) -> None:
    result = careen("plan", "--from", str(listed), "-f", "json")
    assert result.code == 1, result.err  # library/nosuch:1 has no folder: needs attention
    assert "needs attention: library/nosuch:1: no Dockerfile folder" in result.err
    document = json.loads(result.out)
    steps = [(s["level"], s["image"], s["reason"]) for s in document["steps"]]
    assert steps[0] == (0, "library/base:1.0", "selected")
    assert (2, "library/tomcat:8.5", "cascade") in steps
    assert [s["image"] for s in document["skipped"]] == ["library/nosuch:1"]
    assert f"careen update --plan {document['id']}" in result.err
    shown = careen("update", "--plan", document["id"], "--dry-run")
    assert shown.code == 1, shown.err  # the stored plan still holds the skip
    assert f"plan {document['id']}" in shown.err


def test_plan_table_names_every_step_and_why(careen: Run, listed: Path) -> None:
    result = careen("plan", "--from", str(listed), "--no-cascade")
    assert result.code == 1, result.err
    assert "library/base:1.0" in result.out and "library/mysql:5.7.18" in result.out
    assert "library/tomcat" not in result.out  # no cascade
    assert "no_folder" in result.out


def test_plan_from_harbor(careen: Run, harbor_env: SimulatorServer,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREEN_TREE_ROOT", str(SAMPLES / "tree"))
    result = careen("plan", "-f", "json")
    assert result.code == 1, result.err
    document = json.loads(result.out)
    assert document["source"] == "harbor"
    # The sample fleet's activemq breaks the policy and has no folder in the sample tree.
    assert "library/activemq:5.14.4" in {s["image"] for s in document["skipped"]}
    assert "needs attention: library/activemq:5.14.4: no Dockerfile folder" in result.err
    # Untagged digests are no plan rows.
    assert not any("@" in s["image"] for s in document["skipped"] + document["steps"])


def test_a_plan_file_runs_on_a_machine_that_never_saw_the_plan(
    careen: Run, listed: Path, tmp_path: Path,
) -> None:
    """A CI agent gets the plan as a file (stash/unstash) and its own, empty state."""
    made = careen("plan", "--from", str(listed), "-f", "json", "--state",
                  str(tmp_path / "planner.sqlite"))
    plan_file = tmp_path / "careen-plan.json"
    plan_file.write_text(made.out)
    plan_id = json.loads(made.out)["id"]

    result = careen("update", "--plan", str(plan_file), "--only", "library/jre:8u191",
                    "--dry-run", "--state", str(tmp_path / "agent.sqlite"))

    assert result.code == 0, result.err
    assert re.findall(r"^plan: level \d (\S+)", result.err, re.MULTILINE) == [
        "library/jre:8u191"]
    history = careen("export", "jenkins", "--plan", plan_id, "--state",
                     str(tmp_path / "agent.sqlite"))
    assert history.code == 0, history.err  # the agent's state knows the plan by its id


def test_only_an_image_the_plan_does_not_build_is_refused(careen: Run, listed: Path) -> None:
    plan_id = json.loads(careen("plan", "--from", str(listed), "-f", "json").out)["id"]
    result = careen("update", "--plan", plan_id, "--only", "library/nope:1", "--dry-run")
    assert result.code == 2
    assert "does not rebuild it" in result.err and "library/base:1.0" in result.err


def test_shards_split_each_level(careen: Run, listed: Path) -> None:
    plan_id = json.loads(careen("plan", "--from", str(listed), "-f", "json").out)["id"]
    seen: list[str] = []
    for k in (1, 2):
        result = careen("update", "--plan", plan_id, "--shard", f"{k}/2", "--dry-run")
        assert result.code == (1 if k == 1 else 0), result.err  # shard 1 carries the skips
        seen += re.findall(r"^plan: level \d (\S+)", result.err, re.MULTILINE)
    everything = careen("update", "--plan", plan_id, "--dry-run")
    assert sorted(seen) == sorted(re.findall(r"^plan: level \d (\S+)", everything.err,
                                             re.MULTILINE))


def test_history_and_show_read_an_empty_or_missing_state(careen: Run, tmp_path: Path) -> None:
    missing = careen("history", "--state", str(tmp_path / "none.sqlite"))
    assert missing.code == 2 and "no state" in missing.err
    assert not (tmp_path / "none.sqlite").exists()
    plan = careen("show", "run-nope", "--state", str(tmp_path / "none.sqlite"))
    assert plan.code == 2


def test_a_level_of_the_plan_and_its_shards(careen: Run, listed: Path) -> None:
    plan_id = json.loads(careen("plan", "--from", str(listed), "-f", "json").out)["id"]
    result = careen("update", "--plan", plan_id, "--level", "1", "--shard", "1/1", "--dry-run")
    assert result.code == 0, result.err
    assert set(re.findall(r"^plan: level (\d) ", result.err, re.MULTILINE)) == {"1"}
    assert careen("update", "--plan", plan_id, "--level", "9", "--dry-run").code == 2
