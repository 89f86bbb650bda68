from __future__ import annotations

import json
from pathlib import Path

from bench import simulator
from bench.inventory import FleetShape
from tests.conftest import require_program


def test_simulator_headroom_runs_at_a_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    assert simulator.main(["--in-process", "--size", "20", "--versions", "2.11",
                           "--duration", "0.3", "--loader", "python", "--repeat", "1",
                           "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["load"]["failed"] == 0
    assert case["load"]["runs"][0]["server_requests"] >= case["load"]["runs"][0]["ok"] > 0


def test_wrk_loader_answers_at_a_toy_size(tmp_path: Path) -> None:
    require_program("wrk", "wrk")  # Debian's wrk, installed here when missing
    out = tmp_path / "s.json"
    assert simulator.main(["--in-process", "--size", "20", "--versions", "2.14", "--duration", "1",
                           "--loader", "wrk", "--repeat", "1", "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["load"]["failed"] == 0 and case["load"]["rate"] > 0


def test_listing_paths_name_every_project_or_repository() -> None:
    shape = FleetShape.for_size(100)
    assert len(simulator.listing_paths(shape, "2.14", 0)) == shape.projects
    assert len(simulator.listing_paths(shape, "2.11", 0)) == (
        shape.projects * shape.repositories_per_project)
