from __future__ import annotations

import json
from pathlib import Path

from bench import planning


def test_planning_runs_at_a_toy_size(tmp_path: Path) -> None:
    out, md = tmp_path / "p.json", tmp_path / "p.md"
    assert planning.main(["--in-process", "--sizes", "20", "40", "--repeat", "1",
                          "--workdir", str(tmp_path), "--json", str(out),
                          "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    small, large = report["cases"]
    assert small["dockerfiles"] == 20 and large["dockerfiles"] == 40
    # The generated tree has FROM chains the planner follows: edges, and a cascade.
    assert small["problems"] == 0 and small["edges"] > 0
    assert large["steps"] >= large["selected"] > 0
    assert {t["target"].split(":")[0] for t in report["targets"]} == {
        "linear"}  # no 5,000 case here
    assert "| Dockerfiles |" in md.read_text()
    assert not list(tmp_path.glob("tree-*"))  # the trees are removed


def test_generated_tree_uses_global_args_for_parents(tmp_path: Path) -> None:
    from careen.tree.discover import discover_tree

    generated = planning.generate_tree(tmp_path, 200, seed=3)
    tree = discover_tree(tmp_path, registry=planning.REGISTRY)
    assert len(tree.images) == generated.dockerfiles == 200
    texts = [p.read_text() for p in tmp_path.glob("*/*/Dockerfile")]
    assert any("${BASE_TAG}" in t for t in texts)
    assert any("COPY --from=build" in t for t in texts)
    tier0 = generated.tiers[0] * planning.VERSIONS_PER_APP
    with_parents = sum(1 for image in tree.images if tree.tree_parents(image))
    assert with_parents == generated.dockerfiles - tier0
