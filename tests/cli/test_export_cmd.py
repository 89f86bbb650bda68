"""``careen export bake|jenkins``: a stored plan as a docker-bake.json or a Jenkinsfile stage."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from careen.plan import Plan
from careen.state.store import StateStore
from tests.reports.test_from_state import BASE, HTTPD, JRE, TOMCAT, Clock, tree_plan

Run = Any
BAKE_SCHEMA = Path(__file__).parents[2] / "docs" / "schemas" / "bake.schema.json"


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, careen: Run) -> tuple[Path, str]:
    """A state holding an older plan and the tree plan (the newest); the registry set."""
    plan = tree_plan(tmp_path / "tree")
    state = tmp_path / "state.sqlite"
    with StateStore.open(state, clock=Clock()) as store:
        store.save_plan(Plan((), (), str(tmp_path), plan.created_at).to_dict(),
                        source="harbor", policy=None)
        plan_id = store.save_plan(plan.to_dict(), source="harbor", policy=plan.policy)
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", "registry.abc.com")
    return state, plan_id


def level_of_targets(document: dict[str, Any]) -> dict[str, int]:
    return {target: int(name.removeprefix("level-"))
            for name, group in document["group"].items() if name.startswith("level-")
            for target in group["targets"]}


@pytest.mark.parametrize("command", [["export"], ["export", "bake"], ["export", "jenkins"]])
def test_help(careen: Run, command: list[str]) -> None:
    result = careen(*command, "--help")
    assert result.code == 0 and "Usage:" in result.out
    assert command == ["export"] or "Example" in result.out


def test_bake_file_of_a_stored_plan(careen: Run, stored: tuple[Path, str]) -> None:
    state, plan_id = stored
    result = careen("export", "bake", "--plan", plan_id, "--state", str(state))
    assert result.code == 0, result.err
    document = json.loads(result.out)
    jsonschema.validate(document, json.loads(BAKE_SCHEMA.read_text()))
    names = {target["tags"][0].removeprefix("registry.abc.com/"): name
             for name, target in document["target"].items()}
    assert set(names) == {BASE, HTTPD, JRE, TOMCAT}
    assert set(document["group"]["default"]["targets"]) == set(names.values())
    # Parents come before children: each context's target is on an earlier level.
    levels = level_of_targets(document)
    assert levels[names[BASE]] == 0 and levels[names[JRE]] == 1 and levels[names[TOMCAT]] == 2
    wired = 0
    for name, target in document["target"].items():
        for source in target.get("contexts", {}).values():
            parent = source.removeprefix("target:")
            assert levels[parent] < levels[name]
            wired += 1
    assert wired == 3  # jre <- base, tomcat <- jre and base
    tomcat = document["target"][names[TOMCAT]]
    assert tomcat["no-cache"] is True and tomcat["pull"] is True
    assert tomcat["labels"]["io.careen.plan"] == plan_id


def test_bake_follows_the_build_config(careen: Run, stored: tuple[Path, str],
                                       tmp_path: Path) -> None:
    state, _ = stored
    (tmp_path / "careen.toml").write_text(
        f'[state]\npath = "{state}"\n[build]\nno_cache = false\n'
        '[build.build_args]\nHTTP_PROXY = "http://proxy:3128"\n')
    result = careen("export", "bake", "--plan", "latest", "-o", "docker-bake.json")
    assert result.code == 0, result.err
    assert result.out == ""
    document = json.loads((tmp_path / "docker-bake.json").read_text())
    target = next(iter(document["target"].values()))
    assert target["no-cache"] is False
    assert target["args"] == {"HTTP_PROXY": "http://proxy:3128"}
    assert "4 targets in 3 levels" in result.err


def test_bake_needs_a_registry(careen: Run, stored: tuple[Path, str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    state, plan_id = stored
    monkeypatch.delenv("CAREEN_REGISTRY_SERVER")
    result = careen("export", "bake", "--plan", plan_id, "--state", str(state))
    assert result.code == 2 and "registry" in result.err and result.out == ""


def test_unknown_plan_lists_the_stored_ones(careen: Run, stored: tuple[Path, str]) -> None:
    state, plan_id = stored
    for command in ("bake", "jenkins"):
        result = careen("export", command, "--plan", "plan-19990101-000000-dead",
                        "--state", str(state))
        assert result.code == 2
        assert "plan-19990101-000000-dead" in result.err and plan_id in result.err


def test_an_empty_state_has_no_latest_plan(careen: Run, tmp_path: Path) -> None:
    StateStore.open(tmp_path / "empty.sqlite").close()
    result = careen("export", "jenkins", "--plan", "latest", "--state",
                    str(tmp_path / "empty.sqlite"))
    assert result.code == 2 and "no plan" in result.err


def test_a_missing_state_is_not_created(careen: Run, tmp_path: Path) -> None:
    result = careen("export", "jenkins", "--plan", "latest", "--state", "none.sqlite")
    assert result.code == 2 and not (tmp_path / "none.sqlite").exists()


def test_jenkins_stage_of_a_stored_plan(careen: Run, stored: tuple[Path, str]) -> None:
    state, plan_id = stored
    result = careen("export", "jenkins", "--plan", plan_id, "--state", str(state))
    assert result.code == 0, result.err
    text = result.out
    levels = re.findall(r"stage\('level (\d+)'\)", text)
    assert levels == ["0", "1", "2"]
    commands = re.findall(r"careen update --plan (\S+) --only (\S+) ", text)
    assert {plan for plan, _ in commands} == {"careen-plan.json"}
    order = [image for _, image in commands]
    assert sorted(order[:2]) == [BASE, HTTPD] and order[2:] == [JRE, TOMCAT]
    assert text.count("agent { label 'docker' }") == 4  # [jenkins] agent_label's default


def test_jenkins_agent_label_from_flag_and_config(careen: Run, stored: tuple[Path, str],
                                                  tmp_path: Path) -> None:
    state, _ = stored
    (tmp_path / "careen.toml").write_text(
        f'[state]\npath = "{state}"\n[jenkins]\nagent_label = "builders"\n')
    from_config = careen("export", "jenkins", "--plan", "latest")
    assert from_config.code == 0, from_config.err
    assert "agent { label 'builders' }" in from_config.out
    from_flag = careen("export", "jenkins", "--plan", "latest", "--agent-label",
                       "docker && linux", "-o", "stage.groovy")
    assert from_flag.code == 0, from_flag.err
    assert "agent { label 'docker && linux' }" in (tmp_path / "stage.groovy").read_text()
    blank = careen("export", "jenkins", "--plan", "latest", "--agent-label", " ")
    assert blank.code == 2
