"""A past run's result and report context, read back from the state database.

``careen run`` stores its whole result document in the run's summary (``{"result": ...}``):
that document is the run as it was reported that night, and :func:`result_of_run` returns it
as it is. A run that stored none — interrupted (killed, rebooted), still running, or a kind of
run that does not write one — is rebuilt from what the state recorded as it happened: the
policy's verdicts, the ``before``/``after`` scans and the build records, with the plan for
levels, parents and skipped images. Such a result says how it was made in
``extra["notes"]`` and what makes it incomplete (an interrupted run, a run still going) in
``extra["warnings"]`` — the CLI shows both — and in each unfinished image's note, so that a
report never passes an interrupted night off as a complete one.

What a rebuilt result cannot know it does not invent: without the plan there are no levels
or parents; a pushed image whose rescan was never recorded is "rescan missing", not fixed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from careen.errors import CareenError, InputFileError
from careen.plan import Plan, PlanStep, SkippedImage, StepReason
from careen.policy import UNSCANNED_KINDS, Policy, VerdictKind
from careen.reference import ImageReference
from careen.reports.interface import DEFAULT_LOG_TAIL_LINES, ReportContext
from careen.reports.json_report import result_from_dict
from careen.results import ImageResult, Outcome, RunResult, judge_rebuild, sort_results
from careen.scan import ScanSummary
from careen.shard import parse_shard, shard
from careen.state.details import DetailsStore
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
    TrendPoint,
    VerdictRecord,
)
from careen.tree.discover import image_key

#: Key of the run summary that holds ``RunResult.to_dict()`` (written by ``careen run``).
RESULT_KEY = "result"
#: Nights of trend a report shows.
DEFAULT_TREND_NIGHTS = 30
#: Bytes read from the end of a build log for its tail: enough for the lines shown, bounded
#: whatever the log's size.
LOG_TAIL_BYTES = 64 * 1024

_UNSCANNED_VALUES = frozenset(kind.value for kind in UNSCANNED_KINDS)


def result_of_run(detail: RunDetail, *, plan: Plan | None, policy: Policy,
                  log_tail_lines: int = DEFAULT_LOG_TAIL_LINES,
                  store: StateStore | None = None) -> RunResult:
    """The result of the run ``detail`` (:meth:`StateStore.run`): the document it stored,
    else one rebuilt from its records. ``plan`` is the run's plan if it had one
    (:func:`plan_of_run`); ``policy`` judges the rebuilt images' rescans (the stored document
    was judged by the run itself); ``store``, when given, gives a rebuilt result the CVE
    lists the run kept (:class:`careen.state.details.DetailsStore`)."""
    stored = _stored_result(detail.run)
    if isinstance(stored, RunResult):
        return stored
    warnings = [] if stored is None else [stored]
    rebuilt = _rebuild(detail, plan, policy, warnings, log_tail_lines)
    return rebuilt if store is None else _with_kept_cves(rebuilt, DetailsStore(store))


def _with_kept_cves(result: RunResult, details: DetailsStore) -> RunResult:
    before = details.findings(result.run_id, ScanPhase.BEFORE)
    after = details.findings(result.run_id, ScanPhase.AFTER)
    return replace(result, images=tuple(
        replace(image, cves_before=before.get(image.image.short),
                cves_after=after.get(image.image.short)) for image in result.images))


def plan_of_run(store: StateStore, detail: RunDetail) -> Plan | None:
    """The plan the run executed, if it had one. A plan stored by another Careen version
    raises :class:`careen.errors.UsageError` (from :meth:`Plan.from_dict`)."""
    plan_id = detail.run.plan_id
    if plan_id is None:
        return None
    return Plan.from_dict(store.load_plan(plan_id).body, plan_id=plan_id)


def context_of_run(store: StateStore, detail: RunDetail, plan: Plan | None = None, *,
                   title: str = "Careen run", trend_nights: int = DEFAULT_TREND_NIGHTS,
                   log_tail_lines: int = DEFAULT_LOG_TAIL_LINES) -> ReportContext:
    """What the reports of ``detail`` show beside it: the fleet's trend up to that run (the
    latest ``trend_nights`` runs with ``before`` scans, none after it) and its plan (``plan``,
    else loaded from the store when the run has one)."""
    if plan is None:
        plan = plan_of_run(store, detail)
    return ReportContext(trend=trend_until(store, detail.run, trend_nights), plan=plan,
                         title=title, log_tail_lines=log_tail_lines)


def trend_until(store: StateStore, run: RunRecord,
                nights: int = DEFAULT_TREND_NIGHTS) -> list[TrendPoint]:
    """:meth:`StateStore.trend` as it was when ``run`` started: an old run's report shows the
    nights before it, not the ones after."""
    if nights < 1:
        return []
    # Runs newer than this one take places in the store's "latest N": widen the window until
    # it holds ``nights`` points up to the run, or the whole history.
    limit = nights
    while True:
        points = store.trend(limit)
        earlier = [p for p in points if p.started_at <= run.started_at]
        if len(earlier) >= nights or len(points) < limit:
            return earlier[-nights:]
        limit *= 2


# -- the stored document -------------------------------------------------------------------------


def _stored_result(run: RunRecord) -> RunResult | str | None:
    """The stored result; else None when there is none, or a note saying why the stored
    one cannot be read (the result is then rebuilt)."""
    summary = run.summary
    if not isinstance(summary, Mapping) or RESULT_KEY not in summary:
        return None
    try:
        return result_from_dict(summary[RESULT_KEY], source=f"the result stored with run {run.id}")
    except InputFileError as error:
        return f"the result document stored with the run is unreadable ({error}); rebuilt " \
               "from the state's records instead"


# -- rebuilding from the records ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Records:
    """What the state recorded about one image in the run (the last record of each kind)."""

    verdict: VerdictRecord | None
    before: ScanRecord | None
    after: ScanRecord | None
    build: BuildRecord | None


_R = TypeVar("_R", VerdictRecord, ScanRecord, BuildRecord)


def _last_by_image(records: Iterable[_R]) -> dict[str, _R]:
    latest: dict[str, _R] = {}
    for record in records:  # the store returns them in the order they were written
        latest[record.image] = record
    return latest


def _rebuild(detail: RunDetail, plan: Plan | None, policy: Policy, warnings: list[str],
             log_tail_lines: int) -> RunResult:
    run = detail.run
    verdicts = _last_by_image(detail.verdicts)
    before = _last_by_image(s for s in detail.scans if s.phase is ScanPhase.BEFORE)
    after = _last_by_image(s for s in detail.scans if s.phase is ScanPhase.AFTER)
    builds = _last_by_image(detail.builds)
    rebuild = _Rebuild(run, policy, log_tail_lines)

    def records(image: str) -> _Records:
        return _Records(verdicts.get(image), before.get(image), after.get(image),
                        builds.get(image))

    notes = ["rebuilt from the state's records: the run stored no result document"]
    warnings += _status_warnings(run)
    if run.plan_id is not None and plan is None:
        notes.append(f"the run's plan {run.plan_id} was not given: levels and parents unknown")
    if plan is not None and plan.policy and plan.policy != str(policy.rule):
        warnings.append(f"rescans judged by the policy '{policy.rule}'; the plan was made "
                        f"under '{plan.policy}'")

    results: list[ImageResult] = []
    seen: set[str] = set()
    if plan is not None:
        steps, skipped_images, part = _part_of_plan(plan, run.options)
        if part:
            notes.append(part)
        for step in steps:
            key = step.image.short
            seen.add(key)
            results.append(rebuild.step(step, records(key)))
        for skipped in skipped_images:
            key = skipped.image.short
            if key in seen:
                continue
            seen.add(key)
            mine = records(key)
            results.append(ImageResult(
                skipped.image, Outcome.SKIPPED, skipped.detail,
                note=f"not rebuilt ({skipped.reason.value})", selected=True,
                before=_summary(mine.before), before_digest=_before_digest(mine),
            ))
    unplanned: list[ImageResult] = []
    for build in sorted(builds.values(), key=lambda b: (b.step, b.id)):
        if build.image in seen:
            continue
        seen.add(build.image)
        image = _parse(build.image, warnings)
        if image is not None:
            unplanned.append(rebuild.unplanned(image, records(build.image)))
    for verdict in verdicts.values():
        if verdict.image in seen or verdict.kind != VerdictKind.VIOLATES.value:
            continue
        seen.add(verdict.image)
        image = _parse(verdict.image, warnings)
        if image is not None:
            mine = records(verdict.image)
            unplanned.append(ImageResult(
                image, Outcome.SKIPPED, verdict.reason,
                note="breaks the policy; this run recorded no build of it",
                before=_summary(mine.before), before_digest=_before_digest(mine)))
    ordered = (*sort_results(results), *unplanned) if plan is not None else tuple(unplanned)
    return RunResult(
        run_id=run.id, started_at=run.started_at, finished_at=_finished_at(run, detail.builds),
        policy=str(policy.rule), images=ordered, plan_id=run.plan_id,
        tree_commit=run.tree_commit or (plan.tree_commit if plan is not None else None),
        harbor=_option_text(run.options, "harbor"),
        registry=_option_text(run.options, "registry"),
        unscanned=tuple((v.image, v.reason) for v in verdicts.values()
                        if v.kind in _UNSCANNED_VALUES),
        judged=len(verdicts) or len(before), dry_run=_dry_run(run.options),
        extra={"rebuilt_from_state": True, "run_status": run.status.value, "notes": notes,
               "warnings": warnings},
    )


class _Rebuild:
    """Turns one image's records into its :class:`ImageResult`."""

    def __init__(self, run: RunRecord, policy: Policy, log_tail_lines: int) -> None:
        self.run = run
        self.policy = policy
        self.log_tail_lines = log_tail_lines
        #: Only ``careen run`` rescans what it pushed (unless ``[run] rescan`` is off).
        self.rescans = run.kind is RunKind.RUN and run.options.get("rescan") is not False

    def step(self, step: PlanStep, records: _Records) -> ImageResult:
        selected = step.reason is StepReason.SELECTED
        return self._result(step.image, step.detail, records, level=step.level,
                            parents=step.parents, selected=selected)

    def unplanned(self, image: ImageReference, records: _Records) -> ImageResult:
        verdict = records.verdict
        reason = verdict.reason if verdict is not None else "in the run's list to rebuild"
        selected = verdict is None or verdict.kind == VerdictKind.VIOLATES.value
        return self._result(image, reason, records, level=None, parents=(), selected=selected)

    def _result(self, image: ImageReference, reason: str, records: _Records, *,
                level: int | None, parents: tuple[ImageReference, ...],
                selected: bool) -> ImageResult:
        build = records.build
        before, after = _summary(records.before), _summary(records.after)
        before_digest = _before_digest(records)
        after_digest = (records.after.digest if records.after is not None else None) or (
            build.digest if build is not None else None)
        outcome, note = self._outcome(image, build, before, after, before_digest, after_digest)
        tail: tuple[str, ...] = ()
        if build is not None and outcome is Outcome.FAILED:
            tail = _log_tail(build, self.log_tail_lines)
        return ImageResult(
            image, outcome, reason, note=note, level=level, parents=parents, selected=selected,
            before=before, before_digest=before_digest,
            after=after if build is not None else None,
            after_digest=after_digest if build is not None else None,
            duration=build.duration if build is not None else None,
            log_path=build.log_path if build is not None else None, log_tail=tail,
        )

    def _outcome(self, image: ImageReference, build: BuildRecord | None,
                 before: ScanSummary | None, after: ScanSummary | None,
                 before_digest: str | None, after_digest: str | None) -> tuple[Outcome, str]:
        status = self.run.status
        if build is None:
            if _dry_run(self.run.options):
                return Outcome.PLANNED, "would be rebuilt (dry run)"
            if status is RunStatus.INTERRUPTED:
                return Outcome.SKIPPED, "not reached: the run was interrupted before building it"
            if status is RunStatus.RUNNING:
                return Outcome.SKIPPED, "not built yet: the run is still marked running"
            return Outcome.SKIPPED, "not built: the run recorded no build of it"
        if build.status is BuildStatus.PUSHED:
            if after is not None or self.rescans:
                outcome, note = judge_rebuild(self.policy, image, before, after,
                                              before_digest=before_digest,
                                              after_digest=after_digest)
                if after is None and status is RunStatus.INTERRUPTED:
                    note += "; the run was interrupted before its rescan"
                elif after is None and status is RunStatus.RUNNING:
                    note += "; the run is still marked running and has not rescanned it"
                return outcome, note
            return Outcome.REBUILT, "pushed; this run did not ask Harbor to rescan it"
        if build.status is BuildStatus.FAILED:
            return Outcome.FAILED, _first_line(build.error) or "the build or the push failed"
        if build.status is BuildStatus.SKIPPED:
            return Outcome.SKIPPED, _first_line(build.error) or "skipped by the run"
        # Pending, building or built: the run never recorded how this build ended.
        if status is RunStatus.RUNNING:
            return Outcome.SKIPPED, (f"unfinished ({build.status.value}): the run is still "
                                     "marked running")
        if build.status is BuildStatus.PENDING:
            return Outcome.SKIPPED, "unfinished: the run ended before starting this build"
        return Outcome.FAILED, (f"unfinished ({build.status.value}): the run ended before "
                                "this build finished")


