"""`careen scan` and `careen schedule` on the seed's Harbor 1.x, and `careen sim harbor
--api v1`: the seed's first step, "scan every image daily at 00:00", set from Careen."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from careen.cli.commands.sim_cmd import fleet_for
from careen.errors import UsageError
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from tests.cli.conftest import SAMPLES, point_careen_at

Run = Any


@pytest.fixture(scope="module", params=["1.6.3", "1.9.4"])
def harbor_1x(request: pytest.FixtureRequest) -> Iterator[SimulatorServer]:
    fleet = fleet_for(SAMPLES / "fleet.yaml", "v1", request.param)
    with SimulatorServer(fleet, SimOptions(scan_delay=ScanDelays(0.05, 0.05))) as sim:
        yield sim


@pytest.fixture
def harbor(harbor_1x: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
           careen: object) -> SimulatorServer:
    return point_careen_at(harbor_1x, monkeypatch)


@pytest.fixture
def utc_plus_8(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The seed's admin's clock: China Standard Time (a POSIX TZ, no tz database needed)."""
    monkeypatch.setenv("TZ", "CST-8")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_daily_00_00_in_utc_plus_8_is_16_00_utc(careen: Run, harbor: SimulatorServer,
                                                 utc_plus_8: None) -> None:
    """NOTES §9.4: the seed's "00:00" set from UTC+8 is daily_time 57600 (1.6-1.7), the
    cron 0 0 16 * * * (1.8 on); the command says the UTC time it set."""
    result = careen("schedule", "scan-all", "--daily", "00:00")
    assert result.code == 0, result.err
    assert "00:00 local time (UTC+08:00) = 16:00 UTC" in result.err
    if harbor.state.version_at_least(1, 8):
        assert harbor.state.schedule is not None
        assert harbor.state.schedule["schedule"]["cron"] == "0 0 16 * * *"
    else:
        assert harbor.state.scan_all_policy == {"type": "daily",
                                                "parameter": {"daily_time": 57600}}
    shown = json.loads(careen("schedule", "show").out)
    assert shown["cron"] == "0 0 16 * * *" and shown["daily_utc"] == "16:00"


def test_utc_takes_utc_and_none_removes(careen: Run, harbor: SimulatorServer,
                                        utc_plus_8: None) -> None:
    result = careen("schedule", "scan-all", "--utc", "02:30")
    assert result.code == 0 and "every day at 02:30 UTC" in result.err
    assert json.loads(careen("schedule", "show").out)["daily_utc"] == "02:30"
    assert careen("schedule", "scan-all", "--none").code == 0
    assert json.loads(careen("schedule", "show").out) is None
    assert harbor.state.schedule is None
    assert harbor.state.scan_all_policy == {"type": "none"}


def test_a_cron_that_is_not_daily(careen: Run, harbor: SimulatorServer) -> None:
    """1.6-1.7 keep only a daily time: refused there with what to give; kept from 1.8."""
    result = careen("schedule", "scan-all", "--cron", "0 0 */6 * * *")
    if harbor.state.version_at_least(1, 8):
        assert result.code == 0
        assert json.loads(careen("schedule", "show").out)["cron"] == "0 0 */6 * * *"
    else:
        assert result.code == 2
        assert "only a daily scan-all time" in result.err and "--daily HH:MM" in result.err
        assert harbor.state.scan_all_policy == {"type": "none"}


def test_bad_times_are_usage_errors(careen: Run, harbor: SimulatorServer) -> None:
    for option in ("--daily", "--utc"):
        bad = careen("schedule", "scan-all", option, "24:00")
        assert bad.code == 2 and f"{option} '24:00'" in bad.err and "HH:MM" in bad.err
    both = careen("schedule", "scan-all", "--daily", "00:00", "--utc", "00:00")
    assert both.code == 2 and "exactly one" in both.err


def test_scan_a_nested_image_and_wait(careen: Run, harbor: SimulatorServer) -> None:
    """NOTES §9.1: the tag scan, then the new summary from the tag's scan_overview."""
    harbor.state.set_scan("library/team/tools", "1.0", None)
    result = careen("scan", "library/team/tools:1.0", "--wait", "--timeout", "20",
                    "--interval", "0.05")
    assert result.code == 0, result.err
    [summary] = json.loads(result.out)
    assert summary["image"] == "library/team/tools:1.0" and summary["status"] == "success"
    assert harbor.stats.by_template["POST /repositories/{repo_name}/tags/{tag}/scan"] == 1


def test_scan_all(careen: Run, harbor: SimulatorServer) -> None:
    result = careen("scan", "--all")
    assert result.code == 0 and "scan-all started" in result.err
    assert len(harbor.state.executions) == 1
    template = ("POST /system/scanAll/schedule" if harbor.state.version_at_least(1, 8)
                else "POST /repositories/scanAll")
    assert harbor.stats.by_template[template] == 1


def test_sim_fleet_for_api_and_version(tmp_path: Path) -> None:
    assert fleet_for(None, "v1", None).harbor_version == "1.6.3"
    assert fleet_for(None, "v1", "v1.9.4").api == "v1"
    assert fleet_for(None, None, None).api == "v2.0"
    one = tmp_path / "fleet.yaml"
    one.write_text('harbor_version: "1.7.5"\nprojects: []\n')
    assert fleet_for(one, "v1", None).harbor_version == "1.7.5"
    with pytest.raises(UsageError, match=r"--api v2 does not serve Harbor 1\.7\.5"):
        fleet_for(one, "v2", None)
    with pytest.raises(UsageError, match="--api 'v3'"):
        fleet_for(None, "v3", None)
    with pytest.raises(UsageError, match="--harbor-version"):
        fleet_for(None, "v1", "latest")
    assert isinstance(fleet_for(None, "v2", "2.11.0"), Fleet)
