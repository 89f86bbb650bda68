"""Fixtures of the reliability suite (helpers in :mod:`.support`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from careen.cli.main import _run
from careen.registries.harbor import HarborClient, open_harbor
from careen.registries.http import HarborSettings

from .support import RecordingSleep


@pytest.fixture
def recording_sleep() -> RecordingSleep:
    return RecordingSleep()


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def error_line(self) -> str:
        """The ``careen: error: ...`` line (the one-line reason), or ``""``."""
        return next((line for line in self.err.splitlines()
                     if line.startswith("careen: ")), "")


Careen = Callable[..., CliResult]


@pytest.fixture
def careen(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[Careen]:
    """``careen("vulnerable", "-o", "-")``: the CLI in-process, in ``tmp_path``, with no
    CAREEN_* or registry_* variable of this machine leaking in (as tests/cli does)."""
    for name in list(os.environ):
        if name.startswith("CAREEN_") or name.lower().startswith("registry_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = _run(list(args), "careen")
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    yield run


@dataclass
class OpenedHarbor:
    """What the CLI's ``open_harbor`` call was given, with retries made instant."""

    sleep: RecordingSleep
    settings: list[HarborSettings]


@pytest.fixture
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> OpenedHarbor:
    """The CLI's Harbor client waits through :class:`RecordingSleep` instead of
    ``asyncio.sleep``: retries cost no wall time and every wait is recorded. The settings the
    command built are kept, so a test asserts the retry bound from them, not from a clock."""
    from careen.cli.commands import vulnerable_cmd

    opened = OpenedHarbor(RecordingSleep(), [])
    real = open_harbor

    async def open_recorded(settings: HarborSettings, **kwargs: Any) -> HarborClient:
        opened.settings.append(settings)
        return await real(settings, **{**kwargs, "sleep": opened.sleep})

    monkeypatch.setattr(vulnerable_cmd, "open_harbor", open_recorded)
    return opened
