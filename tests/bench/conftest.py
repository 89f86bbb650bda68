"""The benchmarks are run at toy sizes so they do not rot; no figure is asserted.

``bench`` lives at the repository's root, beside ``src``: make it importable however pytest
was started (``python -m pytest`` adds the working folder, ``pytest`` does not)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