def _status_warnings(run: RunRecord) -> list[str]:
    if run.status is RunStatus.INTERRUPTED:
        return ["the run was interrupted (its process ended before it finished): builds it "
                "had started are failed, images it had not reached are skipped"]
    if run.status is RunStatus.RUNNING:
        return ["the run is still marked running: it is in progress, or its process died "
                "and the next 'careen run' will mark it interrupted; unfinished builds are "
                "shown as skipped"]
    return []


def _part_of_plan(plan: Plan, options: Mapping[str, Any]
                  ) -> tuple[tuple[PlanStep, ...], tuple[SkippedImage, ...], str | None]:
    """The steps and skipped images of the plan this run was given: all of them, or those
    of its ``--shard K/N`` or ``--only IMAGE`` (the run's options ``shard``, ``only``), with
    a note naming the part."""
    spec = options.get("shard")
    if isinstance(spec, str):
        try:
            k, n = parse_shard(spec)
        except CareenError:
            return plan.steps, plan.skipped, None
        part = shard(plan, k, n)
        return part.steps, part.skipped, f"this run was shard {k}/{n} of plan {plan.id}"
    only = options.get("only")
    names = [only] if isinstance(only, str) else (
        [item for item in only if isinstance(item, str)] if isinstance(only, list) else [])
    wanted = {key for key in map(_key_of, names) if key is not None}
    if wanted:
        steps = tuple(step for step in plan.steps if step.image in wanted)
        shown = ", ".join(sorted(key.short for key in wanted))
        return steps, (), f"this run built only {shown} of plan {plan.id}"
    return plan.steps, plan.skipped, None


