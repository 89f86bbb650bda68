"""Dockerfile trees as they are in the field: never a silent wrong name (issue 13).

Every tree here is a small copy of a public tree's folder layout and FROM lines (not its
files): Statemood/dockerfiles (the public twin of the 2017 scheme: ``APP/VERSION``, wrappers of
upstream images, a mirror host), docker-library/php (``VERSION/VARIANT/FLAVOR``) and
jupyter/docker-stacks (``images/NAME`` with nested CUDA variants, parents on quay.io through
ARGs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from careen.attention import AttentionKind
from careen.cli.main import _run
from careen.config import load_config
from careen.errors import ConfigError
from careen.reference import ImageReference
from careen.tree.discover import (
    DockerfileTree,
    MappingEntry,
    TreeRule,
    discover_configured,
    discover_tree,
)
from careen.tree.graph import BuildGraph, tree_attention


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def write_tree(root: Path, dockerfiles: dict[str, str]) -> Path:
    for folder, text in dockerfiles.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "Dockerfile").write_text(text, encoding="utf-8")
    return root


def shorts(tree: DockerfileTree) -> list[str]:
    return [image.short for image in tree.images]


def unmapped(tree: DockerfileTree) -> list[str]:
    return [problem.path.as_posix() for problem in tree.unmapped]


# Statemood/dockerfiles at its HEAD: APP/VERSION, wrappers qualified (docker.io) and not,
# children FROM statemood/..., one parent missing (jre/8u191), one FROM the old host name
# img.linge.io, one folder three deep (elasticstack/elasticsearch/6.6.1).
STATEMOOD = {
    "alpine/3.7": "FROM docker.io/alpine:3.7\nRUN apk upgrade --no-cache\n",
    "alpine/3.9": "FROM alpine:3.9\n",
    "centos/7": "FROM docker.io/centos:7\n",
    "jre/8u181": "FROM statemood/alpine:3.7\n",
    "kafka/2.1.0": "FROM statemood/jre:8u181\n",
    "cerebro/0.8.3": "FROM statemood/jre:8u191\n",
    "grafana/5.4.2": "FROM img.linge.io/library/centos:7\n",
    "mysql/5.7.24": "FROM statemood/centos:7\n",
    "elasticstack/elasticsearch/6.6.1": "FROM statemood/jre:8u191\n",
}


def test_statemood_wrappers_are_upstream_and_children_follow(tmp_path: Path) -> None:
    tree = discover_tree(write_tree(tmp_path, STATEMOOD), project="statemood",
                         registries=["img.linge.io"])
    graph = BuildGraph.from_tree(tree)
    assert graph.cycles() == ()
    # statemood/alpine:3.7 is built FROM docker.io/alpine:3.7: external, level 0; the jre on
    # it and the kafka on the jre follow it.
    assert graph.parents(ref("statemood/alpine:3.7")) == ()
    assert graph.parents(ref("statemood/jre:8u181")) == (ref("statemood/alpine:3.7"),)
    assert graph.parents(ref("statemood/kafka:2.1.0")) == (ref("statemood/jre:8u181"),)
    levels = [[image.short for image in level] for level in graph.levels()]
    assert levels[0][:3] == ["statemood/alpine:3.7", "statemood/alpine:3.9",
                             "statemood/centos:7"]
    assert graph.descendants(ref("statemood/alpine:3.7")) == {
        ref("statemood/jre:8u181"), ref("statemood/kafka:2.1.0")}


def test_statemood_missing_parents_are_warnings_naming_the_folder(tmp_path: Path) -> None:
    tree = discover_tree(write_tree(tmp_path, STATEMOOD), project="statemood",
                         registries=["img.linge.io"])
    missing = {p.path.as_posix(): p for p in tree.warnings
               if p.kind is AttentionKind.MISSING_PARENT}
    # jre is built here (8u181) but not 8u191: a missing folder, not an upstream image.
    assert set(missing) == {"cerebro/0.8.3/Dockerfile"}
    assert "statemood/jre:8u191" in missing["cerebro/0.8.3/Dockerfile"].message
    assert "cascade stops" in missing["cerebro/0.8.3/Dockerfile"].message
    assert "statemood/jre:8u191" in missing["cerebro/0.8.3/Dockerfile"].advice
    # Any image of the tree's own project (not library) that no folder builds is one too.
    write_tree(tmp_path, {"zipkin/2.5.1": "FROM img.linge.io/statemood/jdk:8u151\n"})
    again = discover_tree(tmp_path, project="statemood", registries=["img.linge.io"])
    assert {p.path.as_posix() for p in again.warnings} == {
        "cerebro/0.8.3/Dockerfile", "zipkin/2.5.1/Dockerfile"}


def test_statemood_old_host_name_is_this_trees_registry(tmp_path: Path) -> None:
    """grafana/5.4.2 says ``FROM img.linge.io/library/centos:7``, the tree's registry under
    an old name: with ``[tree] registries`` it is the tree's centos/7, built first."""
    write_tree(tmp_path, STATEMOOD)
    grafana, centos = ref("library/grafana:5.4.2"), ref("library/centos:7")
    tree = discover_tree(tmp_path, registries=["img.linge.io"])
    assert BuildGraph.from_tree(tree).parents(grafana) == (centos,)
    assert BuildGraph.from_tree(discover_tree(tmp_path)).parents(grafana) == ()


