"""Build order: parents before children, cycles reported and left out."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from careen.errors import ExitCode, UsageError
from careen.reference import ImageReference
from careen.tree.discover import discover_tree
from careen.tree.graph import BuildGraph, CycleError

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "tree"


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def graph_of(edges: dict[str, list[str]]) -> BuildGraph:
    return BuildGraph({ref(child): [ref(p) for p in parents] for child, parents in edges.items()})


def shorts(levels: list[list[ImageReference]]) -> list[list[str]]:
    return [[image.short for image in level] for level in levels]


def write(root: Path, folder: str, text: str) -> None:
    path = root / folder / "Dockerfile"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def sample_graph() -> BuildGraph:
    return BuildGraph.from_tree(discover_tree(SAMPLES, registry="registry.example.com"))


def test_sample_tree_levels(sample_graph: BuildGraph) -> None:
    assert shorts(sample_graph.levels()) == [
        ["library/base:1.0", "library/tools:latest"],
        ["library/jre:8u191", "library/mysql:5.7.18", "library/nginx:1.25"],
        ["library/app:2.0", "library/tomcat:8.5"],
    ]
    assert sample_graph.cycles() == ()
    assert sample_graph.blocked() == frozenset()
    assert sample_graph.problems == ()
    sample_graph.check_acyclic()


def test_sample_tree_relations(sample_graph: BuildGraph) -> None:
    base, jre = ref("library/base:1.0"), ref("library/jre:8u191")
    assert [c.short for c in sample_graph.children(base)] == [
        "library/app:2.0", "library/jre:8u191", "library/mysql:5.7.18", "library/nginx:1.25"
    ]
    assert sample_graph.parents(ref("library/app:2.0")) == (jre, base)
    assert sample_graph.ancestors(ref("library/tomcat:8.5")) == {jre, base}
    assert sample_graph.descendants(jre) == {ref("library/tomcat:8.5"), ref("library/app:2.0")}
    # Queries accept the Harbor host too.
    assert sample_graph.descendants([ref("registry.example.com/library/jre:8u191")]) == {
        ref("library/tomcat:8.5"), ref("library/app:2.0")
    }
    assert ref("registry.example.com/library/jre:8u191") in sample_graph
    assert ref("library/unknown:1") not in sample_graph
    assert sample_graph.children(ref("library/unknown:1")) == ()
    assert sample_graph.descendants(ref("library/tools:latest")) == frozenset()


def test_build_order_of_a_selection(sample_graph: BuildGraph) -> None:
    jre = ref("library/jre:8u191")
    selection = {jre, *sample_graph.descendants(jre), ref("library/tools:latest")}
    assert shorts(sample_graph.build_order(selection)) == [
        ["library/tools:latest"], ["library/jre:8u191"], ["library/app:2.0", "library/tomcat:8.5"]
    ]


def test_external_parents_are_not_edges() -> None:
    graph = graph_of({"library/a:1": ["alpine:3.19", "library/b:1"], "library/b:1": []})
    assert graph.parents(ref("library/a:1")) == (ref("library/b:1"),)
    assert shorts(graph.levels()) == [["library/b:1"], ["library/a:1"]]


def test_level_is_one_more_than_the_deepest_parent() -> None:
    graph = graph_of({
        "p/a:1": [], "p/b:1": ["p/a:1"], "p/c:1": ["p/b:1"], "p/d:1": ["p/a:1", "p/c:1"],
    })
    assert shorts(graph.levels()) == [["p/a:1"], ["p/b:1"], ["p/c:1"], ["p/d:1"]]


def test_two_cycle_is_reported_and_left_out() -> None:
    graph = graph_of({
        "library/a:1": ["library/b:1"], "library/b:1": ["library/a:1"],
        "library/c:1": ["library/a:1"], "library/d:1": [], "library/e:1": ["library/d:1"],
    })
    assert graph.cycles() == ((ref("library/a:1"), ref("library/b:1")),)
    assert graph.blocked() == {ref("library/a:1"), ref("library/b:1"), ref("library/c:1")}
    assert shorts(graph.levels()) == [["library/d:1"], ["library/e:1"]]
    assert graph.problems == (
        "images build FROM each other in a cycle: library/a:1 -> library/b:1 -> library/a:1; "
        "left out of the build order with 1 image built on them",
    )
    with pytest.raises(CycleError) as caught:
        graph.check_acyclic()
    assert caught.value.cycle == (ref("library/a:1"), ref("library/b:1"))
    assert isinstance(caught.value, UsageError)
    assert caught.value.exit_code == ExitCode.USAGE


def test_an_image_on_a_cycle_and_on_a_buildable_parent_is_blocked_the_parent_still_built(
) -> None:
    graph = graph_of({
        "library/a:1": ["library/b:1"], "library/b:1": ["library/a:1"],
        "library/d:1": [], "library/x:1": ["library/d:1", "library/a:1"],
    })
    assert graph.blocked() == {ref("library/a:1"), ref("library/b:1"), ref("library/x:1")}
    assert shorts(graph.levels()) == [["library/d:1"]]
    assert shorts(graph.build_order([ref("library/d:1"), ref("library/x:1")])) == [
        ["library/d:1"]
    ]
    assert graph.problems == (
        "images build FROM each other in a cycle: library/a:1 -> library/b:1 -> library/a:1; "
        "left out of the build order with 1 image built on them",
    )


def test_a_wrapper_of_its_upstream_is_no_cycle_and_its_children_follow(tmp_path: Path) -> None:
    """Statemood/dockerfiles' alpine/3.9 says ``FROM alpine:3.9`` and nginx/1.25-style wrappers
    ``FROM nginx:1.25``: the image's own name is its upstream, built first, never a cycle."""
    write(tmp_path, "alpine/3.9", "FROM alpine:3.9\nRUN apk upgrade\n")
    write(tmp_path, "nginx/1.25", "FROM library/nginx:1.25\n")
    write(tmp_path, "redis/4.0.12", "FROM library/alpine:3.9\n")
    tree = discover_tree(tmp_path)
    graph = BuildGraph.from_tree(tree)
    assert graph.cycles() == ()
    assert shorts(graph.levels()) == [["library/alpine:3.9", "library/nginx:1.25"],
                                      ["library/redis:4.0.12"]]
    assert tree.is_upstream_wrapper(ref("library/alpine:3.9"))
    assert not tree.is_upstream_wrapper(ref("library/redis:4.0.12"))
    assert tree.problems == ()


