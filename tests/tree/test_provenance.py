"""One build, several tags, and the guard before a rebuild overwrites a tag (issue 13, 4-5).

The labels are read where Harbor's artifact listing has them: ``extra_attrs.config.Labels``
(the image config's ``config`` section, Docker's spelling; /work/shared/harbor/NOTES.md
section 6.3, "Artifact fields": ``extra_attrs`` holds ``architecture, os, author, created,
config`` for images), so guarding costs no extra request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from careen.attention import AttentionKind
from careen.builders.buildah import BuildahBuilder
from careen.builders.docker import DockerBuilder
from careen.builders.interface import LABEL_TREE_PATH, BuildRequest
from careen.plan import Candidate, Plan, SkipReason, make_plan
from careen.reference import ImageReference
from careen.registries.harbor_v2 import artifact_from_json
from careen.tree.discover import DockerfileTree, MappingEntry, discover_tree
from careen.update import UpdateOptions, build_request

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def write_tree(root: Path, dockerfiles: dict[str, str]) -> Path:
    for folder, text in dockerfiles.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "Dockerfile").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> DockerfileTree:
    """A debian/bookworm folder holding a *derived* image (as in the tree that pushed over
    Debian's own tag), redis with three tags, and an app on redis."""
    write_tree(tmp_path, {
        "debian/bookworm": "FROM debian:bookworm\nRUN apt-get install -y ca-certificates\n",
        "redis/7.2": "FROM library/debian:bookworm\n",
        "app/1.0": "FROM library/redis:7\n",
    })
    return discover_tree(tmp_path, registry="registry.abc.com", mapping={
        "library/redis:7.2": MappingEntry("redis/7.2", ("7", "latest"))})


def labelled(image: str, folder: str | None, **fields: object) -> Candidate:
    labels = {"org.opencontainers.image.revision": "f" * 40}
    if folder is not None:
        labels[LABEL_TREE_PATH] = folder
    return Candidate(ref(image), "high 1 > 0", labels=labels, **fields)  # type: ignore[arg-type]


def test_a_multi_tag_image_is_one_step_selected_by_any_tag(tree: DockerfileTree) -> None:
    plan = make_plan([Candidate(ref("registry.abc.com/library/redis:latest"), "critical 1")],
                     tree, now=NOW)
    assert [step.image.short for step in plan.steps] == ["library/redis:7.2", "library/app:1.0"]
    redis = plan.steps[0]
    assert redis.tags == ("7.2", "7", "latest")
    assert redis.detail == "tag latest: critical 1"
    assert plan.step(ref("library/redis:7")) is redis
    # Two of its tags listed: still one step.
    twice = make_plan([Candidate(ref("library/redis:7"), "x"),
                       Candidate(ref("library/redis:7.2"), "y")], tree, now=NOW)
    assert [step.image.short for step in twice.steps] == ["library/redis:7.2", "library/app:1.0"]


def test_a_tag_built_from_another_folder_is_refused_naming_both(tree: DockerfileTree) -> None:
    plan = make_plan([labelled("library/redis:7", "redis/7.0")], tree, now=NOW)
    assert plan.steps == ()
    [skip] = plan.skipped
    assert skip.image == ref("library/redis:7.2") and skip.reason is SkipReason.PROVENANCE
    assert "redis/7.0" in skip.detail and "redis/7.2" in skip.detail
    [item] = plan.attention
    assert item.kind is AttentionKind.PROVENANCE_REFUSED and item.subject == "library/redis:7.2"
    assert "library/redis:7 was last built from the folder redis/7.0" in item.reason
    assert "redis/7.2" in item.reason


def test_another_tag_of_the_build_is_guarded_too(tree: DockerfileTree) -> None:
    """redis:7.2 was built here, but the ``latest`` this build would also push came from
    another folder: the whole build is refused (one digest goes to every tag)."""
    known = {ref("library/redis:latest"): labelled("library/redis:latest", "redis-ng/8.0")}
    plan = make_plan([labelled("library/redis:7.2", "redis/7.2")], tree, known=known, now=NOW)
    assert plan.steps == ()
    assert "library/redis:latest was last built from the folder redis-ng/8.0" in \
        plan.skipped[0].detail


def test_a_tag_careen_built_from_this_folder_is_rebuilt(tree: DockerfileTree) -> None:
    plan = make_plan([labelled("library/debian:bookworm", "debian/bookworm")], tree, now=NOW)
    assert plan.steps[0].image == ref("library/debian:bookworm")
    assert not plan.steps[0].first_rebuild
    assert plan.attention == ()


def test_a_tag_careen_never_built_is_a_first_rebuild(tree: DockerfileTree) -> None:
    """Harbor's library/debian:bookworm was pushed by someone else (no careen.tree.path):
    the plan says so instead of silently overwriting it."""
    plan = make_plan([labelled("library/debian:bookworm", None)], tree, now=NOW)
    debian = plan.steps[0]
    assert debian.first_rebuild
    assert plan.to_dict()["steps"][0]["first_rebuild"] is True
    # Children reached by the cascade, whose labels are unknown, are not first rebuilds.
    assert [s.first_rebuild for s in plan.steps[1:]] == [False, False]


def test_require_provenance_skips_a_first_rebuild(tree: DockerfileTree) -> None:
    plan = make_plan([labelled("library/debian:bookworm", None)], tree, now=NOW,
                     require_provenance=True)
    assert plan.steps == ()
    [skip] = plan.skipped
    assert skip.reason is SkipReason.PROVENANCE and "require_provenance" in skip.detail
    assert [item.kind for item in plan.attention] == [AttentionKind.PROVENANCE_REFUSED]


def test_unknown_labels_are_not_guarded(tree: DockerfileTree) -> None:
    """A vulnerable.list says nothing of labels: no refusal, no first-rebuild mark."""
    plan = make_plan([Candidate(ref("library/debian:bookworm"), "listed")], tree, now=NOW,
                     require_provenance=True)
    assert plan.steps[0].image == ref("library/debian:bookworm")
    assert not plan.steps[0].first_rebuild


def test_tree_problems_ride_in_the_plan_and_its_json(tmp_path: Path) -> None:
    write_tree(tmp_path, {"redis/7.2": "FROM alpine:3.19\n", "redis/7.2/debug": "FROM scratch\n",
                          "app/1.0": "FROM library/redis:6.2\n"})
    tree = discover_tree(tmp_path)
    plan = make_plan([labelled("library/redis:7.2", None)], tree, now=NOW).with_id("p-1")
    kinds = sorted(item.kind.value for item in plan.attention)
    assert kinds == ["missing_parent", "unmapped_dockerfile"]
    again = Plan.from_dict(plan.to_dict())
    assert again == plan
    assert again.attention == plan.attention
    assert again.steps[0].tags == ("7.2",) and again.steps[0].first_rebuild


def test_harbor_listing_labels_are_read_from_extra_attrs_config() -> None:
    raw = {
        "digest": "sha256:" + "a" * 64, "repository_name": "library/redis",
        "tags": [{"name": "7.2", "immutable": False}, {"name": "7", "immutable": False}],
        "extra_attrs": {"architecture": "amd64", "os": "linux", "created": "2026-12-01T02:00:00Z",
                        "config": {"Cmd": ["redis-server"],
                                   "Labels": {LABEL_TREE_PATH: "redis/7.2",
                                              "org.opencontainers.image.revision": "f" * 40}}},
    }
    artifact = artifact_from_json(raw, registry="registry.abc.com", warn=print)
    assert artifact is not None
    images = list(artifact.images())
    assert [image.labels for image in images] == [artifact.labels] * 2
    assert artifact.labels is not None and artifact.labels[LABEL_TREE_PATH] == "redis/7.2"
    # An image config without labels: known to have none. No image config: unknown.
    raw["extra_attrs"] = {"config": {"Cmd": ["x"]}}
    bare = artifact_from_json(raw, registry=None, warn=print)
    assert bare is not None and bare.labels == {}
    del raw["extra_attrs"]
    unknown = artifact_from_json(raw, registry=None, warn=print)
    assert unknown is not None and unknown.labels is None


# -- what the executor gives the builders ---------------------------------------------------


def test_the_build_request_carries_the_folder_label_and_every_tag(
    tree: DockerfileTree, tmp_path: Path,
) -> None:
    plan = make_plan([Candidate(ref("library/redis:7"), "x")], tree, now=NOW, cascade=False)
    options = UpdateOptions(registry="registry.abc.com", run_id="r1", log_dir=tmp_path / "logs",
                            revision="f" * 40, source="https://git.example.com/dockerfiles.git")
    request = build_request(plan.steps[0], plan, options, NOW)
    assert request.labels[LABEL_TREE_PATH] == "redis/7.2"
    assert request.labels["org.opencontainers.image.source"] == \
        "https://git.example.com/dockerfiles.git"
    assert request.labels["org.opencontainers.image.revision"] == "f" * 40
    assert request.target == "registry.abc.com/library/redis:7.2"
    assert request.extra_targets == ("registry.abc.com/library/redis:7",
                                     "registry.abc.com/library/redis:latest")


def test_docker_tags_the_build_with_every_tag(tmp_path: Path) -> None:
    request = BuildRequest(ref("registry.abc.com/library/redis:7.2"), tmp_path,
                           tmp_path / "log", extra_tags=("7", "latest", "7.2"))
    argv = DockerBuilder().build_argv(request, buildx=False)
    tags = [argv[i + 1] for i, word in enumerate(argv) if word == "-t"]
    assert tags == ["registry.abc.com/library/redis:7.2", "registry.abc.com/library/redis:7",
                    "registry.abc.com/library/redis:latest"]
    with pytest.raises(Exception, match="tag"):
        BuildRequest(ref("registry.abc.com/library/redis:7.2"), tmp_path, tmp_path / "log",
                     extra_tags=("bad tag",))


def test_buildah_pushes_the_one_image_under_every_tag(tmp_path: Path) -> None:
    """One build, then ``buildah push SRC docker://DEST`` per tag, the image's own first (its
    digest is the step's)."""
    fake = tmp_path / "buildah"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/calls"\n'
        'prev=""\nfor a in "$@"; do [ "$prev" = --digestfile ] && out="$a"; prev="$a"; done\n'
        'if [ -n "$out" ]; then printf sha256:%064d 7 > "$out"; fi\n'
    )
    fake.chmod(0o755)
    request = BuildRequest(ref("registry.abc.com/library/redis:7.2"), tmp_path,
                           tmp_path / "log", extra_tags=("7", "latest"))
    result = BuildahBuilder(buildah=str(fake)).push(request)
    assert result.ok and result.digest == "sha256:" + "0" * 63 + "7"
    pushes = [line.split()[-2:] for line in (tmp_path / "calls").read_text().splitlines()
              if " push " in f" {line} "]
    assert pushes == [
        ["registry.abc.com/library/redis:7.2", "docker://registry.abc.com/library/redis:7.2"],
        ["registry.abc.com/library/redis:7.2", "docker://registry.abc.com/library/redis:7"],
        ["registry.abc.com/library/redis:7.2", "docker://registry.abc.com/library/redis:latest"],
    ]


