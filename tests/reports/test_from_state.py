"""A past run read back from the state: the stored result as it was, or one rebuilt from the
records of an interrupted (or older) run, saying so."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careen.plan import Candidate, Plan, make_plan
from careen.policy import Policy
from careen.reference import ImageReference
from careen.reports.from_state import context_of_run, plan_of_run, result_of_run, trend_until
from careen.results import ImageResult, Outcome, RunResult
from careen.scan import ScanStatus, ScanSummary, SeverityCounts
from careen.state.store import (
    BuildRecord,
    BuildStatus,
    RunDetail,
    RunKind,
    RunRecord,
    RunStatus,
    ScanPhase,
    ScanRecord,
    StateStore,
)
from careen.tree.discover import discover_tree
from tests.export.plans import write_tree
from tests.reports.sample import sample_result

SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "schemas" / "run-result.schema.json"
REGISTRY = "registry.abc.com"
POLICY = Policy()
START = datetime(2017, 12, 8, 2, 0, 1, tzinfo=UTC)
BASE, HTTPD, JRE = "library/base:1.0", "library/httpd:2.4", "library/jre:8u191"
TOMCAT, GRAFANA, NGINX = "library/tomcat:8.5", "library/grafana:4.1.2", "library/nginx:latest"


# -- a state with a plan and a run (also used by tests/cli) --------------------------------------


class Clock:
    """Every call one second later: records get distinct times and ids."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def scan(**counts: int) -> ScanSummary:
    return ScanSummary(ScanStatus.SUCCESS, SeverityCounts(**counts), fixable_total=1,
                       scanner="Trivy", scanned_at=START - timedelta(hours=2))


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def tree_plan(root: Path) -> Plan:
    """The plan ``careen plan`` would make over the export tests' tree (base -> jre ->
    tomcat, httpd, nginx) for base and httpd breaking the policy, and grafana with no
    folder: base and httpd at level 0, jre (cascade) at 1, tomcat at 2, grafana skipped."""
    write_tree(root)
    tree = discover_tree(root, registry=REGISTRY)
    candidates = [Candidate(ref(BASE), "high 2 > 0", SeverityCounts(high=2)),
                  Candidate(ref(HTTPD), "medium 5 >= 3", SeverityCounts(medium=5)),
                  Candidate(ref(GRAFANA), "high 6 > 0", SeverityCounts(high=6))]
    return make_plan(candidates, tree, policy=str(POLICY.rule), now=START)


@dataclass(frozen=True)
class Recorded:
    state: Path
    plan_id: str
    run_id: str


