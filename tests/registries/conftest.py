"""Fixtures of the registry tests (helpers in :mod:`.fakes`)."""

from __future__ import annotations

import pytest

from .fakes import FakeHarbor, RecordingSleep


@pytest.fixture
def fake() -> FakeHarbor:
    return FakeHarbor()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()