def test_the_run_report_says_first_rebuild(tree: DockerfileTree) -> None:
    from careen.policy import Policy
    from careen.update import StepOutcome, StepStatus
    from careen.verify import results_of

    plan = make_plan([labelled("library/debian:bookworm", None)], tree, now=NOW,
                     cascade=False)
    [step] = plan.steps
    outcome = StepOutcome(step, StepStatus.WOULD_BUILD, step.image)
    [result] = results_of(plan, [outcome], policy=Policy(), before={}, after=None)
    assert result.reason == "high 1 > 0 (first rebuild: Careen never built this tag)"


def test_only_takes_any_tag_of_a_multi_tag_step(tree: DockerfileTree) -> None:
    from careen.shard import only_images

    plan = make_plan([Candidate(ref("library/redis:7.2"), "x")], tree, now=NOW)
    assert [s.image.short for s in only_images(plan, [ref("library/redis:latest")]).steps] == [
        "library/redis:7.2"]


def test_the_plan_table_shows_every_tag_and_a_first_rebuild(tree: DockerfileTree) -> None:
    from io import StringIO

    from rich.console import Console

    from careen.cli.commands.plan_cmd import print_plan

    plan = make_plan([labelled("library/debian:bookworm", None)], tree, now=NOW).with_id("p")
    out = StringIO()
    print_plan(plan.to_dict(), Console(file=out, width=250))
    text = out.getvalue()
    assert "(first rebuild: Careen never built this tag)" in text
    assert "library/redis:7.2 (+ tags 7, latest)" in text