def record_night(state: Path, plan: Plan, *, finish: bool, log_dir: Path,
                 options: dict[str, object] | None = None,
                 clock: Clock | None = None) -> Recorded:
    """A nightly run of ``plan``: verdicts and before scans of the fleet, base and httpd
    pushed and rescanned (base fixed, httpd improved), jre's build failed (its log on disk),
    tomcat skipped. ``finish=False`` leaves the run as a killed process leaves it: running,
    with httpd's rescan not recorded and tomcat's build still going."""
    log_dir.mkdir(parents=True, exist_ok=True)
    jre_log = log_dir / "jre.log"
    jre_log.write_text("".join(f"step {n}\n" for n in range(1, 101))
                       + "ERROR: <script>alert(1)</script> apt failed\n")
    with StateStore.open(state, clock=clock or Clock()) as store:
        plan_id = store.save_plan(plan.to_dict(), source="harbor", policy=plan.policy)
        run = store.begin_run(RunKind.RUN, plan_id=plan_id, tree_commit="0123abc",
                              options={"rescan": True, "dry_run": False, **(options or {})})
        for image, kind, reason in ((BASE, "violates", "high 2 > 0"),
                                    (HTTPD, "violates", "medium 5 >= 3"),
                                    (GRAFANA, "violates", "high 6 > 0"),
                                    (NGINX, "passes", "passes (high 0)"),
                                    ("library/alpine:latest", "not_scanned", "never scanned")):
            store.record_verdict(run.id, image, digest="sha256:" + "0" * 64, kind=kind,
                                 reason=reason)
        for image, summary in ((BASE, scan(high=2, low=3)), (HTTPD, scan(medium=5)),
                               (GRAFANA, scan(high=6)), (NGINX, scan(low=1)),
                               (JRE, scan(low=2)), (TOMCAT, scan(low=2))):
            store.record_scan(run.id, image, phase="before", summary=summary,
                              digest="sha256:" + "0" * 64)
        base = store.build_started(run.id, BASE, step=0)
        store.build_pushed(base.id, digest="sha256:" + "b" * 64, duration=12.5)
        httpd = store.build_started(run.id, HTTPD, step=1)
        store.build_pushed(httpd.id, digest="sha256:" + "c" * 64, duration=8.0)
        jre = store.build_started(run.id, JRE, step=2, log_path=jre_log)
        if finish:
            store.build_failed(jre.id, error="build failed", duration=3.0)
            store.build_skipped(run.id, TOMCAT, step=3,
                                reason=f"parent {JRE} failed")
            store.record_scan(run.id, HTTPD, phase="after", summary=scan(medium=4),
                              digest="sha256:" + "c" * 64)
        store.record_scan(run.id, BASE, phase="after", summary=scan(low=1),
                          digest="sha256:" + "b" * 64)
        if finish:
            store.finish_run(run.id, RunStatus.FAILED, 1)
    return Recorded(state, plan_id, run.id)


# -- tests ---------------------------------------------------------------------------------------


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    return tree_plan(tmp_path / "tree")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def by_image(result: RunResult) -> dict[str, ImageResult]:
    return {image.image.short: image for image in result.images}


def rebuilt(recorded: Recorded, *, with_plan: bool = True,
            policy: Policy = POLICY) -> RunResult:
    with StateStore.open(recorded.state) as store:
        detail = store.run(recorded.run_id)
        return result_of_run(detail, plan=plan_of_run(store, detail) if with_plan else None,
                             policy=policy)


def test_the_plan_is_what_the_tests_expect(plan: Plan) -> None:
    assert [[s.image.short for s in level] for level in plan.levels] == [
        [BASE, HTTPD], [JRE], [TOMCAT]]
    assert [s.image.short for s in plan.skipped] == [GRAFANA]


def test_a_stored_result_is_returned_as_it_was(tmp_path: Path, plan: Plan) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=True,
                            log_dir=tmp_path / "logs")
    stored = sample_result()
    with StateStore.open(recorded.state) as store:
        run = store.begin_run(RunKind.RUN)
        store.finish_run(run.id, RunStatus.FAILED, 1, {"result": stored.to_dict()})
        result = result_of_run(store.run(run.id), plan=None, policy=POLICY)
    assert result.to_dict() == stored.to_dict()
    assert "notes" not in result.extra and "warnings" not in result.extra


