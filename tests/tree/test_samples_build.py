"""The sample tree really builds offline, in the order the graph gives (lab: buildah)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from careen.lab import BUSYBOX_PATH, Lab
from careen.tree.discover import discover_tree
from careen.tree.graph import BuildGraph

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "tree"


def test_sample_tree_builds_in_graph_order(lab: Lab, tmp_path: Path) -> None:
    tree_dir = tmp_path / "tree"
    shutil.copytree(SAMPLES, tree_dir)
    shutil.copy2(BUSYBOX_PATH, tree_dir / "base" / "1.0" / "busybox")
    registry = lab.open_registry
    tree = discover_tree(tree_dir, registry=registry, build_args={"REGISTRY": registry})
    graph = BuildGraph.from_tree(tree)
    assert tree.problems == ()

    # Storage of our own (not the lab's shared one); the lab's config files otherwise.
    storage = ["--storage-driver", "vfs", "--root", str(tmp_path / "root"),
               "--runroot", str(tmp_path / "runroot")]
    env = {**os.environ, **lab.buildah_env()}
    built: list[str] = []
    for level in graph.levels():
        for image in level:
            folder = tree.images[image].folder
            # Tagged with the registry host (what ${REGISTRY}/... names) and by short name
            # (buildah stores it as localhost/..., what FROM library/base:1.0 finds locally).
            argv = [
                "buildah", *storage, "bud", "--isolation", "chroot", "--pull=false",
                "--build-arg", f"REGISTRY={registry}",
                "-t", f"{registry}/{image.short}", "-t", image.short, str(folder),
            ]
            result = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=300, check=False
            )
            assert result.returncode == 0, f"{image.short}: {result.stderr[-2000:]}"
            built.append(image.short)
    assert sorted(built) == sorted(image.short for image in tree.images)

    listed = subprocess.run(
        ["buildah", *storage, "images", "--format", "{{.Name}}:{{.Tag}}"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()
    assert f"{registry}/library/tomcat:8.5" in listed
    assert "localhost/library/app:2.0" in listed
