"""Fixtures for the state tests: a store on a temporary file with a clock that ticks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from careen.state import StateStore


class TickingClock:
    """Returns ``start``, then ``start + step``, ... so that every record gets its own time
    (and ids, which carry the time to the second, differ)."""

    def __init__(self, start: datetime, step: timedelta = timedelta(seconds=1)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        current = self.now
        self.now += self.step
        return current


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock(datetime(2026, 11, 27, 23, 15, 1, tzinfo=UTC))


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.sqlite"


@pytest.fixture
def store(state_path: Path, clock: TickingClock) -> Iterator[StateStore]:
    with StateStore.open(state_path, clock=clock) as opened:
        yield opened
