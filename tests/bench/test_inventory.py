from __future__ import annotations

import json
from pathlib import Path

from bench import inventory


def test_inventory_runs_at_a_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "i.json"
    assert inventory.main(["--sizes", "20", "--versions", "2.14", "--latency", "0",
                           "--repeat", "1", "--sample-images", "5", "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["careen"]["requests"] == case["careen"]["server_requests"]
    assert case["careen"]["probe_requests"] == 1  # the systeminfo of version detection
    assert case["careen"]["listing_requests"] == case["minimum_requests"]
    assert case["selection_match"] is True
