"""Fixtures of the reliability suite (helpers in :mod:`.support`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from careen.registries.harbor import HarborClient, open_harbor
from careen.registries.http import HarborSettings
from tests.cli_runner import Careen, CliResult, in_process_careen

from .support import RecordingSleep

__all__ = ["Careen", "CliResult", "OpenedHarbor"]


@pytest.fixture
def recording_sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def careen(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[Careen]:
    """``careen("vulnerable", "-o", "-")``: the CLI in-process, in ``tmp_path``, with no
    CAREEN_* or registry_* variable of this machine leaking in (as tests/cli does)."""
    yield in_process_careen(capsys, monkeypatch, tmp_path)


@dataclass
class OpenedHarbor:
    """What the CLI's ``open_harbor`` call was given, with retries made instant."""

    sleep: RecordingSleep
    settings: list[HarborSettings]


@pytest.fixture
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> OpenedHarbor:
    """The CLI's Harbor client waits through :class:`RecordingSleep` instead of
    ``asyncio.sleep``: retries cost no wall time and every wait is recorded. The settings the
    command built are kept, so a test asserts the retry bound from them, not from a clock.
    Covers ``careen vulnerable`` and the commands of ``harbor_cmd`` (``images``...)."""
    from careen.cli.commands import harbor_cmd, vulnerable_cmd

    opened = OpenedHarbor(RecordingSleep(), [])
    real = open_harbor

    async def open_recorded(settings: HarborSettings, **kwargs: Any) -> HarborClient:
        opened.settings.append(settings)
        return await real(settings, **{**kwargs, "sleep": opened.sleep})

    monkeypatch.setattr(vulnerable_cmd, "open_harbor", open_recorded)
    monkeypatch.setattr(harbor_cmd, "open_harbor", open_recorded)
    return opened
