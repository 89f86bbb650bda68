"""The nightly job against the Harbor simulator, with a builder that "pushes" into it.

No lab here (the end-to-end runs with real builds are in ``tests/test_nightly_lab.py``): the
fake builder registers each pushed digest in the simulator as a registry notification would,
so the rescan, the before/after judgement, state, resume and reports are the real code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from careen.assemble import job_parts
from careen.attention import AttentionKind
from careen.builders.interface import (
    Builder,
    BuildRequest,
    BuildResult,
    Failure,
    PushResult,
    Status,
    unsupported_result,
)
from careen.config import Config, load_config
from careen.errors import UsageError
from careen.nightly import NightlyOptions, run_nightly
from careen.results import Outcome
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from careen.state.store import BuildStatus, RunStatus, StateLockedError, StateStore

FLEET: dict[str, Any] = {
    "harbor_version": "2.14.0",
    "users": {"admin": "Harbor12345"},
    "projects": [{"name": "library", "repositories": [
        {"name": "base", "artifacts": [{"tags": ["1.0"], "scan": {"high": 2, "fixable": 2}}]},
        {"name": "app", "artifacts": [{"tags": ["1"], "scan": {}}]},
        {"name": "web", "artifacts": [{"tags": ["2"], "scan": {"medium": 4}}]},
        {"name": "lone", "artifacts": [{"tags": ["1"], "scan": {"high": 1}}]},
        {"name": "other", "artifacts": [{"tags": ["1"], "scan": {}}]},
    ]}],
}


@pytest.fixture(scope="module")
def harbor() -> Iterator[SimulatorServer]:
    options = SimOptions(scan_delay=ScanDelays(pending=0.02, running=0.02))
    with SimulatorServer(Fleet.from_dict(FLEET), options) as server:
        yield server


def write_tree(root: Path) -> None:
    for folder, text in {
        "base/1.0": "FROM scratch\n",
        "app/1": "FROM library/base:1.0\n",
        "web/2": "FROM library/base:1.0\n",
        "other/1": "FROM scratch\n",
    }.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "Dockerfile").write_text(text)


def make_config(tmp_path: Path, harbor: SimulatorServer, **extra: str) -> Config:
    write_tree(tmp_path / "tree")
    return load_config(None, cwd=tmp_path, environ={**extra,
        "CAREEN_HARBOR_URL": harbor.url, "CAREEN_HARBOR_USER": "admin",
        "CAREEN_HARBOR_PASSWORD": "Harbor12345", "CAREEN_REGISTRY_SERVER": "registry.test",
        "CAREEN_TREE_ROOT": str(tmp_path / "tree"),
        "CAREEN_OUTPUT_REPORTS_DIR": str(tmp_path / "reports"),
    }, overrides={})


class PushingBuilder:
    """Builds nothing; a push registers a new digest for the tag in the simulator."""

    name = "fake"

    def __init__(self, harbor: SimulatorServer, *, fail: set[str] | None = None,
                 after_push: Callable[[str], None] | None = None) -> None:
        self.harbor = harbor
        self.fail = fail or set()
        self.after_push = after_push
        self.pushed: list[str] = []
        self.lock = threading.Lock()

    def build(self, request: BuildRequest) -> BuildResult:
        failed = request.image.repository in self.fail
        request.log_path.parent.mkdir(parents=True, exist_ok=True)
        request.log_path.write_text("STEP 1/1: FROM scratch\n")
        return BuildResult(request.image, Status.FAILED if failed else Status.SUCCEEDED, 0.01,
                           request.log_path, ("RUN exit 1",) if failed else (),
                           error=Failure.BUILD_FAILED if failed else None)

    def push(self, request: BuildRequest) -> PushResult:
        name = request.image.short
        digest = "sha256:" + hashlib.sha256(f"{name}-{len(self.pushed)}".encode()).hexdigest()
        self.harbor.state.push(request.image.repository, request.image.tag or "latest", digest)
        with self.lock:
            self.pushed.append(name)
        if self.after_push is not None:
            self.after_push(name)
        return PushResult(request.image, Status.SUCCEEDED, 0.01, request.log_path,
                          digest=digest)


def opener(builder: Builder) -> Callable[[], Any]:
    @contextmanager
    def open_builder() -> Iterator[Builder]:
        yield builder
    return open_builder


def options(tmp_path: Path, **changes: Any) -> NightlyOptions:
    return NightlyOptions(**{"reports_dir": tmp_path / "reports", "rescan_timeout": 10,
                             "rescan_interval": 0.05, **changes})


def run(config: Config, store: StateStore, builder: Builder, tmp_path: Path,
        **changes: Any) -> Any:
    return asyncio.run(run_nightly(job_parts(config, open_builder=opener(builder)),
                                   options(tmp_path, **changes), store=store))


def test_a_night_rebuilds_parents_first_verifies_and_remembers(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    harbor.reset(Fleet.from_dict(FLEET))
    config = make_config(tmp_path, harbor)
    builder = PushingBuilder(harbor)
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, builder, tmp_path)
        detail = store.run(str(outcome.run_id))

    # base breaks the policy; web too; app is rebuilt as base's child; lone has no folder.
    assert builder.pushed[0] == "library/base:1.0"
    assert sorted(builder.pushed[1:]) == ["library/app:1", "library/web:2"]
    by_image = {r.image.short: r for r in outcome.result.images}
    # The simulator scans a new digest clean (the fleet's default): the counts went down.
    assert by_image["library/base:1.0"].outcome is Outcome.FIXED
    assert by_image["library/web:2"].outcome is Outcome.FIXED
    assert by_image["library/app:1"].outcome is Outcome.REBUILT
    assert by_image["library/app:1"].selected is False
    assert by_image["library/lone:1"].outcome is Outcome.SKIPPED
    assert "library/other:1" not in by_image
    # lone breaks the policy and the tree cannot rebuild it: a person must look (issue 12).
    assert outcome.exit_code == 1
    [lone] = outcome.result.attention
    assert (lone.kind, lone.subject) == (AttentionKind.NO_FOLDER, "library/lone:1")
    # vulnerable.list in the seed's format, reports, state.
    listed = (tmp_path / "vulnerable.list").read_text()
    assert "library/base:1.0" in listed and "library/other" not in listed
    assert {p.name for p in outcome.reports} == {"careen.json", "careen.xml", "careen.md",
                                                 "careen.html"}
    document = json.loads((tmp_path / "reports" / "careen.json").read_text())
    assert document["run_id"] == outcome.run_id
    assert [(a["kind"], a["subject"]) for a in document["attention"]] == [
        ("no_folder", "library/lone:1")]
    # Every build worked: the run succeeded, though it exits 1 for what needs a person.
    assert detail.run.status is RunStatus.SUCCEEDED and detail.run.plan_id == outcome.plan.id
    assert [b.status for b in detail.builds] == [BuildStatus.PUSHED] * 3
    assert {s.phase.value for s in detail.scans} == {"before", "after"}
    assert detail.run.summary is not None and detail.run.summary["result"]["counts"]["fixed"] == 2


def test_a_failed_base_skips_its_children_and_the_run_exits_1(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    harbor.reset(Fleet.from_dict(FLEET))
    config = make_config(tmp_path, harbor)
    builder = PushingBuilder(harbor, fail={"library/base"})
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, builder, tmp_path)
    by_image = {r.image.short: r for r in outcome.result.images}
    assert by_image["library/base:1.0"].outcome is Outcome.FAILED
    assert by_image["library/app:1"].outcome is Outcome.SKIPPED
    assert "parent library/base:1.0 failed" in by_image["library/app:1"].note
    assert builder.pushed == []
    assert outcome.exit_code == 1
    kinds = {(a.kind, a.subject) for a in outcome.result.attention}
    assert {(AttentionKind.BUILD_FAILED, "library/base:1.0"),
            (AttentionKind.PARENT_FAILED, "library/app:1"),
            (AttentionKind.PARENT_FAILED, "library/web:2")} <= kinds
    failed = next(a for a in outcome.result.attention if a.kind is AttentionKind.BUILD_FAILED)
    assert failed.path is not None and failed.path.endswith(".log")
    assert failed.line().startswith("needs attention: library/base:1.0: build failed (log: ")
    assert failed.line().endswith("; next: read the build log")
    blocked = next(a for a in outcome.result.attention if a.subject == "library/app:1")
    assert blocked.line() == ("needs attention: library/app:1: not rebuilt: parent "
                              "library/base:1.0 failed; next: fix library/base:1.0 first; its "
                              "children follow")


def test_an_interrupted_night_is_resumed_without_pushing_twice(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    harbor.reset(Fleet.from_dict(FLEET))
    config = make_config(tmp_path, harbor)
    stop: dict[str, Callable[[], None]] = {}

    def interrupt(name: str) -> None:
        if name == "library/base:1.0":
            stop["cancel"]()

    async def first_night(store: StateStore, builder: Builder) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        def cancel() -> None:
            loop.call_soon_threadsafe(task.cancel)
        stop["cancel"] = cancel
        await run_nightly(job_parts(config, open_builder=opener(builder)), options(tmp_path),
                          store=store)

    first = PushingBuilder(harbor, after_push=interrupt)
    with StateStore.open(tmp_path / "state.sqlite") as store:
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(first_night(store, first))
        interrupted = store.last_run()
        assert interrupted is not None and interrupted.status is RunStatus.INTERRUPTED
        assert first.pushed == ["library/base:1.0"]

        second = PushingBuilder(harbor)
        outcome = run(config, store, second, tmp_path, resume=True)
        assert [a.subject for a in outcome.result.attention] == ["library/lone:1"]
        resumed = store.run(str(outcome.run_id)).run

    assert "library/base:1.0" not in second.pushed
    assert sorted(second.pushed) == ["library/app:1", "library/web:2"]
    assert resumed.resumed_from == interrupted.id and resumed.plan_id == interrupted.plan_id
    by_image = {r.image.short: r for r in outcome.result.images}
    assert by_image["library/base:1.0"].outcome is Outcome.FIXED  # rescanned all the same
    assert outcome.exit_code == 1  # lone, which has no folder, still needs a person


def test_resume_without_an_interrupted_run_says_so(tmp_path: Path,
                                                   harbor: SimulatorServer) -> None:
    harbor.reset(Fleet.from_dict(FLEET))
    config = make_config(tmp_path, harbor)
    with StateStore.open(tmp_path / "state.sqlite") as store, \
            pytest.raises(UsageError, match="no interrupted run to resume"):
        run(config, store, PushingBuilder(harbor), tmp_path, resume=True)


def test_a_second_run_on_the_same_state_is_refused(tmp_path: Path,
                                                   harbor: SimulatorServer) -> None:
    config = make_config(tmp_path, harbor)
    with StateStore.open(tmp_path / "state.sqlite") as holder, holder.run_lock(), \
            StateStore.open(tmp_path / "state.sqlite") as store, \
            pytest.raises(StateLockedError):
        run(config, store, PushingBuilder(harbor), tmp_path)


def test_a_dry_run_plans_and_stores_the_plan_but_builds_nothing(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    harbor.reset(Fleet.from_dict(FLEET))
    config = make_config(tmp_path, harbor)
    builder = PushingBuilder(harbor)
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, builder, tmp_path, dry_run=True)
        assert store.latest_plan() is not None
        assert store.runs() == []
    assert builder.pushed == []
    assert outcome.plan.id is not None
    assert {r.outcome for r in outcome.result.images} == {Outcome.PLANNED, Outcome.SKIPPED}


def test_history_and_show_tell_what_a_night_did(
    tmp_path: Path, harbor: SimulatorServer, capsys: pytest.CaptureFixture[str],
) -> None:
    from careen.cli.main import _run

    harbor.reset(Fleet.from_dict(FLEET))
    config = make_config(tmp_path, harbor)
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, PushingBuilder(harbor, fail={"library/web"}), tmp_path)
    capsys.readouterr()

    assert _run(["history", "--state", str(tmp_path / "state.sqlite"), "-f", "json"],
                "careen") == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == outcome.run_id and listed["status"] == "failed"
    assert listed["counts"]["failed"] == 1 and listed["counts"]["fixed"] == 1

    assert _run(["show", "latest", "--state", str(tmp_path / "state.sqlite")], "careen") == 0
    shown = capsys.readouterr().out
    assert "library/web:2" in shown and "build failed" in shown
    assert "fixed" in shown and "library/base:1.0" in shown


def test_the_webhook_hears_the_summary_and_a_dead_one_fails_nothing(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    import http.server

    heard: list[dict[str, Any]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            heard.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    # shutdown() waits for serve_forever to look again: every 10 ms, not every 0.5 s.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    try:
        harbor.reset(Fleet.from_dict(FLEET))
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0/secret-token"
        config = make_config(tmp_path, harbor, CAREEN_NOTIFY_WEBHOOK=url,
                             CAREEN_POLICY_IGNORE="library/lone:*")
        with StateStore.open(tmp_path / "state.sqlite") as store:
            outcome = run(config, store, PushingBuilder(harbor), tmp_path)
    finally:
        server.shutdown()
        thread.join()
    [message] = heard
    assert "2 fixed" in json.dumps(message)
    assert outcome.exit_code == 0

    dead = make_config(tmp_path / "again", harbor,
                       CAREEN_NOTIFY_WEBHOOK="http://127.0.0.1:9/hooks/T0/secret-token",
                       CAREEN_POLICY_IGNORE="library/lone:*")
    harbor.reset(Fleet.from_dict(FLEET))
    with StateStore.open(tmp_path / "again" / "state.sqlite") as store:
        assert run(dead, store, PushingBuilder(harbor), tmp_path / "again").exit_code == 0
        summary = store.last_run()
    assert summary is not None and "secret-token" not in json.dumps(summary.summary)


def test_a_second_careen_run_on_the_same_state_refuses_with_a_clear_message(
    tmp_path: Path, harbor: SimulatorServer, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 7, point 4: through the command line, as a second Jenkins build would."""
    from careen.cli.main import _run

    write_tree(tmp_path / "tree")
    for name, value in {"CAREEN_HARBOR_URL": harbor.url, "CAREEN_HARBOR_USER": "admin",
                        "CAREEN_HARBOR_PASSWORD": "Harbor12345",
                        "CAREEN_REGISTRY_SERVER": "registry.test",
                        "CAREEN_TREE_ROOT": str(tmp_path / "tree")}.items():
        monkeypatch.setenv(name, value)
    state = tmp_path / "state.sqlite"
    with StateStore.open(state) as first, first.run_lock():
        code = _run(["run", "--state", str(state)], "careen")
    err = capsys.readouterr().err
    assert code == 1
    assert "another careen run (pid" in err and str(state) in err
    with StateStore.open(state) as store:
        assert store.runs() == []  # nothing was begun, nothing built


