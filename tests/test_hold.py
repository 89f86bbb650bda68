"""Nights that do only useful work (issue 19): held images, and each cause that lets one go.

Against the Harbor simulator with a builder double that "pushes" into it as a registry would:
the pushed artifact carries the build's labels in its image config (Harbor lists them as
``extra_attrs.config.Labels``, NOTES §5) and is rescanned with the findings the test gives it,
so the before/after judgement, the state's verdict history and the plan are the real code.
Base images are resolved by a double standing in for the registries (the resolver itself is
tested against local HTTP servers in tests/registries/test_resolve.py).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from careen.assemble import job_parts
from careen.attention import AttentionKind
from careen.builders.interface import BuildRequest, PushResult
from careen.config import Config, load_config
from careen.hold import HoldSettings
from careen.inputs import LABEL_INPUTS, LABEL_INPUTS_FROM
from careen.nightly import NightlyOptions, NightlyOutcome, load_plan, run_nightly
from careen.plan import SkipReason
from careen.reference import ImageReference
from careen.results import Outcome
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from careen.sim.harbor.fleet import ScanResult
from careen.sim.harbor.state import SimState
from careen.state.memory import RebuildMemory
from careen.state.store import StateStore
from tests.test_nightly import PushingBuilder, opener

ALPINE = "docker.io/library/alpine:3.20"
ALPINE_1 = "sha256:" + "a1" * 32
ALPINE_2 = "sha256:" + "a2" * 32

#: base carries a high finding no rebuild fixes (fixable 0); app and tool are built on it.
FLEET: dict[str, Any] = {
    "harbor_version": "2.14.0",
    "users": {"admin": "Harbor12345"},
    "projects": [{"name": "library", "repositories": [
        {"name": "base", "artifacts": [{"tags": ["1.0"], "scan": {"high": 2, "fixable": 0}}]},
        {"name": "app", "artifacts": [{"tags": ["1"], "scan": {}}]},
        {"name": "tool", "artifacts": [{"tags": ["2"], "scan": {}}]},
    ]}],
}
TREE = {
    "base/1.0": "FROM alpine:3.20\nRUN apk add --no-cache openssl\n",
    "app/1": "FROM library/base:1.0\nCOPY app.sh /\n",
    "tool/2": "FROM library/base:1.0\n",
}


class Bases:
    """The registries' answers for FROM images: a digest per reference, ``None`` unknown."""

    def __init__(self, digests: Mapping[str, str | None]) -> None:
        self.digests = dict(digests)
        self.asked: list[str] = []
        self.problems: dict[ImageReference, str] = {}

    async def resolve_many(
        self, references: Iterable[ImageReference],
    ) -> Mapping[ImageReference, str | None]:
        answers = {}
        for reference in references:
            self.asked.append(str(reference))
            answers[reference] = self.digests.get(str(reference))
            if answers[reference] is None:
                self.problems[reference] = "registry-1.docker.io: unreachable: ConnectError"
        return answers


class LabellingBuilder(PushingBuilder):
    """Pushes like a registry: the artifact carries the build's labels, and its rescan finds
    what ``findings`` says for its repository (clean otherwise)."""

    def __init__(self, harbor: SimulatorServer, findings: Mapping[str, ScanResult]) -> None:
        super().__init__(harbor)
        self.findings = dict(findings)
        self.labels: dict[str, dict[str, str]] = {}

    def push(self, request: BuildRequest) -> PushResult:
        result = super().push(request)
        state = self.harbor.state
        with state.lock:
            artifact = state.find_artifact(request.image.repository, request.image.tag or "")
            assert artifact is not None
            artifact.extra_attrs = {"architecture": "amd64", "os": "linux",
                                    "config": {"Labels": dict(request.labels)}}
            artifact.baseline = self.findings.get(request.image.repository, ScanResult())
            artifact.touch()
        self.labels[request.image.short] = dict(request.labels)
        return result


@pytest.fixture(scope="module")
def harbor() -> Iterator[SimulatorServer]:
    options = SimOptions(scan_delay=ScanDelays(pending=0.02, running=0.02))
    with SimulatorServer(Fleet.from_dict(FLEET), options) as server:
        yield server