def test_mirrored_upstream_images_in_the_registry_are_no_warning(tmp_path: Path) -> None:
    """A Harbor holds mirrors of upstream images (library/busybox-base, upstream/os): a FROM
    naming them is not a missing folder."""
    write_tree(tmp_path, {"base/1.0": "FROM registry.abc.com/upstream/os:stable\n",
                          "redis/7.2": "FROM registry.abc.com/library/busybox-base:1.0\n"})
    tree = discover_tree(tmp_path, registry="registry.abc.com")
    assert tree.problems == ()


def test_statemood_three_deep_folder_is_unmapped_under_auto(tmp_path: Path) -> None:
    tree = discover_tree(write_tree(tmp_path, STATEMOOD), project="statemood")
    assert unmapped(tree) == ["elasticstack/elasticsearch/6.6.1"]
    [problem] = tree.unmapped
    assert "'elasticstack' is not the project" in problem.message
    assert "[[tree.rule]]" in problem.advice
    assert ref("elasticstack/elasticsearch:6.6.1") not in tree.images
    # A rule names it; the built-in layout still maps the rest.
    ruled = discover_tree(tmp_path, project="statemood", rules=[
        TreeRule("elasticstack/{app}/{version}", "statemood/{app}:{version}")])
    assert ruled.unmapped == ()
    assert ruled.images[ref("statemood/elasticsearch:6.6.1")].source == "rule"
    assert len(ruled.images) == len(STATEMOOD)


@pytest.mark.parametrize("text", ["FROM nginx:1.25\n", "FROM docker.io/library/nginx:1.25\n",
                                  "FROM library/nginx:1.25 AS base\nFROM base\n"])
def test_a_wrapper_of_its_own_name_is_never_a_cycle(tmp_path: Path, text: str) -> None:
    write_tree(tmp_path, {"nginx/1.25": text, "site/1.0": "FROM nginx:1.25\n"})
    tree = discover_tree(tmp_path)
    graph = BuildGraph.from_tree(tree)
    assert graph.cycles() == () and graph.blocked() == frozenset()
    assert graph.parents(ref("library/site:1.0")) == (ref("library/nginx:1.25"),)
    assert tree_attention(tree, graph) == ()