def test_an_interrupted_run_exits_130_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM (a Jenkins abort) cancels the nightly task; the CLI says so, exit 130."""
    from careen import nightly
    from careen.cli.main import _run

    async def cancelled(*args: object, **kwargs: object) -> None:
        raise asyncio.CancelledError

    monkeypatch.setattr(nightly, "run_nightly", cancelled)
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", "registry.test")
    assert _run(["run", "--state", str(tmp_path / "s.sqlite")], "careen") == 130
    assert capsys.readouterr().err.strip() == \
        "careen: interrupted before the run began; nothing was built"


def cli_environment(tmp_path: Path, harbor: SimulatorServer,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(tmp_path / "tree")
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "CAREEN_HARBOR_URL": harbor.url, "CAREEN_HARBOR_USER": "admin",
        "CAREEN_HARBOR_PASSWORD": "Harbor12345", "CAREEN_REGISTRY_SERVER": "registry.test",
        "CAREEN_TREE_ROOT": str(tmp_path / "tree"),
        "CAREEN_OUTPUT_REPORTS_DIR": str(tmp_path / "reports"),
        "CAREEN_RUN_RESCAN_INTERVAL": "0.05",
    }.items():
        monkeypatch.setenv(name, value)


def sigterm_after_first_push(harbor: SimulatorServer) -> PushingBuilder:
    """A builder whose first push is followed by a real SIGTERM to this process (what a
    Jenkins abort sends)."""
    sent: list[str] = []

    def terminate(name: str) -> None:
        if not sent:
            sent.append(name)
            os.kill(os.getpid(), signal.SIGTERM)

    return PushingBuilder(harbor, after_push=terminate)


def test_a_sigterm_mid_run_says_how_far_it_got_and_how_to_finish(
    tmp_path: Path, harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 12.6: one line, how many of the plan's images were pushed and the command that
    finishes the run; exit 130; the run recorded as interrupted; the resume finishes it."""
    from careen import assemble
    from careen.cli.main import _run

    harbor.reset(Fleet.from_dict(FLEET))
    cli_environment(tmp_path, harbor, monkeypatch)
    builder = sigterm_after_first_push(harbor)
    monkeypatch.setattr(assemble, "logged_in_builder", lambda config: opener(builder)())
    state = tmp_path / "state.sqlite"

    code = _run(["run", "--state", str(state)], "careen")

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130, err[-3:]
    assert builder.pushed == ["library/base:1.0"]
    # base, then its children app and web: 3 in the plan, 1 pushed.
    assert err[-1] == ("careen: interrupted: 1 of 3 images pushed; "
                       "'careen run --resume' finishes this run")
    with StateStore.open(state) as store:
        interrupted = store.last_run()
        assert interrupted is not None and interrupted.status is RunStatus.INTERRUPTED

    resumed = PushingBuilder(harbor)
    monkeypatch.setattr(assemble, "logged_in_builder", lambda config: opener(resumed)())
    # Exit 1: library/lone:1 breaks the policy and has no Dockerfile folder (needs attention).
    assert _run(["run", "--resume", "--state", str(state)], "careen") == 1
    assert sorted(resumed.pushed) == ["library/app:1", "library/web:2"]