def test_an_unreadable_stored_result_is_rebuilt_and_says_so(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.sqlite", clock=Clock()) as store:
        run = store.begin_run(RunKind.RUN)
        store.finish_run(run.id, RunStatus.SUCCEEDED, 0,
                         {"result": {"schema_version": 99, "run_id": run.id}})
        result = result_of_run(store.run(run.id), plan=None, policy=POLICY)
    assert result.run_id == run.id
    assert any("unreadable" in text and "99" in text for text in result.extra["warnings"])


def test_a_finished_run_without_document_is_rebuilt_from_its_records(
        tmp_path: Path, plan: Plan, validator: jsonschema.Validator) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=True,
                            log_dir=tmp_path / "logs")
    result = rebuilt(recorded)
    images = by_image(result)
    assert [i.image.short for i in result.images] == [BASE, HTTPD, JRE, TOMCAT, GRAFANA]
    assert images[BASE].outcome is Outcome.FIXED
    assert images[BASE].note == "passes the policy now (high 2 -> 0, low 3 -> 1)"
    assert images[BASE].after_digest == "sha256:" + "b" * 64
    assert images[BASE].before_digest == "sha256:" + "0" * 64
    assert images[BASE].duration == 12.5 and images[BASE].level == 0
    assert images[HTTPD].outcome is Outcome.IMPROVED
    assert images[JRE].outcome is Outcome.FAILED and images[JRE].note == "build failed"
    assert images[JRE].parents == (ref(BASE),) and not images[JRE].selected
    assert images[TOMCAT].outcome is Outcome.SKIPPED
    assert images[TOMCAT].note == f"parent {JRE} failed"
    assert images[GRAFANA].outcome is Outcome.SKIPPED and images[GRAFANA].selected
    assert images[GRAFANA].before == scan(high=6)
    assert result.unscanned == (("library/alpine:latest", "never scanned"),)
    assert result.judged == 5 and result.failed
    assert result.tree_commit == "0123abc" and result.plan_id == recorded.plan_id
    assert result.policy == str(POLICY.rule)
    assert result.extra["rebuilt_from_state"] is True
    assert result.extra["run_status"] == "failed"
    assert result.extra["warnings"] == []
    validator.validate(result.to_dict())


def test_a_failed_build_carries_the_tail_of_its_log(tmp_path: Path, plan: Plan) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=True,
                            log_dir=tmp_path / "logs")
    jre = by_image(rebuilt(recorded))[JRE]
    assert len(jre.log_tail) == 40
    assert jre.log_tail[0] == "step 62"
    assert jre.log_tail[-1] == "ERROR: <script>alert(1)</script> apt failed"
    assert jre.log_path == str(tmp_path / "logs" / "jre.log")


def test_without_the_log_file_the_tail_is_the_recorded_error(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.sqlite", clock=Clock()) as store:
        run = store.begin_run(RunKind.UPDATE)
        build = store.build_started(run.id, JRE, step=0, log_path=tmp_path / "gone.log")
        store.build_failed(build.id, error="build failed\nERROR: step 3/4\nexit 1")
        store.finish_run(run.id, RunStatus.FAILED, 1)
        result = result_of_run(store.run(run.id), plan=None, policy=POLICY)
    (jre,) = result.images
    assert jre.outcome is Outcome.FAILED and jre.note == "build failed"
    assert jre.log_tail == ("build failed", "ERROR: step 3/4", "exit 1")
    assert jre.level is None
    assert jre.reason == "in the run's list to rebuild"


def test_a_running_run_shows_unfinished_work_as_not_done(tmp_path: Path, plan: Plan) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=False,
                            log_dir=tmp_path / "logs")
    result = rebuilt(recorded)
    images = by_image(result)
    assert images[BASE].outcome is Outcome.FIXED
    # Pushed, but the (live or dead) run has not recorded a rescan: never "fixed".
    assert images[HTTPD].outcome is Outcome.RESCAN_MISSING
    assert "still marked running" in images[HTTPD].note
    assert images[JRE].outcome is Outcome.SKIPPED
    assert images[JRE].note.startswith("unfinished (building)")
    assert images[TOMCAT].outcome is Outcome.SKIPPED
    assert images[TOMCAT].note.startswith("not built yet")
    assert result.extra["run_status"] == "running"
    assert any("still marked running" in text for text in result.extra["warnings"])
    # No finish time recorded: the last thing the run did.
    assert result.finished_at > result.started_at


