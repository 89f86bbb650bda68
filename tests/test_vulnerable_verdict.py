"""Issue 12, points 3 and 4, through the command line: the verdict tells the truth.

* Untagged artifacts (a re-push leaves the old digest with ``"tags": null`` until Harbor's tag
  retention or GC removes it, NOTES §11.8) are no images to rebuild: never lines of
  vulnerable.list, plan candidates or report rows; one line counts them, the JSON lists them
  under ``untagged``, and they never change the exit code.
* Whatever needs a person ends with exit 1 (Jenkins UNSTABLE), one ``needs attention:`` line
  on stderr with the next step, and an ``attention`` entry in the JSON result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from careen import assemble
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from tests.cli_runner import Careen, in_process_careen
from tests.test_nightly import FLEET, SUPERSEDED, PushingBuilder, opener, write_tree

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
ADMIN_PASSWORD = "Harbor12345"  # the simulated fleet's admin: test data, not a secret




@pytest.fixture
def careen(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[Careen]:
    yield in_process_careen(capsys, monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def harbor() -> Iterator[SimulatorServer]:
    options = SimOptions(scan_delay=ScanDelays(pending=0.02, running=0.02))
    with SimulatorServer(Fleet.from_dict(FLEET), options) as server:
        yield server


def use(harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        fleet: dict[str, Any] | None = None) -> Path:
    """Harbor (reset to ``fleet``), the test tree, a registry, reports under tmp_path."""
    harbor.reset(Fleet.from_dict(fleet or FLEET))
    tree = tmp_path / "tree"
    if not tree.exists():
        write_tree(tree)
    for name, value in {"CAREEN_HARBOR_URL": harbor.url, "CAREEN_HARBOR_USER": "admin",
                        "CAREEN_HARBOR_PASSWORD": ADMIN_PASSWORD,
                        "CAREEN_REGISTRY_SERVER": "registry.test",
                        "CAREEN_TREE_ROOT": str(tree),
                        "CAREEN_OUTPUT_REPORTS_DIR": str(tmp_path / "reports"),
                        "CAREEN_RUN_RESCAN_TIMEOUT": "10",
                        "CAREEN_RUN_RESCAN_INTERVAL": "0.05"}.items():
        monkeypatch.setenv(name, value)
    return tree


def with_builder(monkeypatch: pytest.MonkeyPatch, builder: PushingBuilder) -> None:
    """The CLI's builder is the fake one pushing into the simulator (no lab here)."""
    monkeypatch.setattr(assemble, "logged_in_builder", lambda config: opener(builder)())


def superseded(fleet: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(fleet))
    data["projects"][0]["repositories"][0]["artifacts"].append(
        {"digest": SUPERSEDED, "tags": [], "scan": {"high": 2, "fixable": 2}})
    return data


