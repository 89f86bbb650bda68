"""Careen's command line run in-process, as the tests of several folders need it.

``in_process_careen`` clears every ``CAREEN_*`` and ``registry_*`` variable of the machine
(CI sets some), moves into the test's folder, and returns a function that runs one command
and gives back its exit code and what it printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from careen.cli.main import SEED_COMMANDS, _run, run_seed_command


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The ``careen: ...`` line (the one-line reason), or ``""``."""
        return next((line for line in self.err.splitlines() if line.startswith("careen: ")), "")

    def attention(self) -> list[str]:
        """The ``needs attention: ...`` lines, in order."""
        return [line for line in self.err.splitlines() if line.startswith("needs attention: ")]


Careen = Callable[..., CliResult]


def in_process_careen(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                      folder: Path) -> Careen:
    for name in list(os.environ):
        if name.startswith("CAREEN_") or name.lower().startswith("registry_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(folder)

    def run(*args: str, prog: str = "careen") -> CliResult:
        capsys.readouterr()
        code = run_seed_command(prog, args) if prog in SEED_COMMANDS else _run(list(args), prog)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
