from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import orchestration


def test_tree_is_small_images_on_the_lab_base(tmp_path: Path) -> None:
    orchestration.write_tree(tmp_path, 3, "127.0.0.1:5000/library/busybox-base:1.0")
    texts = sorted(p.read_text() for p in tmp_path.glob("*/1.0/Dockerfile"))
    assert len(texts) == 3
    assert all(t.startswith("FROM 127.0.0.1:5000/library/busybox-base:1.0\nCOPY") for t in texts)


@pytest.mark.lab
def test_orchestration_runs_on_the_lab(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    assert orchestration.main(["--in-process", "--images", "1", "--repeat", "1",
                               "--json", str(out)]) == 0
    case = json.loads(out.read_text())["case"]
    assert case["images"] == 1 and case["loop"]["seconds"] > 0