def _key_of(text: str) -> ImageReference | None:
    try:
        return image_key(ImageReference.parse_short(text))
    except CareenError:
        return None


def _parse(text: str, warnings: list[str]) -> ImageReference | None:
    try:
        return ImageReference.parse_short(text)
    except CareenError:
        warnings.append(f"a record names {text!r}, which is not an image reference; left out")
        return None


def _summary(record: ScanRecord | None) -> ScanSummary | None:
    return record.summary if record is not None else None


def _before_digest(records: _Records) -> str | None:
    if records.before is not None and records.before.digest is not None:
        return records.before.digest
    return records.verdict.digest if records.verdict is not None else None


def _first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def _log_tail(build: BuildRecord, lines: int) -> tuple[str, ...]:
    """The last ``lines`` of the build's log file when it is still on this machine, else
    of the error text the state kept (a builder's last lines)."""
    if lines == 0:
        return ()
    if build.log_path:
        path = Path(build.log_path)
        try:
            if path.is_file():
                with path.open("rb") as stream:
                    size = stream.seek(0, 2)
                    stream.seek(max(0, size - LOG_TAIL_BYTES))
                    data = stream.read()
                text = data.decode("utf-8", errors="replace").splitlines()
                if size > LOG_TAIL_BYTES and text:
                    text = text[1:]  # the first line read is likely cut
                return tuple(text[-lines:])
        except OSError:
            pass
    error_lines = (build.error or "").splitlines()
    return tuple(error_lines[-lines:]) if len(error_lines) > 1 else ()


def _finished_at(run: RunRecord, builds: Sequence[BuildRecord]) -> datetime:
    if run.finished_at is not None:
        return run.finished_at
    times = [run.started_at] + [t for b in builds for t in (b.started_at, b.finished_at)
                                if t is not None]
    return max(times)


def _dry_run(options: Mapping[str, Any]) -> bool:
    return options.get("dry_run") is True


def _option_text(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    return value if isinstance(value, str) else None