def test_a_sigterm_mid_update_names_the_plan_to_finish_it(
    tmp_path: Path, harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from careen import assemble
    from careen.cli.main import _run

    harbor.reset(Fleet.from_dict(FLEET))
    cli_environment(tmp_path, harbor, monkeypatch)
    (tmp_path / "vulnerable.list").write_text("5=2,   library/base:1.0\n")
    builder = sigterm_after_first_push(harbor)
    monkeypatch.setattr(assemble, "logged_in_builder", lambda config: opener(builder)())
    state = tmp_path / "state.sqlite"

    code = _run(["update", "--from", "vulnerable.list", "--state", str(state)], "careen")

    err = capsys.readouterr().err.strip().splitlines()
    with StateStore.open(state) as store:
        plan = store.latest_plan()
    assert plan is not None
    plan_id = plan.id
    assert code == 130
    assert builder.pushed == ["library/base:1.0"]
    assert err[-1] == (f"careen: interrupted: 1 of 3 images pushed; "
                       f"'careen update --plan {plan_id}' finishes this run")


MULTI_ARCH_FLEET: dict[str, Any] = {
    "harbor_version": "2.14.0",
    "users": {"admin": "Harbor12345"},
    "projects": [{"name": "library", "repositories": [
        {"name": "base", "artifacts": [{
            "tags": ["1.0"], "scan": {"high": 1},
            "platforms": [{"os": "linux", "architecture": "amd64"},
                          {"os": "linux", "architecture": "arm64"}]}]},
    ]}],
}


class SinglePlatformBuilder(PushingBuilder):
    """A builder without BuildKit-like multi-platform support (the legacy docker builder)."""

    def __init__(self, harbor: SimulatorServer) -> None:
        super().__init__(harbor)
        self.requests: list[BuildRequest] = []

    def build(self, request: BuildRequest) -> BuildResult:
        self.requests.append(request)
        if len(request.platforms) > 1:
            return unsupported_result(request, "cannot build multi-platform here")
        return super().build(request)


def test_a_multi_arch_image_is_built_for_its_platforms_or_skipped_never_flattened(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    """Harbor's index lists its platforms; the build request carries all of them, and a
    builder that cannot make a manifest list skips the image (a single-arch image must
    never replace a multi-arch tag)."""
    harbor.reset(Fleet.from_dict(MULTI_ARCH_FLEET))
    config = make_config(tmp_path, harbor)
    builder = SinglePlatformBuilder(harbor)
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, builder, tmp_path)
    [request] = [r for r in builder.requests if r.image.repository == "library/base"]
    assert request.platforms == ("linux/amd64", "linux/arm64")
    assert builder.pushed == []
    by_image = {r.image.short: r for r in outcome.result.images}
    assert by_image["library/base:1.0"].outcome is Outcome.SKIPPED
    assert "multi-platform" in by_image["library/base:1.0"].note
    # Its children are not built on the old base either.
    assert by_image["library/app:1"].outcome is Outcome.SKIPPED


def test_a_night_clones_the_tree_from_git_and_labels_the_commit_it_built(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    """``[tree] git``: the seed's Jenkins job checked the Dockerfiles out before building;
    ``careen run`` clones (then fast-forwards) the tree and records the commit."""
    import subprocess

    def git(*args: str, cwd: Path) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                               *args], cwd=cwd, check=True, capture_output=True,
                              text=True).stdout.strip()

    origin = tmp_path / "origin"
    write_tree(origin)
    git("init", "-q", "-b", "main", cwd=origin)
    git("add", "-A", cwd=origin)
    git("commit", "-qm", "fleet", cwd=origin)
    commit = git("rev-parse", "HEAD", cwd=origin)
    harbor.reset(Fleet.from_dict(FLEET))
    config = load_config(None, cwd=tmp_path, environ={
        "CAREEN_HARBOR_URL": harbor.url, "CAREEN_HARBOR_USER": "admin",
        "CAREEN_HARBOR_PASSWORD": "Harbor12345", "CAREEN_REGISTRY_SERVER": "registry.test",
        "CAREEN_TREE_ROOT": str(tmp_path / "checkout"),
        "CAREEN_TREE_GIT": f"file://{origin}", "CAREEN_TREE_BRANCH": "main",
    }, overrides={})
    builder = PushingBuilder(harbor)
    requests: list[BuildRequest] = []
    original = builder.build

    def build(request: BuildRequest) -> BuildResult:
        requests.append(request)
        return original(request)

    builder.build = build  # type: ignore[method-assign]
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, builder, tmp_path)
        recorded = store.run(str(outcome.run_id)).run
    assert (tmp_path / "checkout" / "base" / "1.0" / "Dockerfile").is_file()
    assert recorded.tree_commit == commit == outcome.result.tree_commit
    assert {r.labels["org.opencontainers.image.revision"] for r in requests} == {commit}