def test_a_real_cycle_is_still_a_cycle_and_needs_attention(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a/1": "FROM b:1\n", "b/1": "FROM a:1\n"})
    tree = discover_tree(tmp_path)
    [item] = tree_attention(tree)
    assert item.kind is AttentionKind.CYCLE and "library/a:1" in item.reason


# docker-library/php at its HEAD: VERSION/VARIANT/FLAVOR, the repository's top as the root.
PHP = {
    "8.2/bookworm/apache": "FROM debian:bookworm-slim\n",
    "8.2/bookworm/cli": "FROM debian:bookworm-slim\n",
    "8.2/alpine3.23/fpm": "FROM alpine:3.23\n",
    "8.3/trixie/zts": "FROM debian:trixie-slim\n",
}


def test_php_version_variant_flavor_is_never_read_as_a_project(tmp_path: Path) -> None:
    tree = discover_tree(write_tree(tmp_path, PHP))
    assert tree.images == {}
    assert unmapped(tree) == sorted(PHP)
    apache = next(p for p in tree.unmapped if p.path.as_posix() == "8.2/bookworm/apache")
    # The name the old reading invented is shown, so a person sees what was avoided.
    assert "8.2/bookworm:apache" in apache.message
    assert {item.kind for item in tree_attention(tree)} == {AttentionKind.UNMAPPED_DOCKERFILE}


def test_php_by_rule_with_extra_tags(tmp_path: Path) -> None:
    rule = TreeRule("{version}/{variant}/{flavor}", "library/php:{version}-{flavor}-{variant}",
                    ("{version}-{flavor}",))
    tree = discover_tree(write_tree(tmp_path, PHP), rules=[rule])
    assert tree.problems == ()
    apache = tree.images[ref("library/php:8.2-apache-bookworm")]
    assert apache.tags == ("8.2-apache-bookworm", "8.2-apache")
    assert tree.folder_for(ref("registry.abc.com/library/php:8.2-apache")) is apache
    assert shorts(tree) == ["library/php:8.2-apache-bookworm", "library/php:8.2-cli-bookworm",
                            "library/php:8.2-fpm-alpine3.23", "library/php:8.3-zts-trixie"]


def test_rules_first_match_wins_then_the_layout(tmp_path: Path) -> None:
    write_tree(tmp_path, {"php/8.2/bookworm/apache": "FROM debian:bookworm-slim\n",
                          "php/8.2/bookworm/cli": "FROM debian:bookworm-slim\n",
                          "redis/7.2": "FROM alpine:3.19\n"})
    rules = [TreeRule("php/{version}/*/apache", "library/php:{version}-apache"),
             TreeRule("php/{version}/{variant}/{flavor}",
                      "library/php:{version}-{flavor}-{variant}")]
    tree = discover_tree(tmp_path, rules=rules)
    assert shorts(tree) == ["library/php:8.2-apache", "library/php:8.2-cli-bookworm",
                            "library/redis:7.2"]
    assert tree.images[ref("library/redis:7.2")].source == "app/version"


def test_a_rule_making_no_image_name_is_unmapped(tmp_path: Path) -> None:
    write_tree(tmp_path, {"Tools/1.0": "FROM scratch\n"})
    tree = discover_tree(tmp_path, rules=[TreeRule("{app}/{version}", "acme/{app}:{version}")])
    assert unmapped(tree) == ["Tools/1.0"]
    assert "rule 1" in tree.unmapped[0].message and "'acme/Tools:1.0'" in tree.unmapped[0].message


@pytest.mark.parametrize(
    ("path", "image", "match"),
    [("{app}/{version}", "acme/{name}:{version}", "does not name"),
     ("../x/{v}", "acme/x:{v}", "not a folder pattern"),
     ("{v}/{v}", "acme/x:{v}", "twice")],
)
def test_bad_rules_are_config_errors(path: str, image: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        TreeRule(path, image)
    assert caught.value.key == "tree.rule"


# jupyter/docker-stacks at its HEAD: images/NAME, nested CUDA variants inside an image's
# folder, parents on quay.io through ARG REGISTRY/OWNER/BASE_IMAGE.
JUPYTER = {
    "images/docker-stacks-foundation": "FROM ubuntu:24.04\n",
    "images/base-notebook": ("ARG REGISTRY=quay.io\nARG OWNER=jupyter\n"
                             "ARG BASE_IMAGE=$REGISTRY/$OWNER/docker-stacks-foundation\n"
                             "FROM $BASE_IMAGE\n"),
    "images/pytorch-notebook": ("ARG REGISTRY=quay.io\nARG OWNER=jupyter\n"
                                "ARG BASE_IMAGE=$REGISTRY/$OWNER/base-notebook\n"
                                "FROM $BASE_IMAGE\n"),
    "images/pytorch-notebook/cuda12": ("ARG REGISTRY=quay.io\nARG OWNER=jupyter\n"
                                       "ARG BASE_IMAGE=$REGISTRY/$OWNER/base-notebook\n"
                                       "FROM $BASE_IMAGE\n"),
}


def test_jupyter_nested_variant_is_unmapped_not_a_tag(tmp_path: Path) -> None:
    rules = [TreeRule("images/{name}", "jupyter/{name}:latest")]
    tree = discover_tree(write_tree(tmp_path, JUPYTER), rules=rules, registries=["quay.io"])
    assert unmapped(tree) == ["images/pytorch-notebook/cuda12"]
    assert "nested inside images/pytorch-notebook" in tree.unmapped[0].message
    graph = BuildGraph.from_tree(tree)
    assert [[i.short for i in level] for level in graph.levels()] == [
        ["jupyter/docker-stacks-foundation:latest"], ["jupyter/base-notebook:latest"],
        ["jupyter/pytorch-notebook:latest"]]
    # quay.io is not this tree's registry unless said so: then every parent is external.
    alone = discover_tree(tmp_path, rules=rules)
    assert BuildGraph.from_tree(alone).parents(ref("jupyter/base-notebook:latest")) == ()


def test_jupyter_nested_variant_mapped_by_a_rule(tmp_path: Path) -> None:
    rules = [TreeRule("images/{name}", "jupyter/{name}:latest"),
             TreeRule("images/{name}/{variant}", "jupyter/{name}:{variant}")]
    tree = discover_tree(write_tree(tmp_path, JUPYTER), rules=rules, registries=["quay.io"])
    assert tree.unmapped == ()
    assert BuildGraph.from_tree(tree).parents(ref("jupyter/pytorch-notebook:cuda12")) == (
        ref("jupyter/base-notebook:latest"),)


def test_nested_tools_debug_folder_is_unmapped(tmp_path: Path) -> None:
    write_tree(tmp_path, {"tools/1.0": "FROM alpine:3.19\n",
                          "tools/1.0/debug": "FROM library/tools:1.0\n"})
    tree = discover_tree(tmp_path)
    assert shorts(tree) == ["library/tools:1.0"]
    assert unmapped(tree) == ["tools/1.0/debug"]


def test_root_at_the_repository_top_names_the_folder_to_use(tmp_path: Path) -> None:
    """The 2017 scheme's repository keeps its tree in Dockerfiles/library/APP/VERSION; a
    --root at the repository's top once gave 22 "must be lower-case" errors."""
    write_tree(tmp_path, {f"Dockerfiles/library/{app}/1.0": "FROM alpine:3.19\n"
                          for app in ("jre", "tomcat", "nginx")})
    tree = discover_tree(tmp_path)
    assert tree.images == {}
    assert unmapped(tree) == [f"Dockerfiles/library/{app}/1.0"
                              for app in ("jre", "nginx", "tomcat")]
    [hint] = tree.warnings
    assert hint.path.as_posix() == "Dockerfiles/library"
    assert "'Dockerfiles'" in hint.message
    assert hint.advice == 'try --root Dockerfiles/library (or [tree] root = "Dockerfiles/library")'
    assert shorts(discover_tree(tmp_path / "Dockerfiles/library")) == [
        "library/jre:1.0", "library/nginx:1.0", "library/tomcat:1.0"]


# -- several tags, one build ----------------------------------------------------------------


def test_latest_symlink_is_an_extra_tag_of_its_version(tmp_path: Path) -> None:
    write_tree(tmp_path, {"ubuntu/22.04": "FROM ubuntu:22.04\n",
                          "app/1.0": "FROM library/ubuntu:latest\n"})
    (tmp_path / "ubuntu/latest").symlink_to("22.04", target_is_directory=True)
    tree = discover_tree(tmp_path)
    assert shorts(tree) == ["library/app:1.0", "library/ubuntu:22.04"]
    assert tree.images[ref("library/ubuntu:22.04")].tags == ("22.04", "latest")
    # A child FROM the latest tag is a child of the one build.
    assert BuildGraph.from_tree(tree).parents(ref("library/app:1.0")) == (
        ref("library/ubuntu:22.04"),)


def test_mapping_table_gives_one_folder_several_tags(tmp_path: Path) -> None:
    write_tree(tmp_path, {"redis/7.2": "FROM alpine:3.19\n"})
    tree = discover_tree(tmp_path, mapping={
        "library/redis:7.2": MappingEntry("redis/7.2", ("7.2", "7", "latest"))})
    assert shorts(tree) == ["library/redis:7.2"]
    assert tree.images[ref("library/redis:7.2")].tags == ("7.2", "7", "latest")
    assert tree.primary(ref("redis:7")) == ref("library/redis:7.2")


def test_two_mapping_lines_to_one_folder_are_one_build(tmp_path: Path) -> None:
    write_tree(tmp_path, {"redis/7.2": "FROM alpine:3.19\n"})
    tree = discover_tree(tmp_path, mapping={"library/redis:7": "redis/7.2",
                                            "library/redis:7.2": "redis/7.2"})
    [image] = tree.images.values()
    assert set(image.tags) == {"7", "7.2"}


def test_a_tag_claimed_by_two_folders_is_reported(tmp_path: Path) -> None:
    write_tree(tmp_path, {"redis/7.2": "FROM alpine:3.19\n", "redis/latest": "FROM scratch\n"})
    tree = discover_tree(tmp_path, mapping={
        "library/redis:7.2": MappingEntry("redis/7.2", ("latest",))})
    assert tree.images[ref("library/redis:7.2")].tags == ("7.2",)
    assert tree.images[ref("library/redis:latest")].folder.name == "latest"
    assert any("redis:latest is also built by redis/latest" in p.message for p in tree.problems)


# -- configuration and the command -----------------------------------------------------------


CONFIG = '''
[tree]
project = "statemood"
registries = ["img.linge.io"]
require_provenance = true

[tree.mapping]
"statemood/redis:5.0.7" = { folder = "redis/5.0.7", tags = ["5", "latest"] }

[[tree.rule]]
path = "elasticstack/{app}/{version}"
image = "statemood/{app}:{version}"
'''


def test_config_rules_mapping_tables_and_registries(tmp_path: Path) -> None:
    write_tree(tmp_path, {**STATEMOOD, "redis/5.0.7": "FROM alpine:3.11\n"})
    (tmp_path / "careen.toml").write_text(CONFIG)
    config = load_config(tmp_path / "careen.toml", cwd=tmp_path, environ={})
    assert config.tree.require_provenance is True
    tree = discover_configured(config, root=tmp_path)
    assert tree.unmapped == ()
    assert tree.images[ref("statemood/redis:5.0.7")].tags == ("5.0.7", "5", "latest")
    assert ref("statemood/elasticsearch:6.6.1") in tree.images
    assert tree.registries == ("img.linge.io",)
    assert "rule" in config.show()


@pytest.mark.parametrize(
    ("text", "key"),
    [('[[tree.rule]]\npath = "x/{v}"\n', "tree.rule"),
     ('[tree.mapping]\n"a/b:1" = { tags = ["2"] }\n', "tree.mapping")],
)
def test_bad_tree_tables_are_config_errors(tmp_path: Path, text: str, key: str) -> None:
    (tmp_path / "careen.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "careen.toml", cwd=tmp_path, environ={})
    assert caught.value.key is not None and caught.value.key.startswith(key)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = _run(list(args), "careen")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_careen_tree_json_lists_unmapped_and_warnings_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    root = write_tree(tmp_path / "t", STATEMOOD)
    code, out, err = run_cli(capsys, "tree", "--root", str(root), "--project", "statemood",
                             "-f", "json")
    assert code == 1
    document = json.loads(out)
    assert [entry["path"] for entry in document["unmapped"]] == [
        "elasticstack/elasticsearch/6.6.1"]
    assert [entry["subject"] for entry in document["warnings"]] == ["cerebro/0.8.3/Dockerfile"]
    assert document["warnings"][0]["kind"] == "missing_parent"
    assert document["summary"] == {"dockerfiles": 9, "images": 8, "tags": 8, "unmapped": 1,
                                   "warnings": 1}
    alpine = next(i for i in document["images"] if i["image"] == "statemood/alpine:3.7")
    assert alpine["external_parents"] == ["docker.io/alpine:3.7"]
    assert "needs attention: elasticstack/elasticsearch/6.6.1:" in err
    assert "9 Dockerfiles, 8 images (8 tags), 1 unmapped, 1 warnings" in err


def test_careen_tree_layout_option_and_a_clean_tree_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    root = write_tree(tmp_path / "t", {"acme/app/1.0": "FROM alpine:3.19\n",
                                       "ops/tool/2": "FROM acme/app:1.0\n"})
    code, _, err = run_cli(capsys, "tree", "--root", str(root))
    assert code == 1 and "'acme' is not the project" in err
    code, out, err = run_cli(capsys, "tree", "--root", str(root), "--layout",
                             "project/app/version", "-f", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["build_order"] == [["acme/app:1.0"], ["ops/tool:2"]]
    assert document["unmapped"] == [] and document["warnings"] == []


def test_careen_plan_carries_the_tree_attention_and_takes_layout_and_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("CAREEN_") or name.lower().startswith("registry_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", "registry.abc.com")
    root = write_tree(tmp_path / "t", {"acme/base/1.0": "FROM alpine:3.19\n",
                                       "acme/app/2.0": "FROM acme/base:1.0\n"})
    listed = tmp_path / "vulnerable.list"
    listed.write_text("5=1,   acme/base:1.0\n")
    state = str(tmp_path / "state.sqlite")
    code, out, err = run_cli(capsys, "plan", "--from", str(listed), "--root", str(root),
                             "--state", state, "-f", "json")
    assert code == 1
    document = json.loads(out)
    assert document["steps"] == []
    # The two Dockerfiles, the root hint, and the listed image without a folder.
    assert {item["subject"] for item in document["attention"]} == {
        "acme/app/2.0", "acme/base/1.0", "acme", "acme/base:1.0"}
    hint = next(item for item in document["attention"] if item["subject"] == "acme")
    assert hint["next_step"].startswith("if acme is the Harbor project, give --project acme")
    assert "needs attention: acme/app/2.0:" in err
    # The project named: acme/APP/VERSION is read as project/app/version, nothing left over.
    code, out, err = run_cli(capsys, "plan", "--from", str(listed), "--root", str(root),
                             "--state", state, "--project", "acme", "-f", "json")
    assert code == 0, err
    assert [s["image"] for s in json.loads(out)["steps"]] == ["acme/base:1.0", "acme/app:2.0"]
    code, out, err = run_cli(capsys, "plan", "--from", str(listed), "--root", str(root),
                             "--state", state, "--layout", "project/app/version", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["steps"][1]["tags"] == ["2.0"]


def test_a_nested_folder_seen_through_a_latest_link_is_reported_once(tmp_path: Path) -> None:
    write_tree(tmp_path, {"tools/1.0": "FROM alpine:3.19\n",
                          "tools/1.0/debug": "FROM library/tools:1.0\n"})
    (tmp_path / "tools/latest").symlink_to("1.0", target_is_directory=True)
    tree = discover_tree(tmp_path)
    assert unmapped(tree) == ["tools/1.0/debug"]
    assert tree.images[ref("library/tools:1.0")].tags == ("1.0", "latest")