def test_an_interrupted_run_says_so_and_fails_its_unfinished_builds(
        tmp_path: Path, plan: Plan, validator: jsonschema.Validator) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=False,
                            log_dir=tmp_path / "logs")
    with StateStore.open(recorded.state) as store:  # another process: the next run
        assert store.mark_interrupted_runs() == [recorded.run_id]
    result = rebuilt(recorded)
    images = by_image(result)
    assert images[JRE].outcome is Outcome.FAILED
    assert images[JRE].note.startswith("interrupted: the careen process ended")
    assert images[JRE].log_tail[-1].startswith("ERROR:")
    assert images[TOMCAT].outcome is Outcome.SKIPPED
    assert images[TOMCAT].note.startswith("not reached: the run was interrupted")
    assert images[HTTPD].outcome is Outcome.RESCAN_MISSING
    assert images[HTTPD].note.endswith("the run was interrupted before its rescan")
    assert any("interrupted" in text for text in result.extra["warnings"])
    assert any("no result document" in text for text in result.extra["notes"])
    assert result.failed
    validator.validate(result.to_dict())


def test_an_interrupted_run_not_marked_yet_still_fails_builds_it_had_started(
        tmp_path: Path, plan: Plan) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=False,
                            log_dir=tmp_path / "logs")
    with StateStore.open(recorded.state) as store:
        store.finish_run(recorded.run_id, RunStatus.INTERRUPTED, 130)  # stopped by a signal
    jre = by_image(rebuilt(recorded))[JRE]
    assert jre.outcome is Outcome.FAILED
    assert jre.note == "unfinished (building): the run ended before this build finished"


def test_without_the_rescan_a_pushed_image_is_rebuilt_not_judged(tmp_path: Path,
                                                                   plan: Plan) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=False,
                            log_dir=tmp_path / "logs", options={"rescan": False})
    httpd = by_image(rebuilt(recorded))[HTTPD]
    assert httpd.outcome is Outcome.REBUILT
    assert "did not ask Harbor to rescan" in httpd.note


def test_rescans_are_judged_by_the_policy_given(tmp_path: Path, plan: Plan) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=True,
                            log_dir=tmp_path / "logs")
    strict = Policy.from_settings("low > 0")
    result = rebuilt(recorded, policy=strict)
    assert by_image(result)[BASE].outcome is Outcome.IMPROVED  # low 3 -> 1, still > 0
    assert any("low > 0" in text and "the plan was made under" in text
               for text in result.extra["warnings"])


def test_without_the_plan_builds_and_violations_are_still_reported(tmp_path: Path,
                                                                     plan: Plan) -> None:
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=True,
                            log_dir=tmp_path / "logs")
    result = rebuilt(recorded, with_plan=False)
    assert [i.image.short for i in result.images] == [BASE, HTTPD, JRE, TOMCAT, GRAFANA]
    images = by_image(result)
    assert all(image.level is None for image in result.images)
    assert images[BASE].outcome is Outcome.FIXED and images[BASE].reason == "high 2 > 0"
    assert images[GRAFANA].outcome is Outcome.SKIPPED
    assert images[GRAFANA].note == "breaks the policy; this run recorded no build of it"
    assert any(f"plan {recorded.plan_id} was not given" in n for n in result.extra["notes"])


def test_a_shard_run_reports_only_its_part_of_the_plan(tmp_path: Path, plan: Plan) -> None:
    with StateStore.open(tmp_path / "state.sqlite", clock=Clock()) as store:
        plan_id = store.save_plan(plan.to_dict(), source="harbor", policy=plan.policy)
        run = store.begin_run(RunKind.UPDATE, plan_id=plan_id, options={"shard": "2/2"})
        store.finish_run(run.id, RunStatus.SUCCEEDED, 0)
        detail = store.run(run.id)
        result = result_of_run(detail, plan=plan_of_run(store, detail), policy=POLICY)
    # Level 0 sorted by name: base to shard 1, httpd to shard 2; skipped images: shard 1's.
    assert [i.image.short for i in result.images] == [HTTPD]
    assert any("shard 2/2" in note for note in result.extra["notes"])


