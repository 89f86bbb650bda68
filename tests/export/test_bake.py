from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from careen.errors import UsageError
from careen.export.bake import PLAN_LABEL, bake_file, familiar_name, target_name
from careen.plan import Candidate, Plan, make_plan
from careen.reference import ImageReference, is_valid_reference
from careen.tree.discover import MappingEntry, discover_tree
from tests.export.plans import ref, sample_plan, write_tree

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "schemas" / "bake.schema.json")
                    .read_text(encoding="utf-8"))


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    write_tree(tmp_path)
    return sample_plan(tmp_path)


def baked(plan: Plan, **options: Any) -> dict[str, Any]:
    document = bake_file(plan, registry="registry.abc.com", **{
        "build_args": {"HTTP_PROXY": "http://proxy:3128"}, **options})
    # What buildx reads is the file: write it, load it back.
    return dict(json.loads(json.dumps(document)))


def test_validates_against_the_bake_schema(plan: Plan) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(baked(plan), SCHEMA)


def test_the_schema_rejects_a_wrong_attribute(plan: Plan) -> None:
    document = baked(plan)
    document["target"]["library-base-1-0"]["no-cache"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


def test_targets_build_the_plan_images(plan: Plan) -> None:
    document = baked(plan, labels={"org.opencontainers.image.source": "git"})
    jre = document["target"]["library-jre-8u191"]
    assert jre["context"] == "jre/8u191"
    assert jre["dockerfile"] == "Dockerfile"
    assert jre["tags"] == ["registry.abc.com/library/jre:8u191"]
    assert jre["args"] == {"HTTP_PROXY": "http://proxy:3128"}
    assert jre["labels"] == {"org.opencontainers.image.source": "git",
                             PLAN_LABEL: "plan-20171208-020001-beef",
                             "careen.tree.path": "jre/8u191"}
    assert jre["no-cache"] is True and jre["pull"] is True
    assert set(document["target"]) == {"library-base-1-0", "library-httpd-2-4",
                                       "library-nginx-latest", "library-jre-8u191",
                                       "library-tomcat-8-5"}
    assert "contexts" not in document["target"]["library-httpd-2-4"]


def test_no_cache_and_pull_follow_the_options(plan: Plan) -> None:
    target = baked(plan, no_cache=False, pull=False)["target"]["library-base-1-0"]
    assert target["no-cache"] is False and target["pull"] is False


def test_children_are_wired_to_parents_by_their_from_names(plan: Plan) -> None:
    targets = baked(plan)["target"]
    assert targets["library-jre-8u191"]["contexts"] == {
        "registry.abc.com/library/base:1.0": "target:library-base-1-0"}
    # FROM library/${JRE} -> library/jre:8u191, familiar "jre:8u191"; COPY --from=base:1.0.
    assert targets["library-tomcat-8-5"]["contexts"] == {
        "base:1.0": "target:library-base-1-0", "jre:8u191": "target:library-jre-8u191"}


def test_unreadable_dockerfile_gives_both_names(tmp_path: Path) -> None:
    plan = sample_plan(tmp_path)  # no tree written
    contexts = baked(plan)["target"]["library-jre-8u191"]["contexts"]
    assert contexts == {"base:1.0": "target:library-base-1-0",
                        "registry.abc.com/library/base:1.0": "target:library-base-1-0"}


def test_groups_per_level_and_default_encode_the_plan_order(plan: Plan) -> None:
    document = baked(plan)
    groups = document["group"]
    assert groups["level-0"]["targets"] == ["library-base-1-0", "library-httpd-2-4",
                                            "library-nginx-latest"]
    assert groups["level-1"]["targets"] == ["library-jre-8u191"]
    assert groups["level-2"]["targets"] == ["library-tomcat-8-5"]
    assert groups["default"]["targets"] == [
        name for level in ("level-0", "level-1", "level-2") for name in groups[level]["targets"]]
    # The wiring alone gives the same order: a target's depth in the context graph is its level.
    targets = document["target"]

    def depth(name: str) -> int:
        parents = [v.removeprefix("target:") for v in targets[name].get("contexts", {}).values()]
        return 1 + max((depth(p) for p in parents), default=-1)

    for level in range(3):
        assert all(depth(name) == level for name in groups[f"level-{level}"]["targets"])


def test_clashing_target_names_get_a_digest(tmp_path: Path) -> None:
    plan = sample_plan(tmp_path)
    a, b = plan.steps[1], plan.steps[2]
    clash = Plan(steps=(
        type(a)(ref("library/a-b:1"), 0, a.reason, "", (), "x/1", "x/1/Dockerfile"),
        type(b)(ref("library/a_b:1"), 0, b.reason, "", (), "y/1", "y/1/Dockerfile"),
    ), skipped=(), tree_root=str(tmp_path), created_at=plan.created_at)
    names = set(baked(clash)["target"])
    assert len(names) == 2
    assert all(name.startswith("library-a-b-1-") for name in names)


def test_a_bad_registry_is_a_usage_error(plan: Plan) -> None:
    with pytest.raises(UsageError, match="registry"):
        bake_file(plan, registry="https://registry.abc.com")


@pytest.mark.parametrize(("written", "familiar"), [
    ("alpine", "alpine"), ("docker.io/library/alpine:latest", "alpine"),
    ("library/alpine:3.7", "alpine:3.7"), ("acme/jre:latest", "acme/jre"),
    ("registry.abc.com/library/jre:8", "registry.abc.com/library/jre:8"),
    ("index.docker.io/acme/app:2", "acme/app:2"),
])
def test_familiar_names_as_buildkit_keys_them(written: str, familiar: str) -> None:
    assert familiar_name(ImageReference.parse(written)) == familiar


TAG_FIRST = string.ascii_letters + string.digits + "_"
component = st.text("abcz09", min_size=1, max_size=6)
names = st.builds(
    lambda parts, separators, tag: "/".join(
        sep.join(part) for part, sep in zip(parts, separators, strict=False)) + ":" + tag,
    st.lists(st.lists(component, min_size=1, max_size=3), min_size=1, max_size=3),
    st.lists(st.sampled_from([".", "_", "__", "-", "--"]), min_size=3, max_size=3),
    # A tag, [A-Za-z0-9_][A-Za-z0-9_.-]{0,10}, from alphabets (st.from_regex spent most of
    # the test's time generating).
    st.tuples(st.sampled_from(TAG_FIRST), st.text(TAG_FIRST + ".-", max_size=10)).map("".join),
)


@settings(max_examples=200, deadline=None)
@given(names)
def test_target_names_follow_buildx_rule(text: str) -> None:
    assume(is_valid_reference(text))
    name = target_name(ImageReference.parse(text))
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_-]*", name)


def test_a_multi_tag_image_is_one_target_with_every_tag(tmp_path: Path) -> None:
    """redis/7.2 mapped as ``{ folder = "redis/7.2", tags = ["7", "latest"] }``: one build,
    three tags, one bake target (not three builds of one folder)."""

    (tmp_path / "redis/7.2").mkdir(parents=True)
    (tmp_path / "redis/7.2/Dockerfile").write_text("FROM alpine:3.19\n")
    tree = discover_tree(tmp_path, mapping={
        "library/redis:7.2": MappingEntry("redis/7.2", ("7", "latest"))})
    plan = make_plan([Candidate(ref("library/redis:7"), "high 2")], tree)
    document = baked(plan)
    assert list(document["target"]) == ["library-redis-7-2"]
    assert document["target"]["library-redis-7-2"]["tags"] == [
        "registry.abc.com/library/redis:7.2", "registry.abc.com/library/redis:7",
        "registry.abc.com/library/redis:latest"]
    assert document["target"]["library-redis-7-2"]["labels"]["careen.tree.path"] == "redis/7.2"
