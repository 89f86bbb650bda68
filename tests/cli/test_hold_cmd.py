"""``careen plan`` after a night whose rebuild did not help (issue 19): the held image in the
table and on stderr with its date and reason, exit 1; ``--rebuild IMAGE``, ``--no-hold`` and
``[run] hold = false`` plan it again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from careen.assemble import job_parts
from careen.config import load_config
from careen.nightly import NightlyOptions, run_nightly
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from careen.sim.harbor.fleet import ScanResult
from careen.state.store import StateStore
from tests.test_hold import LabellingBuilder
from tests.test_nightly import opener

Run = Any

FLEET: dict[str, Any] = {
    "harbor_version": "2.14.0",
    "users": {"admin": "Harbor12345"},
    "projects": [{"name": "library", "repositories": [
        {"name": "busybox", "artifacts": [{"tags": ["1.36"], "scan": {"high": 1}}]},
        {"name": "shell", "artifacts": [{"tags": ["1"], "scan": {}}]},
    ]}],
}


@pytest.fixture
def held_env(careen: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """One night ran: busybox (FROM scratch, so no registry is asked) was rebuilt and still
    has its high finding."""
    tree = tmp_path / "tree"
    for folder, text in {"busybox/1.36": "FROM scratch\nCOPY busybox /bin/busybox\n",
                         "shell/1": "FROM library/busybox:1.36\n"}.items():
        (tree / folder).mkdir(parents=True)
        (tree / folder / "Dockerfile").write_text(text)
    (tree / "busybox/1.36/busybox").write_bytes(b"\x7fELF")
    options = SimOptions(scan_delay=ScanDelays(pending=0.02, running=0.02))
    with SimulatorServer(Fleet.from_dict(FLEET), options) as harbor:
        env = {"CAREEN_HARBOR_URL": harbor.url, "CAREEN_HARBOR_USER": "admin",
               "CAREEN_HARBOR_PASSWORD": "Harbor12345",
               "CAREEN_REGISTRY_SERVER": "registry.test", "CAREEN_TREE_ROOT": str(tree),
               "CAREEN_STATE_PATH": str(tmp_path / "state.sqlite"),
               "CAREEN_OUTPUT_REPORTS_DIR": str(tmp_path / "reports")}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = load_config(None, cwd=tmp_path, environ=env, overrides={})
        builder = LabellingBuilder(harbor, {"library/busybox": ScanResult.of({"High": 1})})
        with StateStore.open(tmp_path / "state.sqlite") as store:
            asyncio.run(run_nightly(job_parts(config, open_builder=opener(builder)),
                                    NightlyOptions(reports_dir=tmp_path / "reports",
                                                   rescan_timeout=10, rescan_interval=0.05),
                                    store=store))
        assert sorted(builder.pushed) == ["library/busybox:1.36", "library/shell:1"]
        yield harbor


def test_plan_shows_the_held_image_with_its_reason_and_exits_1(careen: Run,
                                                                held_env: Any) -> None:
    result = careen("plan", "-f", "json")
    assert result.code == 1, result.err
    document = json.loads(result.out)
    assert document["steps"] == []
    held = [s for s in document["skipped"] if s["reason"] == "held"]
    assert [s["image"] for s in held] == ["library/busybox:1.36"]
    assert "did not help" in held[0]["detail"]
    assert "needs attention: library/busybox:1.36: held: its rebuild of 20" in result.err
    assert "--rebuild IMAGE" in result.err  # the next step says how to override
    table = careen("plan")
    assert table.code == 1
    assert "held" in table.out and "library/busybox:1.36" in table.out


@pytest.mark.parametrize("flags", [["--rebuild", "library/busybox:1.36"], ["--no-hold"]])
def test_rebuild_and_no_hold_plan_it_again(careen: Run, held_env: Any,
                                           flags: list[str]) -> None:
    result = careen("plan", "-f", "json", *flags)
    assert result.code == 0, result.err
    steps = [s["image"] for s in json.loads(result.out)["steps"]]
    assert steps == ["library/busybox:1.36", "library/shell:1"]


def test_hold_false_in_the_config_turns_it_off(careen: Run, held_env: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREEN_RUN_HOLD", "false")
    result = careen("plan", "-f", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["steps"][0]["image"] == "library/busybox:1.36"