def test_an_only_run_reports_its_image(tmp_path: Path, plan: Plan) -> None:
    with StateStore.open(tmp_path / "state.sqlite", clock=Clock()) as store:
        plan_id = store.save_plan(plan.to_dict(), source="harbor", policy=plan.policy)
        run = store.begin_run(RunKind.UPDATE, plan_id=plan_id, options={"only": ["jre:8u191"]})
        build = store.build_started(run.id, JRE, step=2)
        store.build_pushed(build.id, digest="sha256:" + "d" * 64)
        store.finish_run(run.id, RunStatus.SUCCEEDED, 0)
        detail = store.run(run.id)
        result = result_of_run(detail, plan=plan_of_run(store, detail), policy=POLICY)
    (jre,) = result.images
    assert jre.image.short == JRE and jre.outcome is Outcome.REBUILT and jre.level == 1


def test_a_dry_run_plans_its_steps(tmp_path: Path, plan: Plan) -> None:
    with StateStore.open(tmp_path / "state.sqlite", clock=Clock()) as store:
        plan_id = store.save_plan(plan.to_dict(), source="harbor", policy=plan.policy)
        run = store.begin_run(RunKind.RUN, plan_id=plan_id, options={"dry_run": True})
        store.finish_run(run.id, RunStatus.SUCCEEDED, 0)
        detail = store.run(run.id)
        result = result_of_run(detail, plan=plan_of_run(store, detail), policy=POLICY)
    assert result.dry_run
    assert {i.image.short: i.outcome for i in result.images} == {
        BASE: Outcome.PLANNED, HTTPD: Outcome.PLANNED, JRE: Outcome.PLANNED,
        TOMCAT: Outcome.PLANNED, GRAFANA: Outcome.SKIPPED}


def test_context_holds_the_plan_and_the_trend_up_to_the_run(tmp_path: Path,
                                                             plan: Plan) -> None:
    clock = Clock()
    first = record_night(tmp_path / "state.sqlite", plan, finish=True,
                         log_dir=tmp_path / "logs", clock=clock)
    second = record_night(tmp_path / "state.sqlite", plan, finish=True,
                          log_dir=tmp_path / "logs", clock=clock)
    with StateStore.open(first.state) as store:
        old = context_of_run(store, store.run(first.run_id), title="Nightly")
        new = context_of_run(store, store.run(second.run_id))
        assert [p.run_id for p in trend_until(store, store.run(second.run_id).run, 1)] == [
            second.run_id]
        # The newer run fills the store's latest night: the window widens past it.
        assert [p.run_id for p in trend_until(store, store.run(first.run_id).run, 1)] == [
            first.run_id]
        assert trend_until(store, store.run(first.run_id).run, 0) == []
    assert [p.run_id for p in old.trend] == [first.run_id]
    assert [p.run_id for p in new.trend] == [first.run_id, second.run_id]
    assert old.trend[0].counts == SeverityCounts(high=8, medium=5, low=8)
    assert old.title == "Nightly"
    assert old.plan is not None and old.plan.id == first.plan_id
    assert [s.image for s in old.plan.steps] == [s.image for s in plan.steps]