def test_two_cycle_from_the_tree_with_registry_hosts(tmp_path: Path) -> None:
    write(tmp_path, "a/1", "FROM registry.abc.com/library/b:1\n")
    write(tmp_path, "b/1", "FROM old-registry.abc.com/library/a:1\n")
    graph = BuildGraph.from_tree(discover_tree(tmp_path, registry="registry.abc.com",
                                               registries=["old-registry.abc.com"]))
    assert graph.cycles() == ((ref("library/a:1"), ref("library/b:1")),)
    assert graph.levels() == []


def test_docker_hub_qualified_from_is_never_a_tree_parent(tmp_path: Path) -> None:
    """Statemood's ``alpine/3.7`` says ``FROM docker.io/alpine:3.7``: the upstream, even
    though ``b/1`` below names ``docker.io/library/a:1`` which the tree also builds."""
    write(tmp_path, "a/1", "FROM scratch\n")
    write(tmp_path, "b/1", "FROM docker.io/library/a:1\n")
    graph = BuildGraph.from_tree(discover_tree(tmp_path, registry="registry.abc.com"))
    assert graph.parents(ref("library/b:1")) == ()


def test_cycle_is_named_in_order_in_a_larger_knot() -> None:
    graph = graph_of({
        "p/a:1": ["p/b:1"], "p/b:1": ["p/c:1"], "p/c:1": ["p/a:1", "p/d:1"], "p/d:1": ["p/b:1"],
    })
    (cycle,) = graph.cycles()
    assert [image.short for image in cycle] == ["p/a:1", "p/b:1", "p/c:1"]
    assert "and 1 more images tangled with them" in graph.problems[0]
    assert graph.levels() == []


def test_deep_chain_does_not_hit_the_recursion_limit() -> None:
    count = 5000
    edges = {f"p/i:{n}": ([f"p/i:{n - 1}"] if n else []) for n in range(count)}
    edges["p/i:0"] = [f"p/i:{count - 1}"]  # close a very long cycle
    graph = graph_of(edges)
    (cycle,) = graph.cycles()
    assert len(cycle) == count


def test_generated_tree_of_two_thousand_images(tmp_path: Path) -> None:
    rng = random.Random(2017)
    count = 2000
    names = [f"app{n:04d}" for n in range(count)]
    expected_parents: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        picks = {names[rng.randrange(index)] for _ in range(rng.randrange(3))} if index else set()
        chosen = sorted(picks)
        expected_parents[name] = chosen
        lines = ["ARG REGISTRY=registry.abc.com"]
        if not chosen:
            lines.append("FROM scratch")
        for position, parent in enumerate(chosen):
            # Mix the ways a FROM can name a tree image.
            prefix = ("${REGISTRY}/library/", "library/", "")[position % 3]
            lines.append(f"FROM {prefix}{parent}:1.0 AS s{position}")
        lines.append("FROM alpine:3.19")  # external: no edge
        write(tmp_path, f"{name}/1.0", "\n".join(lines) + "\n")

    tree = discover_tree(tmp_path, registry="registry.abc.com")
    assert len(tree.images) == count
    assert tree.problems == ()
    graph = BuildGraph.from_tree(tree)
    levels = graph.levels()

    level_of = {image: number for number, level in enumerate(levels) for image in level}
    assert len(level_of) == count
    image_of = {name: ref(f"library/{name}:1.0") for name in names}  # parsed once each
    for name, parents in expected_parents.items():
        image = image_of[name]
        parent_levels = [level_of[image_of[parent]] for parent in parents]
        assert set(graph.parents(image)) == {image_of[p] for p in parents}
        # Exactly one level below its deepest parent, so every parent comes first.
        assert level_of[image] == (max(parent_levels) + 1 if parents else 0)
    for level in levels:
        assert level == sorted(level, key=lambda image: image.short)


def test_fifty_thousand_images_in_memory() -> None:
    # No timing assertion: this only shows the work is linear enough to finish in the suite.
    count = 50_000
    rng = random.Random(7)
    images = [ImageReference(f"p/i{n}", "1") for n in range(count)]
    parents = {
        image: [images[rng.randrange(n)] for _ in range(2)] if n else []
        for n, image in enumerate(images)
    }
    graph = BuildGraph(parents)
    levels = graph.levels()
    assert sum(len(level) for level in levels) == count
    level_of = {image: number for number, level in enumerate(levels) for image in level}
    assert all(level_of[p] < level_of[c] for c, ps in parents.items() for p in ps)
