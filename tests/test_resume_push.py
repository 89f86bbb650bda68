"""A push interrupted by a crash after the registry took it, before the state recorded it.

The executor records "push starting" with the built image's id, durably, before each push;
a later run of the plan asks the registry what the step's tags serve
(:func:`careen.nightly.settle_interrupted_pushes`): the same image is proof the push arrived
(recorded pushed, not pushed again); anything else, or no answer, builds and pushes again.
The registry here is a fake holding tag -> (manifest digest, config digest); the real
registry's shape is checked in ``tests/registries/test_resolve.py`` and on the lab
(``tests/reliability/test_push_window.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from careen.assemble import job_parts
from careen.builders.interface import BuildRequest, BuildResult, PushResult, Status
from careen.config import load_config
from careen.events import RecordingObserver
from careen.nightly import (
    JobParts,
    NightlyOptions,
    StateRecorder,
    run_update,
    settle_interrupted_pushes,
    store_plan,
)
from careen.plan import Candidate, Plan, make_plan
from careen.reference import ImageReference
from careen.registries.resolve import TagManifest
from careen.state.store import BuildStatus, RunKind, RunStatus, StateStore
from careen.tree.discover import discover_tree
from tests.test_nightly import opener

REGISTRY = "registry.test"


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class FakeRegistry:
    """Tags and what they serve; answers as :meth:`DigestResolver.manifest` does."""

    def __init__(self) -> None:
        self.tags: dict[str, TagManifest] = {}
        self.puts: dict[str, int] = {}
        self.asked: list[str] = []
        self.problem: str | None = None
        self.lock = threading.Lock()

    def put(self, reference: ImageReference, config: str, *, index: bool = False) -> str:
        key = str(reference.without_digest())
        digest = digest_of(f"{key}:{config}")
        media = ("application/vnd.oci.image.index.v1+json" if index
                 else "application/vnd.oci.image.manifest.v1+json")
        with self.lock:
            self.tags[key] = TagManifest(reference, digest, media, None if index else config)
            self.puts[reference.short] = self.puts.get(reference.short, 0) + 1
        return digest

    async def manifest(self, reference: ImageReference) -> TagManifest:
        self.asked.append(str(reference))
        if self.problem is not None:
            return TagManifest(reference, problem=self.problem)
        return self.tags.get(str(reference), TagManifest(reference, problem="not found"))


class Killed(BaseException):
    """The SIGKILL of the process, as far as this process can play it: nothing after it
    runs (no outcome recorded)."""


class RegistryBuilder:
    """Each build a new image id (no-cache builds differ); a push puts it in the registry,
    then, for the images in ``kill_after_push``, Careen "dies" before recording it."""

    name = "fake"

    def __init__(self, registry: FakeRegistry, kill_after_push: set[str] | None = None) -> None:
        self.registry = registry
        self.kill_after_push = kill_after_push or set()
        self.built: list[str] = []
        self.ids: dict[str, str] = {}

    def build(self, request: BuildRequest) -> BuildResult:
        self.built.append(request.image.short)
        image_id = digest_of(f"{request.image.short}-build-{len(self.built)}")
        self.ids[request.image.short] = image_id
        return BuildResult(request.image, Status.SUCCEEDED, 0.01, request.log_path,
                           image_id=image_id)

    def push(self, request: BuildRequest) -> PushResult:
        digest = self.registry.put(request.image, self.ids[request.image.short])
        for extra in request.extra_tags:
            self.registry.put(request.image.with_tag(extra), self.ids[request.image.short])
        if request.image.short in self.kill_after_push:
            raise Killed
        return PushResult(request.image, Status.SUCCEEDED, 0.01, request.log_path,
                          digest=digest)


def make_tree_plan(tmp_path: Path) -> Plan:
    for folder, text in {"base/1.0": "FROM scratch\n", "app/1": "FROM library/base:1.0\n",
                         "tools/1": "FROM scratch\n"}.items():
        (tmp_path / "tree" / folder).mkdir(parents=True)
        (tmp_path / "tree" / folder / "Dockerfile").write_text(text)
    return make_plan([Candidate(ImageReference.parse("library/base:1.0"), "high 1 > 0"),
                      Candidate(ImageReference.parse("library/tools:1"), "high 1 > 0")],
                     discover_tree(tmp_path / "tree"), now=datetime(2026, 1, 1, tzinfo=UTC))


def parts_for(tmp_path: Path, builder: RegistryBuilder, registry: FakeRegistry | None,
              ) -> JobParts:
    config = load_config(None, cwd=tmp_path, environ={
        "CAREEN_HARBOR_URL": "https://harbor.test", "CAREEN_REGISTRY_SERVER": REGISTRY,
        "CAREEN_TREE_ROOT": str(tmp_path / "tree"),
        "CAREEN_OUTPUT_REPORTS_DIR": str(tmp_path / "reports")}, overrides={})
    return replace(job_parts(config, open_builder=opener(builder)), pushed_tags=registry)


def update(parts: JobParts, plan: Plan, store: StateStore, tmp_path: Path,
           observer: RecordingObserver | None = None) -> object:
    return asyncio.run(run_update(parts, plan, NightlyOptions(reports_dir=tmp_path / "reports"),
                                  store=store, observer=observer or RecordingObserver()))


def killed_in_the_push_window(tmp_path: Path, store: StateStore, registry: FakeRegistry,
                              image: str) -> tuple[Plan, RegistryBuilder]:
    """A run of the plan that dies after the registry took ``image``'s push, before the
    push was recorded."""
    plan = store_plan(store, make_tree_plan(tmp_path))
    first = RegistryBuilder(registry, kill_after_push={image})
    with pytest.raises(Killed):
        update(parts_for(tmp_path, first, registry), plan, store, tmp_path)
    [doubt] = store.pushes_in_doubt(str(plan.id))
    assert (doubt.image, doubt.image_id) == (image, first.ids[image])
    return plan, first


def test_a_push_that_reached_the_registry_is_not_made_again(tmp_path: Path) -> None:
    registry = FakeRegistry()
    with StateStore.open(tmp_path / "state.sqlite") as store:
        plan, first = killed_in_the_push_window(tmp_path, store, registry, "library/base:1.0")
        assert registry.puts["library/base:1.0"] == 1
        served = registry.tags[f"{REGISTRY}/library/base:1.0"].digest

        second = RegistryBuilder(registry)
        seen = RecordingObserver()
        update(parts_for(tmp_path, second, registry), plan, store, tmp_path, seen)
        runs = store.runs(2, kind=RunKind.UPDATE)
        builds = store.run(runs[1].id).builds

    assert "library/base:1.0" not in second.built
    assert registry.puts["library/base:1.0"] == 1  # one manifest PUT in all
    assert registry.puts["library/app:1"] == 1  # its child built on it, once
    assert f"library/base:1.0: the push interrupted last time had reached the registry " \
           f"({served}); not pushed again" in seen.of_kind("info")
    base = next(b for b in builds if b.image == "library/base:1.0")
    assert (base.status, base.digest, base.image_id) == (
        BuildStatus.PUSHED, served, first.ids["library/base:1.0"])
    assert runs[0].status is RunStatus.SUCCEEDED


@pytest.mark.parametrize(("registry_says", "why"), [
    ("another image", "serves another image"),
    ("an index", "serves an index"),
    ("no answer", "the registry could not say: registry.test: unreachable: ConnectError"),
    ("an error", "the registry could not be asked: RuntimeError"),
    ("no client", "no client of the registry to ask"),
])
def test_a_push_not_proven_to_have_arrived_is_made_again(tmp_path: Path, registry_says: str,
                                                         why: str) -> None:
    registry = FakeRegistry()
    with StateStore.open(tmp_path / "state.sqlite") as store:
        plan, first = killed_in_the_push_window(tmp_path, store, registry, "library/base:1.0")
        [doubt] = store.pushes_in_doubt(str(plan.id))
        base = ImageReference("library/base", "1.0", None, REGISTRY)
        asked: FakeRegistry | None = registry
        if registry_says == "another image":  # the kill came before the manifest PUT
            registry.put(base, digest_of("last night's image"))
        elif registry_says == "an index":
            registry.put(base, first.ids["library/base:1.0"], index=True)
        elif registry_says == "no answer":
            registry.problem = f"{REGISTRY}: unreachable: ConnectError"
        elif registry_says == "an error":
            async def broken(reference: ImageReference) -> TagManifest:
                raise RuntimeError("boom")
            registry.manifest = broken  # type: ignore[method-assign]
        else:
            asked = None
        seen = RecordingObserver()
        proven = asyncio.run(settle_interrupted_pushes(plan, store, REGISTRY, asked, seen))
        record = store.build(doubt.id)

    assert proven == {}
    assert record.status is BuildStatus.FAILED
    assert record.error is not None and why in record.error
    [said] = seen.of_kind("info")
    assert said.startswith("library/base:1.0: the push interrupted last time is not known "
                           "to have reached the registry (")
    assert why in said and said.endswith("; building and pushing it again")


def test_every_tag_of_the_step_must_serve_the_built_image(tmp_path: Path) -> None:
    """A step pushed under several tags (the image's own first, then the others): a crash
    between two of them leaves the own tag proven, not the step; it is pushed again."""
    registry = FakeRegistry()
    with StateStore.open(tmp_path / "state.sqlite") as store:
        plan = store_plan(store, make_tree_plan(tmp_path))
        base = replace(plan.steps[0], tags=("1.0", "1"))
        plan = replace(plan, steps=(base, *plan.steps[1:]))
        run = store.begin_run(RunKind.UPDATE, plan_id=plan.id)
        recorder = StateRecorder(store, run.id, plan)
        image_id = digest_of("built")
        recorder.step_started(base, base.image, tmp_path / "log")
        recorder.push_starting(base, base.image, image_id, 1.5)
        registry.put(ImageReference("library/base", "1.0", None, REGISTRY), image_id)
        registry.put(ImageReference("library/base", "1", None, REGISTRY), digest_of("old"))
        proven = asyncio.run(settle_interrupted_pushes(plan, store, REGISTRY, registry))
        assert proven == {}
        assert registry.asked == [f"{REGISTRY}/library/base:1.0", f"{REGISTRY}/library/base:1"]

        registry.put(ImageReference("library/base", "1", None, REGISTRY), image_id)
        again = store.build_started(run.id, base.image, step=0)
        store.build_pushing(again.id, image_id=image_id, duration=1.5)
        proven = asyncio.run(settle_interrupted_pushes(plan, store, REGISTRY, registry))
        record = store.build(again.id)
    assert proven == {"library/base:1.0": registry.tags[f"{REGISTRY}/library/base:1.0"].digest}
    assert (record.status, record.duration) == (BuildStatus.PUSHED, 1.5)


def test_only_the_latest_push_in_doubt_of_an_image_is_asked_about(tmp_path: Path) -> None:
    registry = FakeRegistry()
    with StateStore.open(tmp_path / "state.sqlite") as store:
        plan = store_plan(store, make_tree_plan(tmp_path))
        run = store.begin_run(RunKind.UPDATE, plan_id=plan.id)
        older = store.build_started(run.id, "library/base:1.0", step=0)
        store.build_pushing(older.id, image_id=digest_of("first build"))
        newer = store.build_started(run.id, "library/base:1.0", step=0)
        store.build_pushing(newer.id, image_id=digest_of("second build"))
        registry.put(ImageReference("library/base", "1.0", None, REGISTRY),
                     digest_of("second build"))
        proven = asyncio.run(settle_interrupted_pushes(plan, store, REGISTRY, registry))
        assert list(proven) == ["library/base:1.0"]
        assert store.build(newer.id).status is BuildStatus.PUSHED
        superseded = store.build(older.id)
        assert superseded.status is BuildStatus.FAILED
        assert "superseded" in (superseded.error or "")
        assert store.pushes_in_doubt(str(plan.id)) == []
    assert registry.asked == [f"{REGISTRY}/library/base:1.0"]