def test_context_of_a_run_without_plan(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.sqlite", clock=Clock()) as store:
        run = store.begin_run(RunKind.VULNERABLE)
        detail = store.run(run.id)
        context = context_of_run(store, detail)
    assert context.plan is None and list(context.trend) == []


# -- any mix of records --------------------------------------------------------------------------

BUILD_STATES = (None, *BuildStatus)
DIGEST = "sha256:" + "e" * 64


@st.composite
def details(draw: st.DrawFn, plan: Plan) -> RunDetail:
    """A run of ``plan`` in any state, each step with any build record (or none) and any
    rescan (or none): what a crash at any moment, or any bug upstream, may leave."""
    status = draw(st.sampled_from(RunStatus))
    kind = draw(st.sampled_from(RunKind))
    finished = START + timedelta(minutes=5) if status in (RunStatus.SUCCEEDED,
                                                         RunStatus.FAILED) else None
    run = RunRecord("run-20171208-020001-aaaa", kind, status, START, finished, None, None,
                    "plan-20171208-020001-beef", None, None,
                    {"rescan": draw(st.booleans())}, None)
    builds, scans = [], []
    for index, step in enumerate(plan.steps):
        image = step.image.short
        scans.append(ScanRecord(run.id, image, DIGEST, ScanPhase.BEFORE,
                                scan(high=draw(st.integers(0, 3)))))
        state = draw(st.sampled_from(BUILD_STATES))
        if state is None:
            continue
        builds.append(BuildRecord(
            index, run.id, run.plan_id, image, index, 1, state, START, None, None,
            DIGEST if state is BuildStatus.PUSHED else None, None,
            "failed\nlast line" if state in (BuildStatus.FAILED, BuildStatus.SKIPPED) else None))
        if state is BuildStatus.PUSHED and draw(st.booleans()):
            scans.append(ScanRecord(run.id, image, DIGEST, ScanPhase.AFTER,
                                    scan(high=draw(st.integers(0, 3)))))
    return RunDetail(run, (), tuple(scans), tuple(builds))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_run_gives_a_valid_honest_result(plan: Plan, validator: jsonschema.Validator,
                                             data: st.DataObject) -> None:
    detail = data.draw(details(plan))
    result = result_of_run(detail, plan=plan, policy=POLICY)
    validator.validate(result.to_dict())
    shown = [image.image.short for image in result.images]
    assert sorted(shown) == sorted([s.image.short for s in plan.steps]
                                   + [s.image.short for s in plan.skipped])
    builds = {b.image: b for b in detail.builds}
    rescanned = {s.image for s in detail.scans if s.phase is ScanPhase.AFTER}
    for image in result.images:
        build = builds.get(image.image.short)
        if image.outcome in (Outcome.FIXED, Outcome.IMPROVED, Outcome.NOT_HELPED):
            assert build is not None and build.status is BuildStatus.PUSHED
            assert image.image.short in rescanned
        if image.outcome is Outcome.FAILED:
            assert build is not None and (build.status is BuildStatus.FAILED or (
                build.status in (BuildStatus.BUILDING, BuildStatus.BUILT, BuildStatus.PUSHING)
                and detail.run.status is not RunStatus.RUNNING))
    if not detail.run.finished:
        assert result.extra["warnings"]


def test_an_interrupted_run_keeps_the_cves_it_read(tmp_path: Path, plan: Plan,
                                                   validator: jsonschema.Validator) -> None:
    """The CVE lists a run kept in the state (issue 14) come back in its rebuilt result."""
    from careen.details import Finding
    from careen.scan import Severity
    from careen.state.details import DetailsStore
    from careen.state.store import ScanPhase

    openssl = Finding("CVE-2017-3735", "openssl", "1.0.2k-r0", Severity.HIGH, "1.0.2m-r0")
    recorded = record_night(tmp_path / "state.sqlite", plan, finish=False,
                            log_dir=tmp_path / "logs")
    with StateStore.open(recorded.state) as store:
        DetailsStore(store).record(recorded.run_id, ScanPhase.BEFORE,
                                   {ref(BASE): (openssl,), ref(GRAFANA): (openssl,)})
        DetailsStore(store).record(recorded.run_id, ScanPhase.AFTER, {ref(BASE): ()})
        store.mark_interrupted_runs()
        detail = store.run(recorded.run_id)
        result = result_of_run(detail, plan=plan_of_run(store, detail), policy=POLICY,
                               store=store)
    images = by_image(result)
    assert images[BASE].cves_before == (openssl,) and images[BASE].cves_after == ()
    changes = images[BASE].cve_changes
    assert changes is not None and changes.fixed == (openssl,)
    assert images[GRAFANA].cves_before == (openssl,)
    assert images[HTTPD].cves_before is None
    validator.validate(result.to_dict())
