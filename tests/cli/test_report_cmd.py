"""``careen report``: the reports of a past run from state, and shards' results merged."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from careen.reports.json_report import render_json
from careen.results import RunResult
from careen.state.store import RunKind, RunStatus, StateStore
from tests.reports.sample import PLANTED, sample_result
from tests.reports.test_from_state import (
    BASE,
    GRAFANA,
    HTTPD,
    JRE,
    SCHEMA_PATH,
    START,
    TOMCAT,
    Clock,
    Recorded,
    record_night,
    tree_plan,
)
from tests.reports.test_html import parse as parse_html

Run = Any


@pytest.fixture
def night(tmp_path: Path) -> Recorded:
    """A finished night (no stored document: rebuilt from records) in tmp/state.sqlite."""
    plan = tree_plan(tmp_path / "tree")
    return record_night(tmp_path / "state.sqlite", plan, finish=True,
                        log_dir=tmp_path / "logs")


def test_help_has_an_example(careen: Run) -> None:
    result = careen("report", "--help")
    assert result.code == 0 and "Example" in result.out and "--merge" in result.out


def test_writes_every_report_of_a_run(careen: Run, night: Recorded, tmp_path: Path) -> None:
    result = careen("report", night.run_id, "--state", str(night.state), "-o", "out")
    assert result.code == 0, result.err
    assert result.out == ""
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "careen.html", "careen.json", "careen.md", "careen.xml"]
    assert "wrote out/careen.json" in result.err and "warning" not in result.err

    document = json.loads((out / "careen.json").read_text())
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(document)
    assert document["run_id"] == night.run_id
    assert {i["image"]: i["outcome"] for i in document["images"]} == {
        BASE: "fixed", HTTPD: "improved", JRE: "failed", TOMCAT: "skipped", GRAFANA: "skipped"}

    suite = ET.parse(out / "careen.xml").getroot().find("testsuite")  # noqa: S314 - ours
    assert suite is not None
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert len(cases) == 5 and suite.get("failures") == "2"
    failed = [name for name, case in cases.items() if case.find("failure") is not None]
    assert len(failed) == 2
    jre_case = next(case for name, case in cases.items() if name and "jre" in name)
    assert "ERROR: <script>alert(1)</script> apt failed" in (
        jre_case.findtext("system-out") or "")

    page = (out / "careen.html").read_text()
    checker = parse_html(page)
    assert checker.errors == [] and checker.stack == []
    assert "<script>" not in page  # the build log's planted script is escaped
    assert "library/tomcat:8.5" in page

    markdown = (out / "careen.md").read_text()
    assert night.run_id in markdown


def test_latest_is_the_newest_run(careen: Run, night: Recorded) -> None:
    with StateStore.open(night.state, clock=Clock(START + timedelta(days=1))) as store:
        newer = store.begin_run(RunKind.VULNERABLE)
        store.finish_run(newer.id, RunStatus.SUCCEEDED, 0)
    result = careen("report", "latest", "--state", str(night.state), "-f", "json", "-o", "-")
    assert result.code == 0, result.err
    assert json.loads(result.out)["run_id"] == newer.id


def test_one_format_on_stdout(careen: Run, night: Recorded, tmp_path: Path) -> None:
    result = careen("report", night.run_id, "--state", str(night.state), "--format",
                    "markdown", "-o", "-")
    assert result.code == 0, result.err
    assert night.run_id in result.out and result.out.lstrip().startswith("#")
    assert not (tmp_path / "careen-reports").exists()


def test_stdout_takes_one_format_only(careen: Run, night: Recorded) -> None:
    result = careen("report", night.run_id, "--state", str(night.state), "-f", "json,html",
                    "-o", "-")
    assert result.code == 2
    assert "one report" in result.err and result.out == ""


def test_formats_chosen_by_flag_and_by_config(careen: Run, night: Recorded,
                                              tmp_path: Path) -> None:
    result = careen("report", night.run_id, "--state", str(night.state), "-f", "junit,json",
                    "-f", "JSON", "-o", "some")
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "some").iterdir()) == [
        "careen.json", "careen.xml"]
    # Default folder and formats from the config file; the state from [state] path.
    (tmp_path / "careen.toml").write_text(
        f'[state]\npath = "{night.state}"\n[run]\nreports = ["markdown"]\n'
        '[output]\nreports_dir = "nightly"\n')
    result = careen("report", night.run_id)
    assert result.code == 0, result.err
    assert [p.name for p in (tmp_path / "nightly").iterdir()] == ["careen.md"]


def test_unknown_format_is_a_usage_error(careen: Run, night: Recorded) -> None:
    result = careen("report", night.run_id, "--state", str(night.state), "-f", "pdf")
    assert result.code == 2 and "'pdf'" in result.err and "junit" in result.err


def test_unknown_run_lists_the_recent_ones(careen: Run, night: Recorded) -> None:
    result = careen("report", "run-19990101-000000-dead", "--state", str(night.state))
    assert result.code == 2
    assert "run-19990101-000000-dead" in result.err and night.run_id in result.err


def test_latest_of_an_empty_state(careen: Run, tmp_path: Path) -> None:
    StateStore.open(tmp_path / "empty.sqlite").close()
    result = careen("report", "latest", "--state", str(tmp_path / "empty.sqlite"))
    assert result.code == 2 and "holds no runs yet" in result.err


def test_a_missing_state_is_not_created(careen: Run, tmp_path: Path) -> None:
    result = careen("report", "latest", "--state", "nowhere/state.sqlite")
    assert result.code == 2 and "no state at" in result.err
    assert not (tmp_path / "nowhere").exists()


def test_default_state_is_in_the_xdg_state_folder(careen: Run, night: Recorded,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "careen").mkdir(parents=True)
    night.state.rename(xdg / "careen" / "state.sqlite")
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg))
    result = careen("report", "latest", "-f", "json", "-o", "-")
    assert result.code == 0, result.err
    assert json.loads(result.out)["run_id"] == night.run_id


def test_run_or_merge_is_required(careen: Run, night: Recorded) -> None:
    assert careen("report", "--state", str(night.state)).code == 2
    both = careen("report", night.run_id, night.run_id, "--state", str(night.state))
    assert both.code == 2 and "--merge" in both.err


def test_an_interrupted_run_is_reported_with_a_warning(careen: Run, tmp_path: Path) -> None:
    plan = tree_plan(tmp_path / "tree")
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=False,
                            log_dir=tmp_path / "logs")
    with StateStore.open(recorded.state) as store:
        store.mark_interrupted_runs()
    result = careen("report", recorded.run_id, "--state", str(recorded.state), "-f", "json",
                    "-o", "-")
    assert result.code == 0, result.err
    assert re.search(rf"warning: run {recorded.run_id}: the run was interrupted", result.err)
    outcomes = {i["image"]: i["outcome"] for i in json.loads(result.out)["images"]}
    assert outcomes[JRE] == "failed" and outcomes[TOMCAT] == "skipped"


def test_a_stored_result_is_reported_as_stored(careen: Run, tmp_path: Path) -> None:
    stored = sample_result()
    with StateStore.open(tmp_path / "state.sqlite", clock=Clock()) as store:
        run = store.begin_run(RunKind.RUN)
        store.finish_run(run.id, RunStatus.FAILED, 1, {"result": stored.to_dict()})
    result = careen("report", run.id, "--state", str(tmp_path / "state.sqlite"), "-f", "json",
                    "-o", "-")
    assert result.code == 0, result.err
    assert json.loads(result.out) == json.loads(render_json(stored))
    assert "warning" not in result.err


# -- --merge ----------------------------------------------------------------------------------


def shards(tmp_path: Path) -> list[Path]:
    """sample_result's images split over two shard results of one plan, as files."""
    whole = sample_result()
    paths = []
    for number, images in enumerate((whole.images[:3], whole.images[3:]), start=1):
        part = RunResult(f"run-2017120{number}-020001-000{number}", whole.started_at,
                         whole.finished_at, whole.policy, images, plan_id=whole.plan_id)
        path = tmp_path / f"shard-{number}" / "careen.json"
        path.parent.mkdir()
        path.write_text(render_json(part))
        paths.append(path)
    return paths


