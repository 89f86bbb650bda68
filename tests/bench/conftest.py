"""The benchmarks are run at toy sizes so they do not rot; no figure is asserted.

``bench`` lives at the repository's root, beside ``src``: make it importable however pytest
was started (``python -m pytest`` adds the working folder, ``pytest`` does not)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each benchmark starts simulator and client processes, seconds apiece: they run with
    the integration tests (``lab``), not in the developer's fast set."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.lab)
