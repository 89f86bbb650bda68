"""The command line as Jenkins and people use it: exit codes, stdout vs stderr, help."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from careen.cli.commands import harbor_cmd
from careen.registries.harbor import HarborClient, open_harbor
from careen.registries.http import HarborSettings
from careen.sim.harbor import Fleet, SimulatorServer
from tests.cli.conftest import SAMPLES, point_careen_at
from tests.reliability.support import RecordingSleep

Run = Any

SEED_LIST_OF_SAMPLE_FLEET = """\
5=6,   library/activemq:5.14.4
5=12,  library/apache-php:latest
5=3,   library/elasticsearch-head:5.2.1
5=6,   library/grafana:4.1.2
5=10,  library/httpd:2.2.15
6=1,   library/httpd:2.4
5=10,  library/httpd:2.4.6
5=4,   library/httpd:2.4.6-5.5
5=4,   library/httpd:2.4.6-5.6
5=10,  library/httpd:dblib
4=3,   library/mysql:5.7.18
5=1,   public-demo/nginx:1.25
"""


@pytest.mark.parametrize("command", [
    [], ["vulnerable"], ["images"], ["scan"], ["schedule", "scan-all"], ["schedule", "show"],
    ["tree"], ["config", "show"], ["sim", "harbor"], ["update"],
])
def test_every_command_explains_itself_with_an_example(careen: Run, command: list[str]) -> None:
    result = careen(*command, "--help")
    assert result.code == 0
    assert "Example" in result.out or command == []
    assert "Usage:" in result.out


def test_vulnerable_writes_the_seed_list_and_exits_1(careen: Run, harbor_env: SimulatorServer,
                                                     tmp_path: Path) -> None:
    result = careen("vulnerable", "--json", "vulnerable.json")
    assert result.code == 1
    assert (tmp_path / "vulnerable.list").read_text() == SEED_LIST_OF_SAMPLE_FLEET
    assert result.out == ""  # nothing on stdout but what was asked for
    # The seed's log line, one per image, on stderr.
    processing = re.findall(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Processing (\S+)$", result.err,
                            re.MULTILINE)
    assert "library/activemq:5.14.4" in processing
    assert "never scanned" in result.err and "library/mysql:5.6.35" in result.err
    document = json.loads((tmp_path / "vulnerable.json").read_text())
    assert [item["image"] for item in document["not_scanned"]] == ["library/mysql:5.6.35"]


def test_vulnerable_to_stdout_and_exit_zero(careen: Run, harbor_env: SimulatorServer) -> None:
    result = careen("vulnerable", "-o", "-", "--exit-zero", "--rule", "critical > 0")
    assert result.code == 0
    assert result.out == "6=1,   library/httpd:2.4\n"


def test_seed_script_name_runs_careen_vulnerable(careen: Run, harbor_env: SimulatorServer,
                                                 tmp_path: Path) -> None:
    result = careen("-q", "-o", "seed.list", prog="list-vulnerable-images")
    assert result.code == 1
    assert (tmp_path / "seed.list").read_text() == SEED_LIST_OF_SAMPLE_FLEET


def test_images_as_json_and_csv(careen: Run, harbor_env: SimulatorServer) -> None:
    rows = json.loads(careen("images", "-f", "json").out)
    by_name = {row["image"]: row for row in rows}
    assert by_name["library/httpd:2.4"]["critical"] == 1
    assert by_name["library/mysql:5.6.35"]["status"] == "not_scanned"
    assert [row["image"] for row in rows] == sorted(row["image"] for row in rows)
    csv_lines = careen("images", "-f", "csv", "-p", "public-demo").out.splitlines()
    assert csv_lines[0].startswith("image,digest,status,critical,high")
    assert len(csv_lines) == 2 and csv_lines[1].startswith("public-demo/nginx:1.25,")
    # The CSV is the JSON, cell for cell, under the header's names (rows are kept in their
    # output form while Harbor streams: the columns must still line up).
    everything = list(csv.DictReader(io.StringIO(careen("images", "-f", "csv").out)))
    assert [line["image"] for line in everything] == [row["image"] for row in rows]
    for line, row in zip(everything, rows, strict=True):
        assert line == {key: "" if value is None else str(value) for key, value in row.items()}


def test_images_of_an_empty_project_is_an_empty_json_list(
        careen: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = Fleet.from_dict({"harbor_version": "2.14.0", "users": {"admin": "Harbor12345"},
                             "projects": [{"name": "empty", "repositories": []}]})
    with SimulatorServer(empty) as harbor:
        point_careen_at(harbor, monkeypatch)
        result = careen("images", "-f", "json")
        assert result.code == 0, result.err
        assert json.loads(result.out) == []
        assert careen("images", "-f", "csv").out.splitlines() == [
            "image,digest,status,critical,high,medium,low,unknown,none,fixable,scanner,"
            "scanned_at,multi_arch,immutable"]


def test_schedule_round_trips(careen: Run, harbor_env: SimulatorServer) -> None:
    assert json.loads(careen("schedule", "show").out) is None
    assert careen("schedule", "scan-all", "--daily", "00:00").code == 0
    assert json.loads(careen("schedule", "show").out)["cron"] == "0 0 0 * * *"
    assert careen("schedule", "scan-all", "--daily", "02:30").code == 0
    assert json.loads(careen("schedule", "show").out)["cron"] == "0 30 2 * * *"
    assert careen("schedule", "scan-all", "--none").code == 0
    assert json.loads(careen("schedule", "show").out) is None
    bad = careen("schedule", "scan-all", "--daily", "25:00")
    assert bad.code == 2 and "HH:MM" in bad.err


def test_scan_and_wait_prints_new_summary(careen: Run, harbor_env: SimulatorServer) -> None:
    result = careen("scan", "library/grafana:4.1.2", "--wait", "--timeout", "20",
                    "--interval", "0.1")
    assert result.code == 0, result.err
    [summary] = json.loads(result.out)
    assert summary["image"] == "library/grafana:4.1.2"
    assert summary["status"] == "success"


def test_harbor_down_is_exit_3_with_one_line(careen: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CAREEN_HARBOR_URL", f"http://127.0.0.1:{port}")
    # The retries' backoff is recorded instead of slept (seconds of waiting otherwise).
    waits = RecordingSleep()

    async def open_without_waiting(settings: HarborSettings, **kwargs: Any) -> HarborClient:
        return await open_harbor(settings, **{**kwargs, "sleep": waits})

    monkeypatch.setattr(harbor_cmd, "open_harbor", open_without_waiting)
    result = careen("-q", "images")
    assert len(waits.waits) == 4  # between the 5 attempts
    assert result.code == 3
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("careen: error")]
    assert errors == [f"careen: error: Harbor at 127.0.0.1:{port}: "
                      f"GET /api/v2.0/systeminfo: connection refused (after 5 attempts)"]


def test_unknown_flag_is_a_usage_error(careen: Run) -> None:
    result = careen("vulnerable", "--no-such-flag")
    assert result.code == 2
    assert "No such option" in result.err and "internal error" not in result.err


def test_missing_harbor_url_is_a_usage_error(careen: Run) -> None:
    result = careen("images")
    assert result.code == 2
    assert "CAREEN_HARBOR_URL" in result.err


def test_bad_config_key_names_file_and_key(careen: Run, tmp_path: Path) -> None:
    (tmp_path / "careen.toml").write_text("[harbor]\nverify_tsl = false\n")
    result = careen("config", "show")
    assert result.code == 2
    assert "careen.toml" in result.err and "verify_tsl" in result.err
    assert "verify_tls" in result.err  # the suggestion


def test_config_show_masks_secrets(careen: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREEN_HARBOR_PASSWORD", "hunter2-very-secret")
    monkeypatch.setenv("registry_password", "seed-secret-pw")
    monkeypatch.setenv("registry_server", "registry.abc.com")
    for fmt in ("toml", "json"):
        result = careen("config", "show", "--format", fmt)
        assert result.code == 0
        assert "hunter2-very-secret" not in result.out + result.err
        assert "seed-secret-pw" not in result.out + result.err
        assert "registry.abc.com" in result.out


def test_tree_prints_mapping_and_build_order(careen: Run) -> None:
    result = careen("tree", "--root", str(SAMPLES / "tree"))
    assert result.code == 0, result.err
    assert "library/jre:8u191" in result.out and "jre/8u191" in result.out
    order = careen("tree", "--root", str(SAMPLES / "tree"), "-f", "json")
    levels = json.loads(order.out)["build_order"]
    assert levels[0] == ["library/base:1.0", "library/tools:latest"]
    assert "library/jre:8u191" in levels[1] and "library/tomcat:8.5" in levels[2]


def test_tree_problems_exit_1(careen: Run, tmp_path: Path) -> None:
    (tmp_path / "t" / "Bad App" / "1.0").mkdir(parents=True)
    (tmp_path / "t" / "Bad App" / "1.0" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "t" / "ok" / "1.0").mkdir(parents=True)
    (tmp_path / "t" / "ok" / "1.0" / "Dockerfile").write_text("FROM scratch\n")
    result = careen("tree", "--root", str(tmp_path / "t"))
    assert result.code == 1
    assert "needs attention:" in result.err and "Bad App" in result.err


def test_update_images_plans_from_the_list_parents_first(
    careen: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The seed's update-images with its registry_server variable, as a dry run."""
    (tmp_path / "vulnerable.list").write_text(
        "5=2,   library/base:1.0\nlibrary/nosuch:1\nbad;line\n")
    monkeypatch.setenv("registry_server", "registry.abc.com")
    result = careen("--root", str(SAMPLES / "tree"), "--dry-run", prog="update-images")
    assert result.code == 1, result.err  # an unreadable line and a missing folder
    assert "needs attention: " in result.err and "vulnerable.list:3: not an image" in result.err
    order = re.findall(r"^plan: level (\d) (\S+)", result.err, re.MULTILINE)
    assert order[0] == ("0", "library/base:1.0")
    assert ("2", "library/tomcat:8.5") in order
    assert "skip library/nosuch:1: no Dockerfile folder" in result.err
    assert re.search(r"library/tomcat:8\.5 +planned .*dry run", result.err)


def test_update_strict_fails_on_a_malformed_line(careen: Run, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vulnerable.list").write_text("bad;line\n")
    monkeypatch.setenv("registry_server", "registry.abc.com")
    result = careen("update", "--root", str(SAMPLES / "tree"), "--dry-run", "--strict")
    assert result.code == 2
    assert "vulnerable.list:1" in result.err


def test_update_without_a_list_says_what_to_do(careen: Run) -> None:
    result = careen("update", "--root", str(SAMPLES / "tree"))
    assert result.code == 2
    assert "--from" in result.err
