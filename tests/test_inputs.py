"""A build's inputs (issue 19): the folder's fingerprint in and out of git, the build args,
every FROM's digest, the labels that carry them, and the phrases that say what changed."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from careen.inputs import (
    LABEL_INPUTS,
    LABEL_INPUTS_FROM,
    UNKNOWN,
    BuildInputs,
    InputsCalculator,
    args_fingerprint,
    content_fingerprint,
    folder_fingerprint,
)
from careen.reference import ImageReference
from careen.tree.discover import discover_tree

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env={**os.environ, "GIT_AUTHOR_NAME": "t",
                                          "GIT_AUTHOR_EMAIL": "t@example.com",
                                          "GIT_COMMITTER_NAME": "t",
                                          "GIT_COMMITTER_EMAIL": "t@example.com"}).stdout.strip()


def write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_in_a_clean_git_checkout_the_folder_is_its_git_tree_hash(tmp_path: Path) -> None:
    write(tmp_path, {"base/1.0/Dockerfile": "FROM alpine:3.20\n", "app/1/Dockerfile":
                     "FROM library/base:1.0\n"})
    git("init", "-q", cwd=tmp_path)
    git("add", ".", cwd=tmp_path)
    git("commit", "-qm", "one", cwd=tmp_path)
    first = folder_fingerprint(tmp_path / "base/1.0", use_git=True)
    assert first == "git:" + git("rev-parse", "HEAD:base/1.0", cwd=tmp_path)
    # A commit touching another folder leaves it alone; one touching it changes it.
    (tmp_path / "app/1/Dockerfile").write_text("FROM library/base:1.0\nUSER app\n")
    git("commit", "-qam", "two", cwd=tmp_path)
    assert folder_fingerprint(tmp_path / "base/1.0", use_git=True) == first
    (tmp_path / "base/1.0/Dockerfile").write_text("FROM alpine:3.21\n")
    git("commit", "-qam", "three", cwd=tmp_path)
    assert folder_fingerprint(tmp_path / "base/1.0", use_git=True) != first


def test_outside_git_the_folder_is_a_hash_of_its_files(tmp_path: Path) -> None:
    files = {"Dockerfile": "FROM alpine:3.20\nCOPY entrypoint.sh /\n",
             "entrypoint.sh": "#!/bin/sh\nexec \"$@\"\n", "conf/app.ini": "[app]\n"}
    write(tmp_path / "a", files)
    write(tmp_path / "b", files)
    same = content_fingerprint(tmp_path / "a")
    assert same.startswith("sha256:") and same == content_fingerprint(tmp_path / "b")
    assert folder_fingerprint(tmp_path / "a", use_git=True) == same  # not a git checkout
    (tmp_path / "b/entrypoint.sh").chmod(0o755)
    assert content_fingerprint(tmp_path / "b") != same  # the executable bit counts
    (tmp_path / "a/conf/app.ini").rename(tmp_path / "a/conf/other.ini")
    assert content_fingerprint(tmp_path / "a") != same  # so do names
    write(tmp_path / "c", files)
    (tmp_path / "c/.git").mkdir()
    (tmp_path / "c/.git/HEAD").write_text("ref: refs/heads/main\n")
    assert content_fingerprint(tmp_path / "c") == same  # .git is no input
    (tmp_path / "c/latest").symlink_to("conf")
    assert content_fingerprint(tmp_path / "c") != same  # a link, by its target
    assert folder_fingerprint(tmp_path / "nosuch", use_git=False) == UNKNOWN


def test_build_args_are_hashed_in_any_order_and_never_shown() -> None:
    one = args_fingerprint({"HTTP_PROXY": "http://proxy:3128", "VERSION": "1.2"})
    assert one == args_fingerprint({"VERSION": "1.2", "HTTP_PROXY": "http://proxy:3128"})
    assert one != args_fingerprint({"VERSION": "1.3", "HTTP_PROXY": "http://proxy:3128"})
    assert "proxy" not in one


def test_labels_carry_the_inputs_and_read_back() -> None:
    inputs = BuildInputs("git:" + "a" * 40, args_fingerprint({}),
                         (("docker.io/library/alpine:3.20", D1), ("library/base:1.0", D2)))
    labels = inputs.labels()
    assert labels[LABEL_INPUTS] == inputs.fingerprint != UNKNOWN
    assert labels[LABEL_INPUTS_FROM] == \
        f"docker.io/library/alpine:3.20@{D1} library/base:1.0@{D2}"
    assert BuildInputs.from_labels(labels) == inputs
    assert BuildInputs.from_dict(inputs.to_dict()) == inputs
    assert BuildInputs.from_labels({"careen.tree.path": "base/1.0"}) is None
    unknown = BuildInputs(inputs.folder, inputs.args, (("docker.io/library/alpine:3.20", None),))
    assert unknown.fingerprint == UNKNOWN
    assert BuildInputs.from_labels(unknown.labels()) == unknown


def test_what_changed_is_said_input_by_input() -> None:
    before = BuildInputs("git:" + "a" * 40, args_fingerprint({}),
                         (("docker.io/library/alpine:3.20", D1),))
    assert before.changes_since(before) == []
    after = BuildInputs("git:" + "b" * 40, args_fingerprint({"X": "1"}),
                        (("docker.io/library/alpine:3.20", D2),))
    assert after.changes_since(before, folder="folder base/1.0") == [
        "folder base/1.0 changed (git:aaaaaaaaaaaa -> git:bbbbbbbbbbbb)",
        "build args changed",
        "base docker.io/library/alpine:3.20 republished (sha256:111111111111 -> "
        "sha256:222222222222)",
    ]
    moved = BuildInputs(before.folder, before.args, (("docker.io/library/alpine:3.21", D2),))
    assert moved.changes_since(before) == [
        "FROM lines changed (now docker.io/library/alpine:3.21, no more "
        "docker.io/library/alpine:3.20)"]


class Answers:
    def __init__(self, digests: Mapping[str, str | None]) -> None:
        self.digests = digests
        self.asked: list[str] = []

    async def resolve_many(
        self, references: Iterable[ImageReference],
    ) -> Mapping[ImageReference, str | None]:
        self.asked.extend(str(r) for r in references)
        return {r: self.digests.get(str(r)) for r in references}


@pytest.fixture
def tree_root(tmp_path: Path) -> Path:
    # Shapes of real trees: a wrapper of its upstream (FROM its own name, unqualified),
    # a base on an external image, a child of an in-tree base, a FROM through a build arg.
    write(tmp_path, {
        "alpine/3.20/Dockerfile": "FROM alpine:3.20\nRUN apk add --no-cache ca-certificates\n",
        "base/1.0/Dockerfile": "FROM quay.io/centos/centos:stream9\n",
        "app/1/Dockerfile": "FROM library/base:1.0 AS build\nFROM library/alpine:3.20\n"
                            "COPY --from=build /etc/os-release /\n",
        "php/8.2/Dockerfile": "ARG BASE\nFROM ${BASE}\n",
    })
    return tmp_path


def test_every_from_resolves_to_a_digest_or_the_inputs_are_unknown(tree_root: Path) -> None:
    tree = discover_tree(tree_root, registry="harbor.example.com")
    base, app = ImageReference("library/base", "1.0"), ImageReference("library/app", "1")
    wrapper, php = ImageReference("library/alpine", "3.20"), ImageReference("library/php",
                                                                            "8.2")
    answers = Answers({"docker.io/library/alpine:3.20": D1, "quay.io/centos/centos:stream9": D2})
    calculator = InputsCalculator(tree, {}, use_git=False,
                                  known={base: "sha256:" + "b" * 64},
                                  registry="harbor.example.com")
    asyncio.run(calculator.prepare(tree.images, answers))
    # A tree parent Harbor lists is not asked of any registry; an external base is, once.
    assert sorted(answers.asked) == ["docker.io/library/alpine:3.20",
                                     "harbor.example.com/library/alpine:3.20",
                                     "quay.io/centos/centos:stream9"]
    assert calculator.inputs(wrapper).bases == (("docker.io/library/alpine:3.20", D1),)
    assert calculator.inputs(base).bases == (("quay.io/centos/centos:stream9", D2),)
    assert calculator.inputs(base).known
    # app's in-tree parents: base by the digest Harbor lists (or the one pushed this run);
    # alpine is not listed and not on the push registry's answers: unknown.
    app_now = calculator.inputs(app)
    assert ("library/base:1.0", "sha256:" + "b" * 64) in app_now.bases
    assert not app_now.known and app_now.fingerprint == UNKNOWN
    pushed = calculator.inputs(app, {base: D2, wrapper: D1})
    assert pushed.bases == (("library/base:1.0", D2), ("library/alpine:3.20", D1))
    assert pushed.known
    # FROM ${BASE} with no value for BASE: never known.
    assert not calculator.inputs(php).known