@dataclass
class Nights:
    tmp_path: Path
    harbor: SimulatorServer
    bases: Bases
    build_args: dict[str, str]

    @property
    def tree(self) -> Path:
        return self.tmp_path / "tree"

    def config(self) -> Config:
        return load_config(None, cwd=self.tmp_path, environ={
            "CAREEN_HARBOR_URL": self.harbor.url, "CAREEN_HARBOR_USER": "admin",
            "CAREEN_HARBOR_PASSWORD": "Harbor12345", "CAREEN_REGISTRY_SERVER": "registry.test",
            "CAREEN_TREE_ROOT": str(self.tree),
            "CAREEN_OUTPUT_REPORTS_DIR": str(self.tmp_path / "reports"),
        }, overrides={"build.build_args": self.build_args or None})

    def night(self, builder: PushingBuilder, **changes: Any) -> NightlyOutcome:
        options = NightlyOptions(reports_dir=self.tmp_path / "reports", rescan_timeout=10,
                                 rescan_interval=0.05, **changes)
        parts = replace(job_parts(self.config(), open_builder=opener(builder)),
                        base_digests=self.bases)
        with StateStore.open(self.tmp_path / "state.sqlite") as store:
            return asyncio.run(run_nightly(parts, options, store=store))


def write_tree(root: Path) -> None:
    for folder, text in TREE.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "Dockerfile").write_text(text)
    (root / "app/1/app.sh").write_text("#!/bin/sh\necho app\n")


def builder_for(harbor: SimulatorServer) -> LabellingBuilder:
    return LabellingBuilder(harbor, {"library/base": ScanResult.of({"High": 2}, 0)})


@dataclass
class FirstNight:
    """Night 1, run once per module (and worker) by the first test that asks, in that test's
    environment; each test after it starts from what night 1 left. The nights of every test
    run in one folder, since the stored plans and runs name it: restored before each test."""

    folder: Path
    #: The folder as night 1 left it, and the simulator's state then; None until it ran.
    saved: Path
    harbor_state: SimState | None = None


@pytest.fixture(scope="module")
def first_night(tmp_path_factory: pytest.TempPathFactory) -> FirstNight:
    root = tmp_path_factory.mktemp("hold")
    return FirstNight(root / "nights", root / "after-night-1")


@pytest.fixture
def nights(first_night: FirstNight, harbor: SimulatorServer) -> Nights:
    """Night 1 already ran: base was rebuilt (with app and tool, its children) and the
    rebuild did not help (the same high findings, none fixable)."""
    made = Nights(first_night.folder, harbor, Bases({ALPINE: ALPINE_1}), {})
    if first_night.harbor_state is not None:
        shutil.rmtree(first_night.folder)
        shutil.copytree(first_night.saved, first_night.folder, symlinks=True)
        harbor.app.state = first_night.harbor_state.copy()
        harbor.stats.reset()
        return made
    harbor.reset(Fleet.from_dict(FLEET))
    write_tree(made.tree)
    builder = builder_for(harbor)
    first = made.night(builder)
    by_image = {r.image.short: r for r in first.result.images}
    assert by_image["library/base:1.0"].outcome is Outcome.NOT_HELPED
    assert sorted(builder.pushed) == ["library/app:1", "library/base:1.0", "library/tool:2"]
    shutil.copytree(first_night.folder, first_night.saved, symlinks=True)
    first_night.harbor_state = harbor.state.copy()
    return made


def test_a_rebuild_is_labelled_with_its_inputs_and_remembered(nights: Nights) -> None:
    builder = builder_for(nights.harbor)
    nights.bases.digests[ALPINE] = ALPINE_2  # so that night 2 rebuilds and we see its labels
    nights.night(builder)
    base = builder.labels["library/base:1.0"]
    assert base[LABEL_INPUTS].startswith("sha256:")
    assert base[LABEL_INPUTS_FROM] == f"{ALPINE}@{ALPINE_2}"
    # The child records the digest its parent was pushed under in this very run.
    base_digest = nights.harbor.state.find_artifact("library/base", "1.0")
    assert base_digest is not None
    assert builder.labels["library/app:1"][LABEL_INPUTS_FROM] == \
        f"library/base:1.0@{base_digest.digest}"
    with StateStore.open(nights.tmp_path / "state.sqlite") as store:
        memo = RebuildMemory.of(store).last("library/base:1.0")
    assert memo is not None and memo.outcome == "not_helped"
    assert memo.digest == base_digest.digest and memo.fingerprint == base[LABEL_INPUTS]
    assert memo.fixable == 0 and memo.counts is not None and memo.counts.high == 2
    # The run read the rescanned image's CVE list (issue 14): none of them has a fix.
    assert memo.fixable_ids == frozenset()