# -- issue 12: untagged artifacts, and what needs attention ---------------------------------

#: The shape Harbor gives after a re-push: the old digest stays, "tags": null, its old scan.
SUPERSEDED = "sha256:" + "5" * 64


def superseded_fleet() -> Fleet:
    data = json.loads(json.dumps(FLEET))
    [library] = data["projects"]
    library["repositories"][0]["artifacts"].append(
        {"digest": SUPERSEDED, "tags": [], "scan": {"high": 2, "fixable": 2}})
    return Fleet.from_dict(data)


def test_untagged_digests_are_counted_apart_never_planned_nor_rows(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    harbor.reset(superseded_fleet())
    config = make_config(tmp_path, harbor, CAREEN_POLICY_IGNORE="library/lone:*",
                         CAREEN_OUTPUT_JSON=str(tmp_path / "vulnerable.json"))
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, PushingBuilder(harbor), tmp_path)
    [(image, reason)] = outcome.result.untagged
    assert image == f"library/base@{SUPERSEDED}" and "high" in reason
    assert all("@" not in r.image.short for r in outcome.result.images)
    assert all("@" not in s.image.short for s in outcome.plan.skipped)
    assert "@" not in (tmp_path / "vulnerable.list").read_text()
    assert outcome.exit_code == 0  # they do not change the exit code
    document = json.loads((tmp_path / "reports" / "careen.json").read_text())
    assert [u["image"] for u in document["untagged"]] == [f"library/base@{SUPERSEDED}"]
    assert document["attention"] == []
    listed = json.loads((tmp_path / "vulnerable.json").read_text())
    assert [u["image"] for u in listed["untagged"]] == [f"library/base@{SUPERSEDED}"]
    assert all("@" not in u["image"] for u in listed["selected"])