def run_report(tmp_path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((tmp_path / "reports" / "careen.json").read_text())
    return document


# -- point 3: untagged artifacts ----------------------------------------------------------


def test_untagged_artifacts_are_counted_not_listed_and_keep_exit_0(
        careen: Careen, harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    only_old = {"harbor_version": "2.14.0", "users": {"admin": ADMIN_PASSWORD},
                "projects": [{"name": "library", "repositories": [
                    {"name": "base", "artifacts": [
                        {"tags": ["1.0"], "scan": {}},
                        {"tags": [], "scan": {"critical": 1}},
                        {"tags": [], "scan": {"high": 3}},
                        {"tags": [], "scan": {"low": 1}},
                        {"tags": [], "scan": None}]}]}]}
    use(harbor, monkeypatch, tmp_path, only_old)
    result = careen("vulnerable", "-o", "vulnerable.list", "--json", "vulnerable.json")
    assert result.code == 0, result.err
    assert (tmp_path / "vulnerable.list").read_text() == ""
    assert ("2 untagged artifacts break the policy; Harbor's tag retention or garbage "
            "collection removes them") in result.err.splitlines()
    document = json.loads((tmp_path / "vulnerable.json").read_text())
    assert document["selected"] == []
    assert len(document["untagged"]) == 2
    assert all(item["tag"] is None and "@sha256:" in item["image"]
               for item in document["untagged"])
    assert document["summary"]["untagged"] == 2
    # Nor is a never-scanned untagged artifact an image to scan: counted, not listed.
    assert document["not_scanned"] == []
    assert document["summary"]["unscanned_not_listed"] == 1
    assert "never scanned" not in result.err


def test_careen_plan_from_harbor_counts_untagged_artifacts_apart(
        careen: Careen, harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """``careen plan`` reads the same inventory as ``careen vulnerable``: the superseded
    digest is counted on one line, and is no step of the plan."""
    use(harbor, monkeypatch, tmp_path, superseded(FLEET))
    result = careen("plan", "-f", "json", "--state", str(tmp_path / "state.sqlite"))
    assert "1 untagged artifact breaks the policy" in result.err, result.err
    plan = json.loads(result.out)
    assert all("@" not in step["image"] for step in plan["steps"])


def test_after_a_night_that_fixed_everything_vulnerable_exits_0(
        careen: Careen, harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The night rebuilds and pushes; Harbor keeps the superseded digests untagged, with
    their old findings. The next ``careen vulnerable`` must not call them work to do."""
    use(harbor, monkeypatch, tmp_path, superseded(FLEET))
    monkeypatch.setenv("CAREEN_POLICY_IGNORE", "library/lone:*")
    with_builder(monkeypatch, PushingBuilder(harbor))
    night = careen("run", "--state", str(tmp_path / "state.sqlite"))
    assert night.code == 0, night.err
    assert night.attention() == []
    assert "1 untagged artifact breaks the policy" in night.err
    report = run_report(tmp_path)
    assert [u["image"] for u in report["untagged"]] == [f"library/base@{SUPERSEDED}"]
    assert all("@" not in row["image"] for row in report["images"])

    after = careen("vulnerable", "-o", "-")
    assert after.code == 0, after.err
    assert after.out == ""
    # The old base digest (twice superseded now) and those of web and base's old tag.
    assert "untagged artifacts break the policy" in after.err
    assert ": 0 break the policy" in after.err


def test_an_untagged_line_of_an_old_list_is_not_planned(
        careen: Careen, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """vulnerable.list written by an older Careen held ``repository@digest`` lines."""
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", "registry.abc.com")
    listed = tmp_path / "vulnerable.list"
    listed.write_text(f"5=2,   library/base@{SUPERSEDED}\n5=2,   library/base:1.0\n")
    result = careen("plan", "--from", str(listed), "--root", str(SAMPLES / "tree"),
                    "-f", "json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert all("@" not in row["image"] for row in document["steps"] + document["skipped"])
    assert "1 untagged artifact breaks the policy" in result.err


# -- point 4: needs attention is exit 1 ---------------------------------------------------

NO_FOLDER_LINE = ("needs attention: library/nosuch:9: no Dockerfile folder for it under {root}; "
                  "next: add its folder to the tree, map it in [tree.mapping], or ignore it "
                  "in [policy] ignore")


@pytest.fixture
def nosuch_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", "registry.abc.com")
    monkeypatch.setenv("CAREEN_TREE_ROOT", str(SAMPLES / "tree"))
    monkeypatch.setenv("CAREEN_OUTPUT_REPORTS_DIR", str(tmp_path / "reports"))
    path = tmp_path / "vulnerable.list"
    path.write_text("5=1,   library/nosuch:9\n")
    return path


def test_plan_from_a_list_with_an_image_without_folder_exits_1(
        careen: Careen, nosuch_list: Path) -> None:
    result = careen("plan", "--from", str(nosuch_list), "-f", "json")
    assert result.code == 1, result.err
    assert result.attention() == [NO_FOLDER_LINE.format(root=SAMPLES / "tree")]
    document = json.loads(result.out)
    assert [(a["kind"], a["subject"]) for a in document["attention"]] == [
        ("no_folder", "library/nosuch:9")]


def test_update_from_a_list_with_an_image_without_folder_exits_1(
        careen: Careen, nosuch_list: Path, tmp_path: Path) -> None:
    result = careen("update", "--from", str(nosuch_list), "--state",
                    str(tmp_path / "state.sqlite"))
    assert result.code == 1, result.err
    assert result.attention() == [NO_FOLDER_LINE.format(root=SAMPLES / "tree")]
    assert [(a["kind"], a["subject"], a["next_step"]) for a in run_report(tmp_path)["attention"]
            ] == [("no_folder", "library/nosuch:9", "add its folder to the tree, map it in "
                   "[tree.mapping], or ignore it in [policy] ignore")]


def test_ignoring_the_image_is_how_a_person_says_it_is_not_ours(
        careen: Careen, nosuch_list: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREEN_POLICY_IGNORE", "library/nosuch:*")
    result = careen("plan", "--from", str(nosuch_list))
    assert result.code == 0, result.err
    assert result.attention() == []


UNREADABLE = "4=x,  library/nginx:1.25\n"


@pytest.mark.parametrize("command", ["plan", "update"])
def test_an_unreadable_line_of_the_list_exits_1_and_names_the_line(
        careen: Careen, nosuch_list: Path, tmp_path: Path, command: str) -> None:
    nosuch_list.write_text("5=2,   library/tools:latest\n" + UNREADABLE)
    args = ["--dry-run"] if command == "update" else []
    result = careen(command, "--from", str(nosuch_list), "--state",
                    str(tmp_path / "state.sqlite"), *args)
    assert result.code == 1, result.err
    assert result.attention() == [
        f"needs attention: {nosuch_list}:2: the head before the comma must be "
        "'SEVERITY=COUNT', e.g. '5=6': '4=x,  library/nginx:1.25' (line skipped, not "
        "rebuilt); next: fix the line in vulnerable.list (or the tool that writes it)"]
    # nginx is not rebuilt: only the attention line names it; the plan holds tools only.
    shown = (result.out + result.err).splitlines()
    assert any("library/tools:latest" in line for line in shown)
    assert [line for line in shown if "library/nginx" in line] == result.attention()


def test_an_unreadable_line_is_in_the_update_report(
        careen: Careen, nosuch_list: Path, tmp_path: Path) -> None:
    nosuch_list.write_text(UNREADABLE)
    result = careen("update", "--from", str(nosuch_list), "--state",
                    str(tmp_path / "state.sqlite"))
    assert result.code == 1, result.err
    [item] = run_report(tmp_path)["attention"]
    assert (item["kind"], item["subject"]) == ("unreadable_line", f"{nosuch_list}:1")


@pytest.mark.parametrize("command", ["plan", "update"])
def test_strict_keeps_exit_2_for_a_malformed_list(
        careen: Careen, nosuch_list: Path, tmp_path: Path, command: str) -> None:
    nosuch_list.write_text(UNREADABLE)
    result = careen(command, "--from", str(nosuch_list), "--strict", "--state",
                    str(tmp_path / "state.sqlite"))
    assert result.code == 2, result.err
    assert f"careen: error: {nosuch_list}:1: the head before the comma" in result.err


def test_a_tree_image_in_a_from_cycle_exits_1(
        careen: Careen, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tree = tmp_path / "cyclic"
    for folder, text in {"a/1": "FROM library/b:1\n", "b/1": "FROM library/a:1\n"}.items():
        (tree / folder).mkdir(parents=True)
        (tree / folder / "Dockerfile").write_text(text)
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", "registry.abc.com")
    listed = tmp_path / "vulnerable.list"
    listed.write_text("library/a:1\n")
    result = careen("plan", "--from", str(listed), "--root", str(tree), "-f", "json")
    assert result.code == 1, result.err
    assert result.attention() == [
        "needs attention: library/a:1: built FROM itself or its own children (a FROM cycle); "
        "next: break the FROM cycle in the Dockerfiles"]
    assert [a["kind"] for a in json.loads(result.out)["attention"]] == ["cycle"]


def test_a_rebuild_that_did_not_help_exits_1(
        careen: Careen, harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    use(harbor, monkeypatch, tmp_path, {**FLEET, "scan_results": {"library/web:2":
                                                                   {"medium": 4}}})
    monkeypatch.setenv("CAREEN_POLICY_IGNORE", "library/lone:*")
    with_builder(monkeypatch, PushingBuilder(harbor))
    result = careen("run", "--state", str(tmp_path / "state.sqlite"))
    assert result.code == 1, result.err
    [line] = result.attention()
    assert line.startswith("needs attention: library/web:2: rebuild did not help: ")
    assert line.endswith("; next: bump the base image or the pinned package in its Dockerfile")
    assert [(a["kind"], a["subject"]) for a in run_report(tmp_path)["attention"]] == [
        ("not_helped", "library/web:2")]


def test_an_image_unscanned_at_the_rescan_deadline_exits_1(
        careen: Careen, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A Harbor whose scans take a minute each: none can finish by a 0.1 s deadline (the
    # rescan still asks for each scan and reads each summary once, however short it is).
    slow = SimOptions(scan_delay=ScanDelays(pending=60, running=60))
    with SimulatorServer(Fleet.from_dict(FLEET), slow) as harbor:
        use(harbor, monkeypatch, tmp_path)
        monkeypatch.setenv("CAREEN_POLICY_IGNORE", "library/lone:*")
        monkeypatch.setenv("CAREEN_RUN_RESCAN_TIMEOUT", "0.1")
        with_builder(monkeypatch, PushingBuilder(harbor))
        result = careen("run", "--state", str(tmp_path / "state.sqlite"))
    assert result.code == 1, result.err
    [line] = [line for line in result.attention() if "library/base:1.0:" in line]
    assert line.startswith("needs attention: library/base:1.0: pushed, but Harbor's rescan "
                           "gave ")
    assert line.endswith(" by the deadline; next: check the scan in Harbor, or run 'careen "
                         "scan library/base:1.0 --wait'")
    kinds = {a["kind"] for a in run_report(tmp_path)["attention"]}
    assert kinds == {"unscanned_at_deadline"}


def test_a_failed_build_and_its_children_exit_1(
        careen: Careen, harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    use(harbor, monkeypatch, tmp_path)
    monkeypatch.setenv("CAREEN_POLICY_IGNORE", "library/lone:*")
    with_builder(monkeypatch, PushingBuilder(harbor, fail={"library/base"}))
    result = careen("run", "--state", str(tmp_path / "state.sqlite"))
    assert result.code == 1, result.err
    lines = result.attention()
    assert any(line.startswith("needs attention: library/base:1.0: build failed (log: ")
               and line.endswith("; next: read the build log") for line in lines)
    assert ("needs attention: library/app:1: not rebuilt: parent library/base:1.0 failed; "
            "next: fix library/base:1.0 first; its children follow") in lines
    report = run_report(tmp_path)["attention"]
    assert [a["kind"] for a in report] == ["build_failed", "parent_failed", "parent_failed"]
    assert report[0]["path"] is not None and Path(report[0]["path"]).is_file()


# -- the JSON result: schema, reading back, merging shards ------------------------------


def test_attention_and_untagged_validate_read_back_and_merge_once() -> None:
    """``careen report --merge`` reads the shards' JSON: what needs attention must survive it,
    and the plan's own items (every shard carries its unreadable lines) appear once."""
    import jsonschema

    from careen.attention import AttentionItem, AttentionKind
    from careen.reports.json_report import read_result, render_json
    from careen.shard import merge_results
    from tests.reports.sample import sample_result

    line = AttentionItem(AttentionKind.UNREADABLE_LINE, "vulnerable.list:4", "bad head")
    failed = AttentionItem(AttentionKind.BUILD_FAILED, "library/tomcat:8.5",
                           "build failed (log: /logs/tomcat.log)", path="/logs/tomcat.log")
    untagged = ((f"library/base@{SUPERSEDED}", "high 2 > 0"),)
    whole = replace(sample_result(), attention=(line, failed), untagged=untagged)
    schema = json.loads((Path(__file__).parents[1] / "docs" / "schemas" /
                         "run-result.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(whole.to_dict())
    assert read_result(render_json(whole)) == whole

    first = replace(whole, images=whole.images[:3], run_id="run-a")
    second = replace(whole, images=whole.images[3:], run_id="run-b", attention=(line,))
    merged = merge_results([read_result(render_json(first)), read_result(render_json(second))])
    assert merged.attention == (line, failed)
    assert merged.untagged == untagged


def test_a_huge_unreadable_line_is_named_short(
        careen: Careen, nosuch_list: Path, tmp_path: Path) -> None:
    nosuch_list.write_text("5=1, " + "x" * 5000 + " y\n")
    result = careen("plan", "--from", str(nosuch_list), "--state",
                    str(tmp_path / "state.sqlite"))
    assert result.code == 1, result.err
    [line] = result.attention()
    assert len(line) < 400 and "..." in line