def test_nothing_changed_the_second_night_builds_nothing_and_holds_the_image(
    nights: Nights,
) -> None:
    builder = builder_for(nights.harbor)
    second = nights.night(builder)
    assert builder.pushed == []
    assert second.plan.steps == ()
    assert int(second.exit_code) == 1  # held: needs attention
    assert [i.subject for i in second.result.attention
            if i.kind is AttentionKind.HELD] == ["library/base:1.0"]
    held = [item for item in second.plan.attention if item.kind is AttentionKind.HELD]
    assert [item.subject for item in held] == ["library/base:1.0"]
    reason = held[0].reason
    # why it did not help, as the rebuild's verdict explained it from the CVE lists
    assert "did not help (no fix upstream yet for openssl" in reason
    with StateStore.open(nights.tmp_path / "state.sqlite") as store:
        memo = RebuildMemory.of(store).last("library/base:1.0")
        stored = load_plan(store, str(second.plan.id))
    assert memo is not None
    assert memo.recorded_at.strftime("%Y-%m-%d %H:%M UTC") in reason
    # The decision is in the stored plan: every shard of it holds the image too.
    # (the artifact night 1 pushed over stays in Harbor, untagged: skipped as such)
    assert [(s.image.short, s.reason) for s in stored.skipped
            if s.reason is not SkipReason.UNTAGGED] == [("library/base:1.0", SkipReason.HELD)]
    assert any(i.kind is AttentionKind.HELD for i in stored.attention)
    by_image = {r.image.short: r for r in second.result.images}
    assert by_image["library/base:1.0"].outcome is Outcome.SKIPPED
    # Its children were not rebuilt on its account.
    assert "library/app:1" not in by_image and "library/tool:2" not in by_image


def test_a_commit_touching_the_folder_lets_it_go(nights: Nights) -> None:
    dockerfile = nights.tree / "base/1.0/Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN apk upgrade --no-cache\n")
    builder = builder_for(nights.harbor)
    third = nights.night(builder)
    assert sorted(builder.pushed) == ["library/app:1", "library/base:1.0", "library/tool:2"]
    step = third.plan.steps[0]
    assert step.image.short == "library/base:1.0"
    assert "let go: folder base/1.0 changed" in step.detail
    assert not [i for i in third.plan.attention if i.kind is AttentionKind.HELD]


def test_another_build_arg_lets_it_go(nights: Nights) -> None:
    nights.build_args["HTTP_PROXY"] = "http://proxy.example:3128"
    builder = builder_for(nights.harbor)
    third = nights.night(builder)
    assert "library/base:1.0" in builder.pushed
    assert "let go: build args changed" in third.plan.steps[0].detail
    # The value of a build argument never appears in a label.
    assert "proxy.example" not in json.dumps(builder.labels)


def test_an_upstream_base_republished_lets_it_and_its_children_go(nights: Nights) -> None:
    nights.bases.digests[ALPINE] = ALPINE_2
    builder = builder_for(nights.harbor)
    third = nights.night(builder)
    assert builder.pushed[0] == "library/base:1.0"
    assert sorted(builder.pushed[1:]) == ["library/app:1", "library/tool:2"]
    detail = third.plan.steps[0].detail
    assert f"base {ALPINE} republished (sha256:a1a1a1a1a1a1 -> sha256:a2a2a2a2a2a2)" in detail


def test_a_finding_that_became_fixable_lets_it_go(nights: Nights) -> None:
    # The scanner's database learnt of a fix for one of base's findings.
    nights.harbor.state.set_scan("library/base", "1.0", ScanResult.of({"High": 2}, 1))
    builder = builder_for(nights.harbor)
    third = nights.night(builder)
    assert "library/base:1.0" in builder.pushed
    assert "1 more finding(s) fixable (fixable 0 -> 1)" in third.plan.steps[0].detail


