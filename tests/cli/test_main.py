"""The command table of ``careen``: every command registered in one place, its module (and
the simulator, the lab, the demo, the contract checks) imported only when it runs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import careen
from careen.cli.main import COMMANDS, SEED_COMMANDS, load_command
from tests.forkserver import ForkServer

SOURCES = str(Path(careen.__file__).resolve().parents[1])

#: What a plain `pip install .` may lack (test extras) or need only for `careen sim`/`demo`.
NEVER_AT_START = ("careen.sim", "careen.lab", "careen.demo", "jsonschema",
                  "openapi_schema_validator", "starlette", "uvicorn")
#: The core and its libraries: `careen --help` and `--version` need none of them.
CORE = ("careen.nightly", "careen.config", "careen.assemble", "careen.cli.commands.run_cmd",
        "httpx", "pydantic")
#: What a command's --help needs no more than the command table does: the core is imported
#: when the command runs (typer itself may import pydantic, so it is not among these).
CORE_OF_A_RUN = ("careen.nightly", "careen.config", "careen.assemble", "careen.state",
                 "careen.reports", "httpx", "pydantic_settings")

#: What the probe imports before it runs the command: each case is a fork of an interpreter
#: that did just this (tests/forkserver.py), so its table of modules is what a new
#: interpreter's would be, without starting one per case.
PREAMBLE = """
import json, sys
from careen.cli.main import _run
"""
PROBE = PREAMBLE + """
code = _run(sys.argv[2:], "careen")
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def probe_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SOURCES}


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    with ForkServer(PREAMBLE, env=probe_environment(),
                    cwd=tmp_path_factory.mktemp("forks")) as server:
        yield server


def imported_after(forks: ForkServer, tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """Run ``careen ARGS`` in a process of its own; its exit code and every module it
    imported."""
    out = tmp_path / "modules.json"
    done = forks.run(PROBE, [str(out), *args], env=probe_environment(), cwd=tmp_path,
                     timeout=120)
    assert done.code == 0, done.err.decode()
    found = json.loads(out.read_text())
    return found["code"], set(found["modules"])


def loaded(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


@pytest.mark.parametrize("args", [("--help",), ("--version",)])
def test_help_and_version_load_none_of_the_core(
    forks: ForkServer, tmp_path: Path, args: tuple[str, ...],
) -> None:
    code, modules = imported_after(forks, tmp_path, *args)
    assert code == 0
    assert "careen.cli.main" in modules and "typer" in modules  # the probe did run
    assert loaded(modules, NEVER_AT_START) == []
    assert loaded(modules, CORE) == []


@pytest.mark.parametrize(("args", "module", "core_at_help"), [
    (("run", "--help"), "run_cmd", False), (("vulnerable", "--help"), "vulnerable_cmd", True),
    (("sim", "--help"), "sim_cmd", False), (("demo", "--help"), "demo_cmd", False),
])
def test_a_command_imports_its_module_and_the_simulator_lab_demo_only_when_it_runs(
    forks: ForkServer, tmp_path: Path, args: tuple[str, ...], module: str, core_at_help: bool,
) -> None:
    code, modules = imported_after(forks, tmp_path, *args)
    assert code == 0
    assert f"careen.cli.commands.{module}" in modules
    # Nor the modules of unrelated commands.
    assert "careen.cli.commands.config_cmd" not in modules
    assert "careen.cli.commands.export_cmd" not in modules
    assert loaded(modules, NEVER_AT_START) == []
    if not core_at_help:  # 'careen run --help' starts in a fraction of the core's second
        assert loaded(modules, CORE_OF_A_RUN) == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_listed_summary_is_the_command_s_own_help(name: str) -> None:
    command = load_command(name, COMMANDS[name])
    first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
    assert command.name == name
    assert COMMANDS[name].summary == first_paragraph


def test_help_lists_every_command_and_each_shows_its_own_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from careen.cli.main import _run

    assert _run(["--help"], "careen") == 0
    listing = capsys.readouterr().out
    for name, entry in COMMANDS.items():
        assert f" {name} " in listing
        assert entry.summary.split()[0] in listing
        assert _run([name, "--help"], "careen") == 0
        assert "Usage: careen " + name in " ".join(capsys.readouterr().out.split())
    for seed, name in SEED_COMMANDS.items():
        assert name in COMMANDS
        assert _run([name, "--help"], seed) == 0


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from careen.cli.main import _run

    assert _run(["vulnerabel"], "careen") == 2
    assert "No such command 'vulnerabel'" in capsys.readouterr().err
