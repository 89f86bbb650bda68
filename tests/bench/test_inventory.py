from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import inventory


def test_inventory_runs_at_a_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "i.json"
    assert inventory.main(["--in-process", "--sizes", "20", "--versions", "2.14", "--latency", "0",
                           "--repeat", "1", "--sample-images", "5", "--no-user-install",
                           "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["user_install"] is None
    assert case["careen"]["requests"] == case["careen"]["server_requests"]
    assert case["careen"]["probe_requests"] == 1  # the systeminfo of version detection
    assert case["careen"]["listing_requests"] == case["minimum_requests"]
    assert case["selection_match"] is True


def test_user_install_and_plain_crawler_select_alike(tmp_path: Path) -> None:
    """The issue-16 pair: Careen's command line from a plain 'pip install .' venv and the plain
    crawler, on the same simulator; both whole processes, both reading every artifact. (This
    environment's own 'careen' script stands in for the venv's, which takes a minute to make:
    ``python -m bench.inventory`` makes that one.)"""
    python = Path(sys.executable)
    out = tmp_path / "i.json"
    assert inventory.main(["--in-process", "--sizes", "40", "--versions", "2.11", "--latency", "0",
                           "--repeat", "1", "--sample-images", "5", "--user-python",
                           str(python), "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    user = case["user_install"]
    assert user is not None and python.exists()
    assert user["selection_match"] is True
    # One row per tag (an artifact may carry several), one per untagged artifact.
    assert user["careen_cli"]["runs"][0]["artifacts"] >= 40
    assert user["crawler"]["runs"][0]["artifacts"] == 40
    assert user["careen_cli"]["cpu_seconds"] > 0 and user["crawler"]["peak_rss_mb"] > 0