def test_an_unresolvable_base_never_holds(nights: Nights) -> None:
    nights.bases.digests[ALPINE] = None
    builder = builder_for(nights.harbor)
    third = nights.night(builder)
    assert "library/base:1.0" in builder.pushed
    detail = third.plan.steps[0].detail
    assert f"base {ALPINE}" in detail and "cannot be resolved" in detail
    assert "unreachable" in detail


def test_a_tag_pushed_over_by_someone_else_lets_it_go(nights: Nights) -> None:
    nights.harbor.state.push("library/base", "1.0", "sha256:" + "cd" * 32)
    nights.harbor.state.set_scan("library/base", "1.0", ScanResult.of({"High": 2}, 0))
    builder = builder_for(nights.harbor)
    third = nights.night(builder)
    assert "library/base:1.0" in builder.pushed
    assert "the tag now names sha256:cdcdcdcdcdcd" in third.plan.steps[0].detail


@pytest.mark.parametrize("override", [
    {"hold": HoldSettings(enabled=False)},
    {"hold": HoldSettings(rebuild=("library/base:1.0",))},
])
def test_no_hold_and_rebuild_override_the_hold(nights: Nights,
                                               override: dict[str, Any]) -> None:
    builder = builder_for(nights.harbor)
    second = nights.night(builder, **override)
    assert sorted(builder.pushed) == ["library/app:1", "library/base:1.0", "library/tool:2"]
    assert not [i for i in second.plan.attention if i.kind is AttentionKind.HELD]


def test_rebuild_of_an_image_the_tree_does_not_build_is_a_clear_error(nights: Nights) -> None:
    from careen.errors import UsageError

    with pytest.raises(UsageError, match="--rebuild library/nosuch:1: no folder"):
        nights.night(builder_for(nights.harbor),
                     hold=HoldSettings(rebuild=("library/nosuch:1",)))


def test_a_child_selected_on_its_own_is_still_rebuilt_when_its_base_is_held(
    nights: Nights,
) -> None:
    # app breaks the policy on its own now (a finding in its own layer, with a fix).
    app = nights.harbor.state.find_artifact("library/app", "1")
    assert app is not None
    nights.harbor.state.set_scan("library/app", "1", ScanResult.of({"Critical": 1}, 1))
    builder = builder_for(nights.harbor)
    second = nights.night(builder)
    assert builder.pushed == ["library/app:1"]
    assert [i.subject for i in second.plan.attention
            if i.kind is AttentionKind.HELD] == ["library/base:1.0"]


def test_a_held_child_is_rebuilt_with_its_base_when_the_base_is_let_go(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    """A base's unfixable finding is in its children too: both are held on night 2; when the
    upstream is republished the base is let go and the child rebuilt with it, not held."""
    fleet = json.loads(json.dumps(FLEET))
    fleet["projects"][0]["repositories"][1]["artifacts"][0]["scan"] = {"high": 2}
    harbor.reset(Fleet.from_dict(fleet))
    write_tree(tmp_path / "tree")
    nights = Nights(tmp_path, harbor, Bases({ALPINE: ALPINE_1}), {})
    carried = {"library/base": ScanResult.of({"High": 2}, 0),
               "library/app": ScanResult.of({"High": 2}, 0)}
    nights.night(LabellingBuilder(harbor, carried))
    second = nights.night(builder := LabellingBuilder(harbor, carried))
    assert builder.pushed == []
    assert sorted(i.subject for i in second.plan.attention
                  if i.kind is AttentionKind.HELD) == ["library/app:1", "library/base:1.0"]
    nights.bases.digests[ALPINE] = ALPINE_2
    third = nights.night(builder := LabellingBuilder(harbor, carried))
    assert sorted(builder.pushed) == ["library/app:1", "library/base:1.0", "library/tool:2"]
    assert not [i for i in third.plan.attention if i.kind is AttentionKind.HELD]
    assert not [s for s in third.plan.skipped if s.reason is SkipReason.HELD]