def test_merge_writes_one_run_of_the_shards(careen: Run, tmp_path: Path) -> None:
    first, second = shards(tmp_path)
    result = careen("report", "--merge", str(first), str(second), "-o", "merged",
                    "--state", str(tmp_path / "absent.sqlite"))
    assert result.code == 0, result.err
    document = json.loads((tmp_path / "merged" / "careen.json").read_text())
    assert document["run_id"] == "run-20171201-020001-0001+run-20171202-020001-0002"
    assert sorted(i["image"] for i in document["images"]) == sorted(
        i.image.short for i in sample_result().images)
    html = (tmp_path / "merged" / "careen.html").read_text()
    assert PLANTED not in html and parse_html(html).errors == []
    assert not (tmp_path / "absent.sqlite").exists()


def test_merge_refuses_an_image_in_two_shards(careen: Run, tmp_path: Path) -> None:
    first, _ = shards(tmp_path)
    result = careen("report", "--merge", str(first), str(first), "-o", "merged")
    assert result.code == 2 and "must not share an image" in result.err
    assert not (tmp_path / "merged").exists()


def test_merge_names_a_bad_file(careen: Run, tmp_path: Path) -> None:
    first, _ = shards(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    bad = careen("report", "--merge", str(first), "bad.json", "-o", "-")
    assert bad.code == 2 and "bad.json" in bad.err and "not JSON" in bad.err
    missing = careen("report", "--merge", "missing.json", "-o", "-")
    assert missing.code == 2 and "missing.json" in missing.err
    assert careen("report", "--merge").code == 2