def test_the_plan_table_keeps_brackets_of_a_skip_detail(tree: DockerfileTree) -> None:
    from io import StringIO

    from rich.console import Console

    from careen.cli.commands.plan_cmd import print_plan

    plan = make_plan([labelled("library/debian:bookworm", None)], tree, now=NOW,
                     require_provenance=True).with_id("p")
    out = StringIO()
    print_plan(plan.to_dict(), Console(file=out, width=250))
    assert "and [tree] require_provenance is set" in out.getvalue()


def test_require_provenance_comes_from_the_tree_config(tmp_path: Path) -> None:
    """``[tree] require_provenance = true`` reaches every plan (careen plan, run) through
    the tree the configuration opens."""
    from careen.config import load_config
    from careen.tree.discover import discover_configured

    write_tree(tmp_path / "t", {"debian/bookworm": "FROM debian:bookworm\n"})
    (tmp_path / "careen.toml").write_text("[tree]\nrequire_provenance = true\n")
    config = load_config(tmp_path / "careen.toml", cwd=tmp_path, environ={})
    tree = discover_configured(config, root=tmp_path / "t")
    plan = make_plan([labelled("library/debian:bookworm", None)], tree, now=NOW)
    assert [s.reason for s in plan.skipped] == [SkipReason.PROVENANCE]