def test_a_rebuild_that_did_not_help_needs_attention(tmp_path: Path,
                                                     harbor: SimulatorServer) -> None:
    data = json.loads(json.dumps(FLEET))
    data["scan_results"] = {"library/web:2": {"medium": 4}}  # the rescan finds the same
    harbor.reset(Fleet.from_dict(data))
    config = make_config(tmp_path, harbor, CAREEN_POLICY_IGNORE="library/lone:*")
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, PushingBuilder(harbor), tmp_path)
    assert outcome.exit_code == 1
    [item] = outcome.result.attention
    assert (item.kind, item.subject) == (AttentionKind.NOT_HELPED, "library/web:2")
    assert item.reason.startswith("rebuild did not help: ")
    assert item.line().endswith("; next: bump the base image or the pinned package in its "
                                "Dockerfile")
    document = json.loads((tmp_path / "reports" / "careen.json").read_text())
    assert [(a["kind"], a["subject"]) for a in document["attention"]] == [
        ("not_helped", "library/web:2")]


def test_an_image_still_unscanned_at_the_rescan_deadline_needs_attention(
    tmp_path: Path,
) -> None:
    # Scans that take a minute each: none finishes by a 0.1 s deadline (the rescan still
    # asks for each scan and reads each summary once, however short it is).
    slow = SimOptions(scan_delay=ScanDelays(pending=60, running=60))
    with SimulatorServer(Fleet.from_dict(FLEET), slow) as harbor:
        config = make_config(tmp_path, harbor, CAREEN_POLICY_IGNORE="library/lone:*")
        with StateStore.open(tmp_path / "state.sqlite") as store:
            outcome = run(config, store, PushingBuilder(harbor), tmp_path, rescan_timeout=0.1)
    assert outcome.exit_code == 1
    kinds = {(a.kind, a.subject) for a in outcome.result.attention}
    assert (AttentionKind.UNSCANNED_AT_DEADLINE, "library/base:1.0") in kinds
    item = next(a for a in outcome.result.attention if a.subject == "library/base:1.0")
    assert item.line().endswith("; next: check the scan in Harbor, or run 'careen scan "
                                "library/base:1.0 --wait'")


def test_a_rebuild_that_improved_but_still_breaks_the_policy_needs_attention(
    tmp_path: Path, harbor: SimulatorServer,
) -> None:
    data = json.loads(json.dumps(FLEET))
    data["scan_results"] = {"library/web:2": {"medium": 3}}  # 4 -> 3: still medium >= 3
    harbor.reset(Fleet.from_dict(data))
    config = make_config(tmp_path, harbor, CAREEN_POLICY_IGNORE="library/lone:*")
    with StateStore.open(tmp_path / "state.sqlite") as store:
        outcome = run(config, store, PushingBuilder(harbor), tmp_path)
    assert outcome.exit_code == 1
    [item] = outcome.result.attention
    assert (item.kind, item.subject) == (AttentionKind.IMPROVED, "library/web:2")
    # What remains is named from Harbor's vulnerability lists (issue 14): the simulator's
    # findings for the rescanned digest have no fixed version.
    line = item.line()
    assert line.startswith("needs attention: library/web:2: fewer findings (medium 4 -> 3) "
                           "but still breaks the policy: medium 3 >= 3; what remains: no fix "
                           "upstream yet for ")
    assert line.endswith("; next: bump the base image or the pinned package for what remains")
