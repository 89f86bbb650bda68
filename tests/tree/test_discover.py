"""From a folder of Dockerfiles to the images it builds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from careen.errors import ConfigError, InputFileError
from careen.reference import ImageReference
from careen.tree.discover import DockerfileTree, Layout, discover_tree, image_key

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "tree"


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def write(root: Path, folder: str, text: str = "FROM scratch\n", name: str = "Dockerfile") -> Path:
    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def shorts(tree: DockerfileTree) -> list[str]:
    return [image.short for image in tree.images]


def problem_paths(tree: DockerfileTree) -> list[str]:
    return [problem.path.as_posix() for problem in tree.problems]


def test_app_version_layout_uses_the_configured_project(tmp_path: Path) -> None:
    write(tmp_path, "mysql/5.7.18")
    write(tmp_path, "mysql/5.6.35")
    (tmp_path / "mysql/5.7.18/run.sh").write_text("#!/bin/sh\n", encoding="utf-8")
    tree = discover_tree(tmp_path, project="acme")
    assert shorts(tree) == ["acme/mysql:5.6.35", "acme/mysql:5.7.18"]
    image = tree.images[ref("acme/mysql:5.7.18")]
    assert image.folder == tmp_path.resolve() / "mysql/5.7.18"
    assert image.dockerfile == image.folder / "Dockerfile"
    assert image.source == "app/version"
    assert tree.problems == ()


def test_project_defaults_to_library(tmp_path: Path) -> None:
    write(tmp_path, "mysql/5.7.18")
    assert shorts(discover_tree(tmp_path, project=None)) == ["library/mysql:5.7.18"]


def test_project_app_version_layout_and_nested_repositories(tmp_path: Path) -> None:
    write(tmp_path, "library/grafana/4.1.2")
    write(tmp_path, "proj/team/app/1.0")
    write(tmp_path, "proj/team/sub/app/v2")
    tree = discover_tree(tmp_path, layout="project/app/version")
    assert shorts(tree) == [
        "library/grafana:4.1.2", "proj/team/app:1.0", "proj/team/sub/app:v2"
    ]
    assert {image.source for image in tree.images.values()} == {"project/app/version"}


def test_latest_folder_is_the_latest_tag(tmp_path: Path) -> None:
    write(tmp_path, "apache-php/latest")
    write(tmp_path, "library/alpine/latest")
    tree = discover_tree(tmp_path)
    assert shorts(tree) == ["library/alpine:latest", "library/apache-php:latest"]
    assert tree.folder_for(ref("library/apache-php")) is not None


def test_both_layouts_for_one_image_project_app_version_wins(tmp_path: Path) -> None:
    write(tmp_path, "jre/8u191", "FROM scratch\n")
    write(tmp_path, "library/jre/8u191", "FROM scratch\n")
    tree = discover_tree(tmp_path)
    image = tree.images[ref("library/jre:8u191")]
    assert image.source == "project/app/version"
    assert image.folder == tmp_path.resolve() / "library/jre/8u191"
    assert problem_paths(tree) == ["jre/8u191"]
    assert "library/jre/8u191" in tree.problems[0].message
    assert "library/jre:8u191" in tree.problems[0].message


@pytest.mark.parametrize(
    "folder", ["Mysql/5.7", "my sql/5.7", "mysql/-rc1", "mysql/rc:1", "My.Proj/app/1.0",
               "proj/App/1.0"],
)
def test_invalid_folder_names_are_reported_never_mapped(tmp_path: Path, folder: str) -> None:
    three_deep = folder.count("/") == 2
    write(tmp_path, folder)
    write(tmp_path, "lib/ok/1.0" if three_deep else "ok/1.0")
    tree = discover_tree(tmp_path, layout="project/app/version" if three_deep else "auto")
    assert shorts(tree) == ["lib/ok:1.0" if three_deep else "library/ok:1.0"]
    assert problem_paths(tree) == [folder]
    assert tree.problems[0].unmapped
    assert "rename the folder" in tree.problems[0].message


def test_a_project_folder_named_like_a_host_is_a_harbor_project(tmp_path: Path) -> None:
    """Harbor accepts project names with dots (``team.a``); the folder is that project."""
    write(tmp_path, "team.a/app/1")
    tree = discover_tree(tmp_path, layout="project/app/version")
    assert shorts(tree) == ["team.a/app:1"]
    [image] = tree.images
    assert image.registry is None and image.repository == "team.a/app"


def test_upper_case_tag_folder_is_a_valid_tag(tmp_path: Path) -> None:
    write(tmp_path, "jre/8u191-B12")
    assert shorts(discover_tree(tmp_path)) == ["library/jre:8u191-B12"]


def test_shallow_dockerfiles_and_root_dockerfile_are_reported(tmp_path: Path) -> None:
    write(tmp_path, ".")
    write(tmp_path, "tools")
    write(tmp_path, "app/1.0")
    tree = discover_tree(tmp_path)
    assert shorts(tree) == ["library/app:1.0"]
    assert problem_paths(tree) == [".", "tools"]
    assert "mapping" in tree.problems[1].message


def test_walk_does_not_enter_image_folders_or_ignored_folders(tmp_path: Path) -> None:
    write(tmp_path, "app/1.0")
    write(tmp_path, ".git/objects/1")
    write(tmp_path, "mysql/.5")  # no image name starts with '.': dot folders are skipped
    write(tmp_path, "node_modules/x/1")
    write(tmp_path, "skipme/x/1")
    tree = discover_tree(tmp_path, ignore={"skipme", "node_modules"})
    assert shorts(tree) == ["library/app:1.0"]
    assert tree.problems == ()


def test_containerfile_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, "app/1.0", name="Containerfile")
    tree = discover_tree(tmp_path)
    assert tree.images[ref("library/app:1.0")].dockerfile.name == "Containerfile"


def test_layout_setting_overrides_auto_detection(tmp_path: Path) -> None:
    write(tmp_path, "team/app/1.0")
    write(tmp_path, "app/2.0")
    as_app_version = discover_tree(tmp_path, layout="app/version")
    assert shorts(as_app_version) == ["library/app:2.0", "library/team/app:1.0"]
    as_project = discover_tree(tmp_path, layout=Layout.PROJECT_APP_VERSION)
    assert shorts(as_project) == ["team/app:1.0"]
    assert problem_paths(as_project) == ["app/2.0"]
    assert "too shallow" in as_project.problems[0].message
    # auto never invents the project 'team' from a folder name: it reports the folder.
    auto = discover_tree(tmp_path)
    assert shorts(auto) == ["library/app:2.0"]
    assert [p.path.as_posix() for p in auto.unmapped] == ["team/app/1.0"]


def test_mapping_overrides_the_layout(tmp_path: Path) -> None:
    write(tmp_path, "mysql/5.7.18")
    write(tmp_path, "legacy/mysql-57")
    write(tmp_path, "weird/Folder Name")
    tree = discover_tree(tmp_path, mapping={
        "library/mysql:5.7.18": "legacy/mysql-57",
        "acme/odd": "weird/Folder Name",
        "tools:1": "mysql/5.7.18",
    })
    assert shorts(tree) == ["acme/odd:latest", "library/mysql:5.7.18", "library/tools:1"]
    mysql = tree.images[ref("library/mysql:5.7.18")]
    assert mysql.folder == tmp_path.resolve() / "legacy/mysql-57"
    assert mysql.source == "mapping"
    # A mapped folder builds only what is mapped to it: mysql/5.7.18 now builds tools:1 only.
    assert tree.images_in(Path("mysql/5.7.18")) == (ref("library/tools:1"),)
    assert tree.problems == ()


def test_mapping_beats_a_layout_folder_of_the_same_image(tmp_path: Path) -> None:
    write(tmp_path, "mysql/5.7.18")
    write(tmp_path, "other/place")
    tree = discover_tree(tmp_path, mapping={"library/mysql:5.7.18": "other/place"})
    assert tree.images[ref("library/mysql:5.7.18")].source == "mapping"
    assert problem_paths(tree) == ["mysql/5.7.18"]
    assert "mapping" in tree.problems[0].message


def test_mapping_to_the_root_folder(tmp_path: Path) -> None:
    write(tmp_path, ".")
    tree = discover_tree(tmp_path, mapping={"acme/tool:1": "."})
    assert shorts(tree) == ["acme/tool:1"]
    assert tree.problems == ()


def test_mapping_problems_in_the_tree_are_reported(tmp_path: Path) -> None:
    (tmp_path / "empty/1.0").mkdir(parents=True)
    tree = discover_tree(tmp_path, mapping={
        "library/gone:1": "gone/1", "library/empty:1": "empty/1.0",
    })
    assert shorts(tree) == []
    assert sorted(problem_paths(tree)) == ["empty/1.0", "gone/1"]


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        ({"Library/X:1": "x/1"}, "not an image name"),
        ({"library/x@sha256:" + "ab" * 32: "x/1"}, "digest"),
        ({"library/x:1": "../outside"}, "not inside the tree"),
        ({"library/x:1": "/etc"}, "not inside the tree"),
    ],
)
def test_bad_mapping_is_a_config_error(
    tmp_path: Path, mapping: dict[str, str], match: str
) -> None:
    with pytest.raises(ConfigError, match=match) as caught:
        discover_tree(tmp_path, mapping=mapping)
    assert caught.value.key == "tree.mapping"


def test_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "mysql/5.7.18")
    (tmp_path / "mysql/latest").symlink_to("5.7.18", target_is_directory=True)
    tree = discover_tree(tmp_path)
    # One image with two tags: the link is 5.7.18's extra tag, built once.
    assert shorts(tree) == ["library/mysql:5.7.18"]
    assert tree.images[ref("library/mysql:5.7.18")].tags == ("5.7.18", "latest")
    assert tree.folder_for(ref("library/mysql:latest")) is tree.images[ref("library/mysql:5.7.18")]


def test_symlinks_escaping_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    outside = tmp_path / "outside"
    write(outside, "app/1.0")
    write(root, "ok/1.0")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    write(root, "app/2.0", name="elsewhere")
    (root / "app/2.0/Dockerfile").symlink_to(outside / "app/1.0/Dockerfile")
    tree = discover_tree(root, mapping={"library/x:1": "escape/app/1.0"})
    assert shorts(tree) == ["library/ok:1.0"]
    assert sorted(problem_paths(tree)) == ["app/2.0/Dockerfile", "escape", "escape/app/1.0"]
    assert all(
        "outside" in problem.message for problem in tree.problems
    ), tree.problems


def test_symlink_loops_are_not_followed(tmp_path: Path) -> None:
    write(tmp_path, "app/1.0")
    (tmp_path / "app/loop").symlink_to("..", target_is_directory=True)
    tree = discover_tree(tmp_path)
    assert shorts(tree) == ["library/app:1.0"]
    assert problem_paths(tree) == ["app/loop"]


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not a folder"):
        discover_tree(tmp_path / "missing")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"layout": "flat"}, "tree.layout"),
        ({"project": "Library"}, "tree.project"),
        ({"project": "a/b"}, "tree.project"),
        ({"registry": "https://registry.abc.com"}, "harbor.registry"),
    ],
)
def test_bad_settings_are_config_errors(
    tmp_path: Path, kwargs: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        discover_tree(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert caught.value.key == key


def test_broken_and_unresolved_dockerfiles_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "empty/1.0", "# nothing here\n")
    write(tmp_path, "unset/1.0", "ARG REGISTRY\nFROM ${REGISTRY}/library/base:1.0\n")
    tree = discover_tree(tmp_path)
    assert shorts(tree) == ["library/empty:1.0", "library/unset:1.0"]
    assert tree.images[ref("library/empty:1.0")].parents == ()
    assert tree.images[ref("library/unset:1.0")].unresolved == ("${REGISTRY}/library/base:1.0",)
    messages = [str(problem) for problem in tree.problems]
    assert messages[0].startswith("empty/1.0/Dockerfile: no FROM")
    assert messages[1].startswith("unset/1.0/Dockerfile: line 2: FROM ${REGISTRY}")


def test_build_args_resolve_from_lines(tmp_path: Path) -> None:
    write(tmp_path, "base/1.0")
    write(tmp_path, "jre/8u191", "ARG REGISTRY\nFROM ${REGISTRY}/library/base:1.0\n")
    tree = discover_tree(
        tmp_path, registry="127.0.0.1:5555", build_args={"REGISTRY": "127.0.0.1:5555"}
    )
    assert tree.problems == ()
    assert tree.tree_parents(ref("library/jre:8u191")) == (ref("library/base:1.0"),)


def test_folder_for_matches_whatever_the_registry_host(tmp_path: Path) -> None:
    write(tmp_path, "jre/8u191")
    tree = discover_tree(tmp_path, registry="registry.abc.com")
    image = tree.images[ref("library/jre:8u191")]
    for text in ("registry.abc.com/library/jre:8u191", "library/jre:8u191",
                 "other.host:5000/library/jre:8u191", "jre:8u191", "docker.io/library/jre:8u191"):
        assert tree.folder_for(ref(text)) is image, text
    assert tree.folder_for(ref("library/jre:8u192")) is None  # the seed's missing directory
    assert tree.folder_for(ref("library/jre@sha256:" + "ab" * 32)) is None


@pytest.mark.parametrize(
    ("parent", "registry", "expected"),
    [
        ("registry.abc.com/library/jre:8u191", "registry.abc.com", "library/jre:8u191"),
        ("REGISTRY.ABC.COM/library/jre:8u191", "registry.abc.com", "library/jre:8u191"),
        ("library/jre:8u191", "registry.abc.com", "library/jre:8u191"),
        ("library/jre:8u191", None, "library/jre:8u191"),
        ("jre:8u191", None, "library/jre:8u191"),
        ("acme/jre:8u191", None, "acme/jre:8u191"),
        ("docker.io/acme/jre:8u191", None, None),
        ("index.docker.io/acme/jre:8u191", "registry.abc.com", None),
        ("docker.io/library/jre:8u191", "registry.abc.com", None),
        ("acme/jre:8u191@sha256:" + "ab" * 32, None, "acme/jre:8u191"),
        ("other.host/library/jre:8u191", "registry.abc.com", None),
        ("registry.abc.com/library/jre:8u191", None, None),
        ("registry.abc.com:8443/library/jre:8u191", "registry.abc.com", None),
        ("quay.io/acme/jre:8u191", None, None),
        ("library/jre:8u192", "registry.abc.com", None),
        ("acme/jre@sha256:" + "ab" * 32, None, None),
    ],
)
def test_resolve_parent_by_registry_host(
    tmp_path: Path, parent: str, registry: str | None, expected: str | None
) -> None:
    write(tmp_path, "library/jre/8u191")
    write(tmp_path, "acme/jre/8u191")
    tree = discover_tree(tmp_path, registry=registry, layout="project/app/version")
    resolved = tree.resolve_parent(ref(parent))
    assert resolved == (None if expected is None else ref(expected))


def test_image_key_drops_host_and_digest() -> None:
    assert image_key(ref("registry.abc.com/library/jre:8u191")) == ref("library/jre:8u191")
    assert image_key(ref("docker.io/alpine")) == ref("library/alpine:latest")
    assert image_key(ref("acme/x@sha256:" + "ab" * 32)) is None


def test_sample_tree() -> None:
    tree = discover_tree(SAMPLES, registry="registry.example.com")
    assert shorts(tree) == [
        "library/app:2.0", "library/base:1.0", "library/jre:8u191", "library/mysql:5.7.18",
        "library/nginx:1.25", "library/tomcat:8.5", "library/tools:latest",
    ]
    assert tree.problems == ()
    base = ref("library/base:1.0")
    jre = ref("library/jre:8u191")
    assert tree.tree_parents(jre) == (base,)
    assert tree.tree_parents(ref("library/tomcat:8.5")) == (jre,)
    assert tree.tree_parents(ref("library/app:2.0")) == (jre, base)
    assert tree.tree_parents(base) == ()
    assert (tree.images[ref("library/mysql:5.7.18")].folder / "run.sh").is_file()
    # jre's parent comes from an ARG default; a build arg naming another host makes the
    # parent external (not the tree's base any more).
    assert discover_tree(SAMPLES).tree_parents(jre) == (base,)
    elsewhere = discover_tree(SAMPLES, build_args={"BASE": "other.example.com/library/base:1.0"})
    assert elsewhere.tree_parents(jre) == ()


def test_unreadable_folder_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "app/1.0")
    (tmp_path / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path: Path) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr("careen.tree.discover.os.scandir", scandir)
    tree = discover_tree(tmp_path)
    assert shorts(tree) == ["library/app:1.0"]
    assert [str(problem) for problem in tree.problems] == ["locked: cannot list: Permission denied"]
