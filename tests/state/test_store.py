"""The state store: runs, plans, verdicts, scans, builds, resume data and trends."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from careen.errors import ExitCode
from careen.inventory import Image
from careen.policy import Verdict, VerdictKind
from careen.reference import ImageReference
from careen.scan import ScanStatus, ScanSummary, SeverityCounts
from careen.state import (
    BuildStatus,
    RunKind,
    RunStatus,
    ScanPhase,
    StateStore,
    UnknownPlanError,
    UnknownRunError,
    default_state_path,
)

from .conftest import TickingClock

DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64


def _image(text: str, summary: ScanSummary, digest: str | None = DIGEST) -> Image:
    return Image(reference=ImageReference.parse(text), digest=digest, scan=summary)


def _scanned(**counts: int) -> ScanSummary:
    return ScanSummary(ScanStatus.SUCCESS, counts=SeverityCounts(**counts), scanner="Trivy")


# -- default location ------------------------------------------------------------------------


def test_default_path_uses_xdg_state_home() -> None:
    path = default_state_path({"XDG_STATE_HOME": "/var/lib/jenkins/state"}, "/home/j")
    assert path == Path("/var/lib/jenkins/state/careen/state.sqlite")


@pytest.mark.parametrize("environ", [{}, {"XDG_STATE_HOME": ""},
                                     {"XDG_STATE_HOME": "relative/state"}])
def test_default_path_falls_back_to_home(environ: dict[str, str]) -> None:
    path = default_state_path(environ, Path("/home/jenkins"))
    assert path == Path("/home/jenkins/.local/state/careen/state.sqlite")


# -- plans -----------------------------------------------------------------------------------


def test_plan_round_trip_keeps_the_body_exactly(store: StateStore) -> None:
    body = {
        "version": 1,
        "steps": [{"image": "library/httpd:2.4", "folder": "httpd/2.4", "after": []},
                  {"image": "library/grafana:4.1.2", "folder": "grafana/4.1.2",
                   "after": ["library/httpd:2.4"]}],
        "note": "überprüft ✓",
        "zeta": None, "alpha": 1.5,
    }
    plan_id = store.save_plan(body, source="file:/tmp/plan.json", policy="high > 0")
    plan = store.load_plan(plan_id)
    assert plan.body == body
    assert list(plan.body) == list(body)  # key order too: replayed as given
    assert plan.source == "file:/tmp/plan.json"
    assert plan.policy == "high > 0"
    assert plan.id == plan_id
    assert plan_id.startswith("plan-20261127-2315")


def test_plan_ids_sort_by_time_and_latest_plan(store: StateStore) -> None:
    ids = [store.save_plan({"n": n}, source="harbor", policy=None) for n in range(3)]
    assert sorted(ids) == ids
    latest = store.latest_plan()
    assert latest is not None
    assert latest.id == ids[-1]
    assert [p.id for p in store.plans(2)] == [ids[2], ids[1]]


def test_no_plan_yet(store: StateStore) -> None:
    assert store.latest_plan() is None
    with pytest.raises(UnknownPlanError, match="holds no plans yet"):
        store.load_plan("plan-20260101-000000-0000")


def test_unknown_plan_id_lists_the_latest_ids(store: StateStore) -> None:
    ids = [store.save_plan({"n": n}, source="harbor", policy=None) for n in range(7)]
    with pytest.raises(UnknownPlanError) as caught:
        store.load_plan("plan-19990101-000000-dead")
    message = str(caught.value)
    assert "no plan 'plan-19990101-000000-dead'" in message
    assert str(store.path) in message
    assert f"latest plans: {', '.join(reversed(ids[2:]))}" in message
    assert ids[1] not in message
    assert caught.value.exit_code is ExitCode.USAGE


@pytest.mark.parametrize(
    ("given", "stored"),
    [("harbor", "harbor"), ("stdin", "stdin"), ("url", "url"),
     ("file:plans/tonight.json", "file:plans/tonight.json"),
     ("url:https://ci:hunter2@plans.example:8443/p.json?token=abc#x",
      "url:https://plans.example:8443/p.json")],
)
def test_plan_source_is_kept_without_credentials(store: StateStore, given: str,
                                                 stored: str) -> None:
    plan_id = store.save_plan({}, source=given, policy=None)
    assert store.load_plan(plan_id).source == stored
    raw = store.path.read_bytes() + store.path.with_name(store.path.name + "-wal").read_bytes()
    assert b"hunter2" not in raw
    assert b"token=abc" not in raw


@pytest.mark.parametrize("source", ["", "ftp", "file:", "Harbor"])
def test_bad_plan_source_is_refused(store: StateStore, source: str) -> None:
    with pytest.raises(ValueError, match="plan source"):
        store.save_plan({}, source=source, policy=None)


def test_plan_body_must_be_json(store: StateStore) -> None:
    with pytest.raises(ValueError, match="plan body cannot be stored as JSON"):
        store.save_plan({"when": datetime(2026, 1, 1)}, source="harbor", policy=None)
    with pytest.raises(ValueError, match="plan body cannot be stored as JSON"):
        store.save_plan({"x": float("nan")}, source="harbor", policy=None)


# -- runs ------------------------------------------------------------------------------------


def test_run_lifecycle(store: StateStore) -> None:
    plan_id = store.save_plan({}, source="harbor", policy=None)
    run = store.begin_run("update", plan_id=plan_id, tree_commit="abc123",
                          options={"jobs": 2, "projects": ["library"]})
    assert run.id.startswith("run-2026112")
    assert run.kind is RunKind.UPDATE
    assert run.status is RunStatus.RUNNING
    assert run.finished_at is None
    assert run.options == {"jobs": 2, "projects": ["library"]}
    assert run.pid is not None
    finished = store.finish_run(run.id, RunStatus.FAILED, 1, {"pushed": 3, "failed": 1})
    assert finished.status is RunStatus.FAILED
    assert finished.exit_code == 1
    assert finished.summary == {"pushed": 3, "failed": 1}
    assert finished.finished_at is not None
    assert finished.finished_at > finished.started_at
    assert finished.plan_id == plan_id
    assert finished.tree_commit == "abc123"
    with pytest.raises(ValueError, match="already finished"):
        store.finish_run(run.id, "succeeded", 0)


def test_bad_run_inputs(store: StateStore) -> None:
    with pytest.raises(ValueError, match="run kind 'nightly'"):
        store.begin_run("nightly")
    with pytest.raises(UnknownPlanError):
        store.begin_run("update", plan_id="plan-20200101-000000-0000")
    run = store.begin_run("run")
    with pytest.raises(ValueError, match="final status"):
        store.finish_run(run.id, "running", 0)
    with pytest.raises(UnknownRunError, match=f"latest runs: {run.id}"):
        store.finish_run("run-20200101-000000-0000", "succeeded", 0)
    with pytest.raises(UnknownRunError):
        store.record_verdict("run-nope", "library/a:1", digest=None, kind="passes", reason="")


@pytest.mark.parametrize("key", ["registry_password", "Token", "harbor.secret",
                                 "credentials", "api_key", "pass"])
def test_options_naming_a_secret_are_refused(store: StateStore, key: str) -> None:
    with pytest.raises(ValueError, match="looks like a secret"):
        store.begin_run("update", options={"registry": {key: "hunter2"}})
    run = store.begin_run("update", options={"bypass_cache": True, "user": "ci"})
    with pytest.raises(ValueError, match="looks like a secret"):
        store.finish_run(run.id, "succeeded", 0, {"steps": [{key: "x"}]})


def test_runs_newest_first_with_kind_filter(store: StateStore) -> None:
    first = store.begin_run("vulnerable")
    second = store.begin_run("update")
    third = store.begin_run("vulnerable")
    assert [r.id for r in store.runs(10)] == [third.id, second.id, first.id]
    assert [r.id for r in store.runs(1)] == [third.id]
    assert [r.id for r in store.runs(10, kind="update")] == [second.id]
    last = store.last_run(RunKind.VULNERABLE)
    assert last is not None
    assert last.id == third.id
    assert store.last_run("run") is None


def test_unfinished_run_is_the_latest_if_it_did_not_finish(store: StateStore) -> None:
    assert store.unfinished_run() is None
    old = store.begin_run("update")
    unfinished = store.unfinished_run("update")
    assert unfinished is not None
    assert unfinished.id == old.id
    store.begin_run("vulnerable")  # another kind does not hide it
    unfinished = store.unfinished_run("update")
    assert unfinished is not None
    assert unfinished.id == old.id
    resumed = store.begin_run("update", resumed_from=old.id)
    store.finish_run(resumed.id, "succeeded", 0)
    assert store.unfinished_run("update") is None
    assert store.runs(1, kind="update")[0].resumed_from == old.id


def test_mark_interrupted_runs(state_path: Path, clock: TickingClock) -> None:
    # The "dead" process: began a run, started a build, never finished.
    dead = StateStore.open(state_path, clock=clock)
    plan_id = dead.save_plan({}, source="harbor", policy=None)
    lost = dead.begin_run("update", plan_id=plan_id)
    building = dead.build_started(lost.id, "library/a:1", step=0)
    pushed = dead.build_started(lost.id, "library/b:1", step=1)
    dead.build_pushed(pushed.id, digest=DIGEST)
    done = dead.begin_run("vulnerable")
    dead.finish_run(done.id, "succeeded", 0)
    dead.close()

    with StateStore.open(state_path, clock=clock) as store:
        mine = store.begin_run("update")
        assert store.mark_interrupted_runs() == [lost.id]
        detail = store.run(lost.id)
        assert detail.run.status is RunStatus.INTERRUPTED
        statuses = {b.id: b for b in detail.builds}
        assert statuses[building.id].status is BuildStatus.FAILED
        assert "interrupted" in (statuses[building.id].error or "")
        assert statuses[pushed.id].status is BuildStatus.PUSHED  # what was done stays done
        assert store.run(mine.id).run.status is RunStatus.RUNNING
        assert store.run(done.id).run.status is RunStatus.SUCCEEDED
        assert store.mark_interrupted_runs() == []
        with store.run_lock():  # holding the lock itself works the same way
            assert store.mark_interrupted_runs() == []


# -- verdicts and scans ----------------------------------------------------------------------


def test_run_detail_holds_verdicts_scans_and_builds(store: StateStore) -> None:
    run = store.begin_run("run")
    scanned_at = datetime(2026, 11, 27, 0, 0, 5, tzinfo=UTC)
    bad = _image("library/httpd:2.4", ScanSummary(
        ScanStatus.SUCCESS, counts=SeverityCounts(high=12, medium=3), scanner="Trivy",
        scanned_at=scanned_at, fixable=SeverityCounts(high=10), fixable_total=10))
    fresh = _image("library/alpine:latest", ScanSummary.not_scanned(), digest=None)
    assert store.record_verdicts(run.id, [
        (bad, Verdict(VerdictKind.VIOLATES, "high 12 > 0", ("high 12 > 0",))),
        (fresh, Verdict(VerdictKind.NOT_SCANNED, "never scanned")),
    ]) == 2
    assert store.record_scans(run.id, [bad, fresh], phase="before") == 2
    store.record_scan(run.id, bad.reference, phase=ScanPhase.AFTER,
                      summary=_scanned(medium=1), digest=OTHER_DIGEST)
    build = store.build_started(run.id, bad.reference, step=0)

    detail = store.run(run.id)
    assert detail.run.id == run.id
    assert [(v.image, v.digest, v.kind, v.reason) for v in detail.verdicts] == [
        ("library/httpd:2.4", DIGEST, "violates", "high 12 > 0"),
        ("library/alpine:latest", None, "not_scanned", "never scanned"),
    ]
    before = [s for s in detail.scans if s.phase is ScanPhase.BEFORE]
    assert [s.summary for s in before] == [bad.scan, fresh.scan]
    (after,) = [s for s in detail.scans if s.phase is ScanPhase.AFTER]
    assert after.digest == OTHER_DIGEST
    assert after.summary.counts == SeverityCounts(medium=1)
    assert [b.id for b in detail.builds] == [build.id]


def test_counts_are_queryable_json(store: StateStore) -> None:
    run = store.begin_run("vulnerable")
    store.record_scan(run.id, "library/a:1", phase="before", summary=_scanned(high=4))
    with sqlite3.connect(store.path) as connection:
        value = connection.execute(
            "SELECT json_extract(counts, '$.high') FROM scans").fetchone()[0]
    assert value == 4


def test_unknown_phase_is_refused(store: StateStore) -> None:
    run = store.begin_run("vulnerable")
    with pytest.raises(ValueError, match="phase 'during'"):
        store.record_scan(run.id, "library/a:1", phase="during", summary=_scanned())


# -- builds ----------------------------------------------------------------------------------


def test_build_lifecycle(store: StateStore, clock: TickingClock) -> None:
    plan_id = store.save_plan({}, source="harbor", policy=None)
    run = store.begin_run("update", plan_id=plan_id)
    pending = store.build_pending(run.id, "library/httpd:2.4", step=2)
    assert pending.status is BuildStatus.PENDING
    assert pending.started_at is None

    clock.step = timedelta(seconds=30)
    started = store.build_started(run.id, "library/httpd:2.4", step=2,
                                  log_path=Path("/logs/httpd.log"))
    assert started.id == pending.id  # the pending record became this build
    assert started.status is BuildStatus.BUILDING
    assert started.log_path == "/logs/httpd.log"
    assert started.plan_id == plan_id
    assert started.attempt == 1

    built = store.build_built(started.id)
    assert built.status is BuildStatus.BUILT
    assert built.finished_at is None
    pushed = store.build_pushed(started.id, digest=DIGEST)
    assert pushed.status is BuildStatus.PUSHED
    assert pushed.digest == DIGEST
    assert pushed.duration == 60.0  # two ticks of the clock after the start
    assert pushed.finished_at is not None

    with pytest.raises(ValueError, match="is pushed; it cannot become failed"):
        store.build_failed(started.id, error="late")
    with pytest.raises(ValueError, match="needs the pushed manifest's digest"):
        store.build_pushed(started.id, digest="")


def test_failed_and_skipped_builds(store: StateStore) -> None:
    run = store.begin_run("update")
    build = store.build_started(run.id, "library/a:1", step=0)
    failed = store.build_failed(build.id, error="x" * 10_000, duration=12.5)
    assert failed.status is BuildStatus.FAILED
    assert failed.duration == 12.5
    assert failed.error is not None
    assert len(failed.error) == 4000  # the tail of a long error, not the whole log
    assert failed.error.endswith("x")

    store.build_pending(run.id, "library/b:1", step=1)
    skipped = store.build_skipped(run.id, "library/b:1", step=1, reason="base image failed")
    assert skipped.status is BuildStatus.SKIPPED
    assert skipped.error == "base image failed"
    assert len(store.run(run.id).builds) == 2

    retry = store.build_started(run.id, "library/a:1", step=0)
    assert retry.id != build.id
    assert retry.attempt == 2


def test_pushed_images_across_two_runs_of_one_plan(store: StateStore) -> None:
    plan_id = store.save_plan({"images": ["a", "b", "c"]}, source="harbor", policy=None)
    other_plan = store.save_plan({"images": ["a"]}, source="harbor", policy=None)

    first = store.begin_run("update", plan_id=plan_id)
    a = store.build_started(first.id, "library/a:1", step=0)
    store.build_pushed(a.id, digest=DIGEST)
    b = store.build_started(first.id, "library/b:1", step=1)
    store.build_failed(b.id, error="network")
    store.build_started(first.id, "library/c:1", step=2)  # killed while building c
    assert store.pushed_images(plan_id) == {"library/a:1": DIGEST}

    second = store.begin_run("update", plan_id=plan_id, resumed_from=first.id)
    skipped = store.build_skipped(second.id, "library/a:1", step=0, reason="already pushed")
    assert skipped.plan_id == plan_id
    b2 = store.build_started(second.id, "library/b:1", step=1)
    assert b2.attempt == 2  # counted across the plan's runs
    store.build_pushed(b2.id, digest=OTHER_DIGEST)

    unrelated = store.begin_run("update", plan_id=other_plan)
    x = store.build_started(unrelated.id, "library/x:1", step=0)
    store.build_pushed(x.id, digest=DIGEST)

    assert store.pushed_images(plan_id) == {"library/a:1": DIGEST, "library/b:1": OTHER_DIGEST}
    assert store.pushed_images(other_plan) == {"library/x:1": DIGEST}
    assert store.pushed_images("plan-unknown") == {}


def test_builds_without_plan_count_attempts_within_the_run(store: StateStore) -> None:
    run = store.begin_run("run")
    b = store.build_started(run.id, ImageReference.parse("library/a:1"), step=0)
    assert b.image == "library/a:1"
    assert b.plan_id is None
    store.build_failed(b.id, error="boom")
    again = store.build_started(run.id, "library/a:1", step=0)
    assert again.attempt == 2
    other_run = store.begin_run("run")
    assert store.build_started(other_run.id, "library/a:1", step=0).attempt == 1


# -- trend -----------------------------------------------------------------------------------


def test_trend_sums_before_scans_per_run(state_path: Path) -> None:
    clock = TickingClock(datetime(2026, 11, 25, 23, 0, tzinfo=UTC), timedelta(days=1))
    with StateStore.open(state_path, clock=clock) as store:
        nights = []
        for night, highs in enumerate([(5, 2), (3, 2), (1, 0)]):
            run = store.begin_run("run")
            images = [
                _image("library/a:1", _scanned(high=highs[0], medium=1)),
                _image("library/b:1", _scanned(high=highs[1], low=night)),
                _image("library/c:1", ScanSummary(ScanStatus.ERROR)),
            ]
            store.record_scans(run.id, images, phase="before")
            # After-scans are verification, not the fleet's state: not summed.
            store.record_scan(run.id, "library/a:1", phase="after", summary=_scanned(high=99))
            nights.append(run)
        # The same image recorded twice in a run counts once, as last recorded.
        store.record_scan(nights[2].id, "library/a:1", phase="before",
                          summary=_scanned(high=1, medium=4))
        store.begin_run("update")  # no before scans: no point

        points = store.trend(10)
        assert [p.run_id for p in points] == [r.id for r in nights]  # oldest first
        assert [p.counts.high for p in points] == [7, 5, 1]
        assert [p.counts.medium for p in points] == [1, 1, 4]
        assert [p.counts.low for p in points] == [0, 1, 2]
        assert [(p.images, p.scanned) for p in points] == [(3, 2)] * 3
        assert [p.date.isoformat() for p in points] == [
            "2026-11-25", "2026-11-26", "2026-11-27"]

        assert [p.run_id for p in store.trend(2)] == [nights[1].id, nights[2].id]
        assert store.trend(10, kind="update") == []


def test_records_are_written_before_the_call_returns(store: StateStore) -> None:
    """Each write commits: another connection sees it at once (what resume relies on)."""
    plan_id = store.save_plan({}, source="harbor", policy=None)
    run = store.begin_run("update", plan_id=plan_id)
    build = store.build_started(run.id, "library/a:1", step=0)
    store.build_pushed(build.id, digest=DIGEST)
    with sqlite3.connect(store.path) as reader:
        rows = reader.execute("SELECT image, digest, status FROM builds").fetchall()
        options = reader.execute("SELECT options FROM runs").fetchone()[0]
    assert rows == [("library/a:1", DIGEST, "pushed")]
    assert json.loads(options) == {}


# -- a plan attached to a running run --------------------------------------------------------


def test_a_plan_attached_to_a_running_run_keys_its_pushes_for_resume(store: StateStore) -> None:
    run = store.begin_run(RunKind.RUN)
    plan_id = store.save_plan({"steps": []}, source="harbor", policy=None)

    attached = store.attach_plan(run.id, plan_id)
    build = store.build_started(run.id, "library/base:1.0", step=0)
    store.build_pushed(build.id, digest=DIGEST)

    assert attached.plan_id == plan_id
    assert store.pushed_images(plan_id) == {"library/base:1.0": DIGEST}
    other = store.save_plan({"steps": [1]}, source="harbor", policy=None)
    with pytest.raises(ValueError, match="already has plan"):
        store.attach_plan(run.id, other)
    store.finish_run(run.id, RunStatus.SUCCEEDED, 0)
    with pytest.raises(ValueError, match="not running"):
        store.attach_plan(run.id, plan_id)
    with pytest.raises(UnknownPlanError):
        store.attach_plan(run.id, "plan-nope")


def test_a_runs_fleet_totals_give_the_same_trend_as_summing_its_scans(
    store: StateStore,
) -> None:
    from careen.state.store import fleet_summary

    run = store.begin_run(RunKind.RUN)
    store.record_scans(run.id, [_image("library/a:1", _scanned(high=2, low=1)),
                                _image("library/b:1", _scanned(medium=4)),
                                _image("library/c:1", ScanSummary.not_scanned())],
                       phase=ScanPhase.BEFORE)
    [summed] = store.trend()
    totals = fleet_summary(summed.images, summed.scanned, summed.counts)
    assert totals == {"images": 3, "scanned": 2,
                      "counts": SeverityCounts(high=2, medium=4, low=1).as_dict()}
    assert store.trend(running={run.id: totals}) == [summed]
    # Stored with the finished run, the totals are read back rather than summed again:
    # a total that differs from the scans shows which one the trend used.
    store.finish_run(run.id, RunStatus.SUCCEEDED, 0,
                     {"fleet": fleet_summary(9, 9, SeverityCounts(critical=1))})
    [stored] = store.trend()
    assert (stored.images, stored.scanned, stored.counts) == (9, 9, SeverityCounts(critical=1))


def test_the_split_store_keeps_every_name_callers_used() -> None:
    """StateStore was one class in careen/state/store.py; it is now composed of one part per
    seam (runs, plans, scans, builds, trend over the shared database). Every public method of
    the old class, and every public name of the old module, is still where callers found it."""
    from careen.state import store

    methods = {
        "attach_plan", "begin_run", "build", "build_built", "build_failed", "build_pending",
        "build_pushed", "build_skipped", "build_started", "close", "finish_run", "holds_lock",
        "import_plan", "last_run", "latest_plan", "load_plan", "lock_path",
        "mark_interrupted_runs", "open", "path", "plans", "pushed_images", "record_scan",
        "record_scans", "record_verdict", "record_verdicts", "run", "run_lock", "runs",
        "save_plan", "trend", "unfinished_run",
    }
    names = {
        "BuildRecord", "BuildStatus", "PlanRecord", "RunDetail", "RunKind", "RunRecord",
        "RunStatus", "ScanPhase", "ScanRecord", "StateFileError", "StateLockedError",
        "StateStore", "TrendPoint", "UnknownPlanError", "UnknownRecordError", "UnknownRunError",
        "VerdictRecord", "default_state_path", "fleet_summary", "lock_path_for",
        "new_record_id", "utc_now",
    }

    assert methods <= {name for name in dir(StateStore) if not name.startswith("_")}
    assert names <= set(store.__all__)
    assert all(hasattr(store, name) for name in names)


def test_open_returns_the_whole_store(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.sqlite") as state:
        assert type(state) is StateStore
        run = state.begin_run(RunKind.RUN)
        assert state.runs()[0].id == run.id


def _committed_builds(state_path: Path) -> dict[str, str]:
    """What another connection sees: only committed rows."""
    with sqlite3.connect(state_path) as other:
        return dict(other.execute("SELECT image, status FROM builds").fetchall())


def test_grouped_writes_commit_together(store: StateStore, state_path: Path) -> None:
    run = store.begin_run("update")
    with store.grouped():
        first = store.build_started(run.id, "library/a:1", step=0)
        store.build_pushed(first.id, digest=DIGEST, duration=1.0)
        store.build_started(run.id, "library/b:1", step=1)
        # Inside the group nothing is committed yet, but the group reads its own writes.
        assert store.build(first.id).status is BuildStatus.PUSHED
        assert _committed_builds(state_path) == {}
    assert _committed_builds(state_path) == {"library/a:1": "pushed", "library/b:1": "building"}


def test_a_failed_write_in_a_group_is_undone_alone(store: StateStore, state_path: Path) -> None:
    run = store.begin_run("update")
    with store.grouped():
        first = store.build_started(run.id, "library/a:1", step=0)
        store.build_pushed(first.id, digest=DIGEST)
        with pytest.raises(ValueError, match="is pushed; it cannot become failed"):
            store.build_failed(first.id, error="late")
        with pytest.raises(UnknownRunError):
            store.build_started("no-such-run", "library/c:1", step=2)
        store.build_started(run.id, "library/b:1", step=1)
        with store.grouped():  # re-entrant: joins the outer group
            store.build_skipped(run.id, "library/d:1", step=3, reason="parent failed")
    assert _committed_builds(state_path) == {
        "library/a:1": "pushed", "library/b:1": "building", "library/d:1": "skipped"}


def test_an_error_in_a_group_records_none_of_it(store: StateStore, state_path: Path) -> None:
    run = store.begin_run("update")
    with pytest.raises(RuntimeError, match="stop"), store.grouped():
        store.build_started(run.id, "library/a:1", step=0)
        raise RuntimeError("stop")
    assert _committed_builds(state_path) == {}
    store.build_started(run.id, "library/b:1", step=1)  # and the store writes on as before
    assert _committed_builds(state_path) == {"library/b:1": "building"}


def test_build_seconds_are_the_latest_pushed_builds(store: StateStore) -> None:
    first = store.begin_run("update")
    a = store.build_started(first.id, "library/a:1", step=0)
    store.build_pushed(a.id, digest=DIGEST, duration=30.0)
    b = store.build_started(first.id, "library/b:1", step=1)
    store.build_failed(b.id, error="broke", duration=2.0)
    second = store.begin_run("update")
    again = store.build_started(second.id, "library/a:1", step=0)
    store.build_pushed(again.id, digest=OTHER_DIGEST, duration=45.0)
    store.build_started(second.id, "library/c:1", step=2)
    assert store.build_seconds([ImageReference.parse("library/a:1"), "library/b:1",
                                "library/c:1", "library/z:1"]) == {"library/a:1": 45.0}
    assert store.build_seconds(["library/b:1"]) == {}


def test_the_store_writes_from_another_thread(store: StateStore) -> None:
    """The executor writes build records from a thread of its own."""
    run = store.begin_run("update")
    written: list[BuildStatus] = []
    worker = threading.Thread(target=lambda: written.append(
        store.build_started(run.id, "library/a:1", step=0).status))
    worker.start()
    worker.join()
    assert written == [BuildStatus.BUILDING]


# -- a push under way (a crash between the registry taking it and its record) -----------------

IMAGE_ID = "sha256:" + "1" * 64


def test_a_push_under_way_is_on_disk_with_the_built_image_id(store: StateStore,
                                                             state_path: Path) -> None:
    plan_id = store.save_plan({}, source="harbor", policy=None)
    run = store.begin_run("update", plan_id=plan_id)
    started = store.build_started(run.id, "library/a:1", step=0)
    pushing = store.build_pushing(started.id, image_id=IMAGE_ID, duration=12.5)
    assert (pushing.status, pushing.image_id, pushing.duration) == (
        BuildStatus.PUSHING, IMAGE_ID, 12.5)
    assert pushing.finished_at is None and pushing.digest is None
    # Committed when the call returns: another connection (the resume's) reads it.
    with sqlite3.connect(state_path) as other:
        assert other.execute("SELECT status, image_id FROM builds WHERE id = ?",
                             (started.id,)).fetchone() == ("pushing", IMAGE_ID)
    pushed = store.build_pushed(started.id, digest=DIGEST, duration=13.0)
    assert (pushed.status, pushed.digest, pushed.image_id) == (
        BuildStatus.PUSHED, DIGEST, IMAGE_ID)


def test_a_push_under_way_needs_an_image_id_and_a_build_in_progress(store: StateStore) -> None:
    run = store.begin_run("update")
    started = store.build_started(run.id, "library/a:1", step=0)
    with pytest.raises(ValueError, match="image's id"):
        store.build_pushing(started.id, image_id="")
    store.build_failed(started.id, error="build failed")
    with pytest.raises(ValueError, match="cannot become pushing"):
        store.build_pushing(started.id, image_id=IMAGE_ID)


def test_pushes_in_doubt_are_the_plans_pushes_never_recorded_as_ended(
    store: StateStore,
) -> None:
    plan_id = store.save_plan({}, source="harbor", policy=None)
    other_plan = store.save_plan({}, source="harbor", policy=None)
    first = store.begin_run("update", plan_id=plan_id)
    a = store.build_started(first.id, "library/a:1", step=0)
    store.build_pushing(a.id, image_id=IMAGE_ID)  # killed during its push
    b = store.build_started(first.id, "library/b:1", step=1)
    store.build_pushing(b.id, image_id=IMAGE_ID)
    store.build_pushed(b.id, digest=DIGEST)  # ended: not in doubt
    c = store.build_started(first.id, "library/c:1", step=2)
    store.build_pushing(c.id, image_id=IMAGE_ID)
    second = store.begin_run("update", plan_id=plan_id)
    c2 = store.build_started(second.id, "library/c:1", step=2)
    store.build_pushed(c2.id, digest=DIGEST)  # pushed again by a later run: not in doubt
    elsewhere = store.begin_run("update", plan_id=other_plan)
    x = store.build_started(elsewhere.id, "library/x:1", step=0)
    store.build_pushing(x.id, image_id=IMAGE_ID)

    assert [(r.id, r.image, r.image_id) for r in store.pushes_in_doubt(plan_id)] == [
        (a.id, "library/a:1", IMAGE_ID)]
    assert [r.image for r in store.pushes_in_doubt(other_plan)] == ["library/x:1"]


def test_a_dead_runs_push_under_way_stays_in_doubt(state_path: Path,
                                                   clock: TickingClock) -> None:
    """Marking a dead run interrupted fails its unfinished builds, but not a push under way:
    whether it arrived is for the registry to say (the resume asks it)."""
    dead = StateStore.open(state_path, clock=clock)
    plan_id = dead.save_plan({}, source="harbor", policy=None)
    lost = dead.begin_run("update", plan_id=plan_id)
    pushing = dead.build_started(lost.id, "library/a:1", step=0)
    dead.build_pushing(pushing.id, image_id=IMAGE_ID)
    building = dead.build_started(lost.id, "library/b:1", step=1)
    dead.close()
    with StateStore.open(state_path, clock=clock) as store:
        assert store.mark_interrupted_runs() == [lost.id]
        assert store.build(building.id).status is BuildStatus.FAILED
        assert store.build(pushing.id).status is BuildStatus.PUSHING
        assert [r.id for r in store.pushes_in_doubt(plan_id)] == [pushing.id]


def test_a_group_syncs_the_log_only_for_a_write_that_asks_durability(
    store: StateStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A build's start and a push's start need no fsync (a killed Careen keeps them: WAL);
    a push does, announced or not. The group commits, then syncs the write-ahead log once
    if any of its writes asked for it."""
    syncs: list[int] = []
    real = store._sync_log
    monkeypatch.setattr(store, "_sync_log", lambda: (syncs.append(1), real())[-1])
    plan_id = store.save_plan({}, source="harbor", policy=None)
    run = store.begin_run("update", plan_id=plan_id)
    with store.grouped():
        a = store.build_started(run.id, "library/a:1", step=0)
        store.build_pushing(a.id, image_id=IMAGE_ID)
        b = store.build_started(run.id, "library/b:1", step=1)
    assert syncs == []
    with store.grouped():
        store.build_pushed(a.id, digest=DIGEST)  # announced: durable all the same
    assert syncs == [1]
    with store.grouped():
        store.build_pushed(b.id, digest=DIGEST)  # never announced: durable
    assert syncs == [1, 1]
    assert store.pushed_images(plan_id) == {"library/a:1": DIGEST, "library/b:1": DIGEST}
