"""The nightly job — ``careen run`` — and the halves other commands share.

The seed's Jenkins job was two scripts: ``list-vulnerable-images`` (Harbor -> vulnerable.list)
and ``update-images`` (vulnerable.list -> build, push). ``careen run`` is one job that does
both and what they never did:

1. read the Dockerfile tree (clone or fast-forward it first with ``[tree] git``), refuse a
   tree with uncommitted changes unless allowed, and remember the commit it builds from;
2. read every image's scan summary from Harbor and judge it (:func:`read_inventory`), writing
   vulnerable.list in the seed's format;
3. plan (:func:`plan_from_inventory`): what to rebuild, in which order, and why — stored, so
   ``careen update --plan ID`` can run exactly that plan later;
4. build and push each step (:func:`careen.update.execute_plan`), recording each state change
   in the state database as it happens (:class:`StateRecorder`);
5. ask Harbor to rescan every pushed digest, wait for the results, and judge each rebuild
   before/after (:func:`rescan_and_judge`);
6. write the reports and tell the webhook.

A run is recorded from its start, so a run that fails reading Harbor is remembered too. A run
that dies (killed, rebooted) is resumed with ``careen run --resume``: the same plan, without
building or pushing again what it already pushed. A push it died during (recorded as
starting, never as ended) is asked of the registry: if the tag serves the image built then,
the push arrived and is recorded so (:func:`settle_interrupted_pushes`); else it is made again.

Nothing here prints: progress goes to the :class:`~careen.events.Observer`. Nothing here
reads the configuration either: a job receives its parts (:class:`JobParts`: the policy, the
Harbor client's opener, the logged-in builder's, the tree's) from :mod:`careen.assemble`.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from careen.attention import AttentionItem, AttentionKind
from careen.builders.interface import Builder
from careen.cves import CveStep, scans_of_plan
from careen.errors import ExitCode, InputFileError, UsageError
from careen.events import NULL_OBSERVER, Observer
from careen.hold import HoldDecision, HoldSettings, NightMemory, night_memory
from careen.inputs import BaseDigests
from careen.inventory import Image
from careen.listsource import ListedImages
from careen.plan import Candidate, Plan, PlanStep, make_plan
from careen.policy import Policy, Selection, Verdict
from careen.reference import ImageReference
from careen.registries.interface import ScanSource
from careen.reports import write_reports
from careen.reports.interface import ReportContext
from careen.reports.notify import send_webhook_async
from careen.results import RunResult, fleet_totals, verdict_attention
from careen.scan import ScanSummary, SeverityCounts
from careen.state.store import (
    BuildRecord,
    RunKind,
    RunRecord,
    RunStatus,
    ScanPhase,
    StateStore,
    fleet_summary,
)
from careen.tree.discover import DockerfileTree, image_key
from careen.tree.graph import BuildGraph
from careen.tree.scm import TreeRevision, describe_tree
from careen.update import StepOutcome, StepStatus, UpdateOptions, execute_plan, outcome_attention
from careen.verify import rescan, results_of, scan_targets
from careen.vulnerable import find_vulnerable, untagged_line, write_outputs

if TYPE_CHECKING:  # httpx is imported only when a registry is asked
    from careen.registries.resolve import TagManifest

#: Judged images written to the state database per transaction while the inventory streams.
RECORD_BATCH = 2000
#: Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
INTERRUPTED_EXIT = 130


# -- what a job works with ------------------------------------------------------------------


#: Opens the Harbor client: any :class:`ScanSource` (:func:`careen.assemble.harbor_opener`
#: picks the API version; tests hand in one bound to a simulator's transport).
HarborOpener = Callable[[], Awaitable[ScanSource]]
#: Gives a logged-in builder for the length of the ``with``.
BuilderOpener = Callable[[], AbstractContextManager[Builder]]
#: The Dockerfile tree and its revision, brought up to date first where it is configured so;
#: a git tree with uncommitted changes refused unless ``allow_dirty`` (the first argument).
TreeOpener = Callable[[bool, Observer], tuple[DockerfileTree, TreeRevision]]


class PushedTags(Protocol):
    """Reads what a tag of the push registry serves now
    (:class:`careen.registries.resolve.DigestResolver`)."""

    async def manifest(self, reference: ImageReference) -> TagManifest: ...


@dataclass(frozen=True)
class BuildDefaults:
    """How every image is built (``[build]``): what :class:`UpdateOptions` takes of it."""

    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = True
    pull: bool = True
    timeout: float = 3600.0


@dataclass(frozen=True)
class JobParts:
    """Everything a job (:func:`run_nightly`, :func:`run_update`) works with, built from the
    configuration by :func:`careen.assemble.job_parts` (the one place that reads it): the
    job never sees the configuration itself."""

    policy: Policy
    #: ``host[:port]`` images are pushed to.
    registry: str
    open_harbor: HarborOpener
    open_builder: BuilderOpener
    open_tree: TreeOpener
    #: The tree's folder, the ``source`` label of images when the tree is not a clone.
    tree_root: Path
    build: BuildDefaults = BuildDefaults()
    #: Harbor's URL as reports show it; the Harbor projects to read (empty: all).
    harbor_url: str | None = None
    projects: tuple[str, ...] = ()
    #: Where vulnerable.list (the seed's format) and its JSON twin are written.
    vulnerable_list: Path = Path("vulnerable.list")
    json_file: Path | None = None
    #: The webhook told the summary (a secret: a Slack URL holds its token), its title.
    webhook: str | None = field(default=None, repr=False)
    title: str = "Careen nightly run"
    #: Issue 19: resolves FROM images to their digests (careen.registries.resolve).
    base_digests: BaseDigests | None = None
    #: Asked by a resume whether a push interrupted by a crash reached the registry; without
    #: it such a push is made again.
    pushed_tags: PushedTags | None = None


# -- inventory and plan ----------------------------------------------------------------------


@dataclass
class Inventory:
    """What one read of Harbor found: the policy's selection, and the scan of every image
    the Dockerfile tree can build (the "before" of a rebuild, and what the cascade needs to
    know of children: immutable tags, multi-arch)."""

    selection: Selection
    in_tree: dict[ImageReference, Image] = field(default_factory=dict)
    judged: int = 0

    @property
    def unscanned(self) -> tuple[tuple[str, str], ...]:
        pairs = [(image.reference.short, verdict.reason)
                 for items in (self.selection.not_scanned, self.selection.scan_failed,
                               self.selection.scan_in_progress)
                 for image, verdict in items]
        return tuple(pairs)


async def read_inventory(
    source: ScanSource, policy: Policy, tree: DockerfileTree, *,
    projects: Iterable[str] = (), observer: Observer = NULL_OBSERVER,
    on_batch: Callable[[list[tuple[Image, Verdict]]], None] | None = None,
) -> Inventory:
    """Judge every image of Harbor; keep what the plan needs. ``on_batch`` receives the
    judged images in batches as they stream (the state database records them)."""
    inventory = Inventory(Selection())
    batch: list[tuple[Image, Verdict]] = []

    def seen(image: Image, verdict: Verdict) -> None:
        key = image_key(image.reference)
        if key is not None and tree.folder_for(key) is not None:
            inventory.in_tree[key] = image
        inventory.judged += 1
        if on_batch is not None:
            batch.append((image, verdict))
            if len(batch) >= RECORD_BATCH:
                on_batch(batch[:])
                batch.clear()

    inventory.selection = await find_vulnerable(source, policy, projects=list(projects) or None,
                                                observer=observer, on_image=seen)
    if on_batch is not None and batch:
        on_batch(batch)
    return inventory


def _candidate_of(image: Image, detail: str = "") -> Candidate:
    return Candidate(image=image.reference, detail=detail, counts=image.scan.counts,
                     digest=image.digest, immutable=image.immutable, is_index=image.is_index,
                     platforms=tuple(str(p) for p in image.platforms), labels=image.labels)


def plan_from_inventory(inventory: Inventory, tree: DockerfileTree, policy: Policy, *,
                        cascade: bool, revision: TreeRevision,
                        source: str = "harbor", holding: HoldDecision | None = None) -> Plan:
    candidates = [Candidate.from_judged(image, verdict)
                  for image, verdict in inventory.selection.selected]
    if holding is not None:  # issue 19: held images are no candidates (careen.hold)
        candidates = holding.apply(candidates, tree)
    known = {key: _candidate_of(image) for key, image in inventory.in_tree.items()}
    plan = make_plan(candidates, tree, BuildGraph.from_tree(tree), cascade=cascade,
                     ignored_by=ignore_matcher(policy), known=known, source=source,
                     policy=str(policy.rule), tree_commit=revision.commit)
    return holding.annotate(plan) if holding is not None else plan


#: Issue 19: decides, from what Harbor lists, which selected images are held.
Holder = Callable[["Inventory"], Awaitable[HoldDecision | None]]


async def hold_night(
    tree: DockerfileTree, revision: TreeRevision, store: StateStore | None,
    settings: HoldSettings, inventory: Inventory | None, *, build_args: Mapping[str, str],
    registry: str | None, base_digests: BaseDigests | None,
) -> tuple[NightMemory, HoldDecision | None]:
    """Issue 19: the night's memory of earlier rebuilds (:mod:`careen.hold`), and (with an
    inventory) which selected images it holds."""
    night = night_memory(tree, revision, store, settings, build_args=build_args,
                         registry=registry, images=inventory.in_tree if inventory else {},
                         source=base_digests)
    if inventory is None:
        return night, None
    selected = [image.reference for image, _ in inventory.selection.selected]
    return night, await night.decide(selected, inventory.in_tree)


async def plan_from_harbor(
    open_harbor: HarborOpener, tree: DockerfileTree, revision: TreeRevision, policy: Policy, *,
    cascade: bool, projects: Iterable[str] = (), observer: Observer = NULL_OBSERVER,
    holder: Holder | None = None,
) -> tuple[Plan, Inventory]:
    """Read Harbor (nothing recorded) and plan: ``careen plan``, ``careen run --dry-run``.
    ``holder`` leaves out the images the state's memory holds (issue 19)."""
    async with _harbor(open_harbor) as harbor:
        inventory = await read_inventory(harbor, policy, tree, projects=projects,
                                         observer=observer)
    untagged = _untagged(inventory)
    if untagged:  # counted, never planned (as careen vulnerable and careen run say it)
        observer.info(untagged_line(len(untagged)))
    holding = await holder(inventory) if holder is not None else None
    return (plan_from_inventory(inventory, tree, policy, cascade=cascade, revision=revision,
                                holding=holding),
            inventory)


def plan_from_list(listed: ListedImages, tree: DockerfileTree, policy: Policy, *,
                   cascade: bool, revision: TreeRevision,
                   observer: Observer = NULL_OBSERVER) -> Plan:
    """The plan for the images of a vulnerable.list (nothing known of them but their names).
    The list's malformed lines are skipped and need attention (the image on such a line was
    not rebuilt); untagged artifacts (``repository@digest`` lines) are counted, not planned."""
    problems = tuple(
        AttentionItem(AttentionKind.UNREADABLE_LINE, f"{listed.shown}:{problem.line}",
                      f"{problem.reason}: {problem.shown_text} (line skipped, not rebuilt)")
        for problem in listed.listing.problems)
    candidates = listed.candidates()
    untagged = sum(1 for candidate in candidates if candidate.image.tag is None)
    if untagged:
        observer.info(untagged_line(untagged))
    plan = make_plan(candidates, tree, BuildGraph.from_tree(tree), cascade=cascade,
                     ignored_by=ignore_matcher(policy), source=listed.source,
                     policy=str(policy.rule), tree_commit=revision.commit)
    return replace(plan, problems=problems + plan.problems)


def ignore_matcher(policy: Policy) -> Callable[[ImageReference], str | None]:
    return lambda ref: policy.ignored_by(Image(ref, None, ScanSummary.not_scanned()))


def store_plan(store: StateStore, plan: Plan) -> Plan:
    """Save ``plan``; the stored plan, with its id."""
    plan_id = store.save_plan(plan.to_dict(), source=plan.source, policy=plan.policy)
    return plan.with_id(plan_id)


def load_plan(store: StateStore, plan_id: str) -> Plan:
    """A stored plan (``latest`` for the newest)."""
    if plan_id == "latest":
        record = store.latest_plan()
        if record is None:
            raise UsageError(f"no plan stored in {store.path}",
                             hint="make one with 'careen plan' (or 'careen run')")
    else:
        record = store.load_plan(plan_id)
    return Plan.from_dict(record.body, plan_id=record.id)


def read_plan_file(path: Path, store: StateStore, tree_root: Path) -> Plan:
    """A plan exported as JSON (``careen plan -f json``) on another machine — a CI agent
    building part of it: stored here under its own id (so this run's builds count for it),
    its tree the checkout found at ``tree_root``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputFileError(str(path), f"not a plan file ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise InputFileError(str(path), "not a plan file: no plan id; write one with "
                             "'careen plan -f json'")
    plan = Plan.from_dict(data, plan_id=data["id"])
    store.import_plan(data["id"], data, source=f"file:{path}", policy=plan.policy)
    return replace(plan, tree_root=str(tree_root.resolve()))


# -- recording builds ------------------------------------------------------------------------


class StateRecorder:
    """The executor's recorder writing to the state database: a push is committed before its
    children start, which is what a resume trusts. The executor calls it from its record
    thread, while nothing else uses the store."""

    def __init__(self, store: StateStore, run_id: str, plan: Plan) -> None:
        self.store = store
        self.run_id = run_id
        self.position = {step.image: index for index, step in enumerate(plan.steps)}
        self.builds: dict[ImageReference, BuildRecord] = {}

    def grouped(self) -> AbstractContextManager[None]:
        """The records written inside are one transaction (the executor's group commit),
        synced to disk if any of them must be: a push is on disk before its children start."""
        return self.store.grouped()

    def step_started(self, step: PlanStep, image: ImageReference, log_path: Path) -> None:
        self.builds[step.image] = self.store.build_started(
            self.run_id, step.image, step=self.position[step.image], log_path=log_path)

    def push_starting(self, step: PlanStep, image: ImageReference, image_id: str,
                      built_seconds: float) -> None:
        started = self.builds.get(step.image)
        if started is not None:
            self.builds[step.image] = self.store.build_pushing(
                started.id, image_id=image_id, duration=built_seconds)

    def step_finished(self, outcome: StepOutcome) -> None:
        step = outcome.step
        started = self.builds.get(step.image)
        if outcome.status is StepStatus.PUSHED and started is not None:
            if outcome.digest:
                self.store.build_pushed(started.id, digest=outcome.digest,
                                        duration=outcome.duration)
            else:  # not trusted as pushed: a resume builds it again rather than skip it
                self.store.build_failed(started.id, error="pushed, but the builder reported "
                                        "no digest", duration=outcome.duration)
        elif outcome.status is StepStatus.FAILED and started is not None:
            self.store.build_failed(started.id, error=outcome.reason or "failed",
                                    duration=outcome.duration)
        elif outcome.status in (StepStatus.SKIPPED, StepStatus.ALREADY_PUSHED):
            reason = outcome.reason or (
                f"pushed by an earlier run of this plan as {outcome.digest}")
            self.store.build_skipped(self.run_id, step.image, step=self.position[step.image],
                                     reason=reason)


# -- the nightly run -------------------------------------------------------------------------


@dataclass(frozen=True)
class NightlyOptions:
    jobs: int = 1
    cascade: bool = True
    dry_run: bool = False
    allow_dirty: bool = False
    #: Resume the latest interrupted run (its plan, without rebuilding what it pushed).
    resume: bool = False
    reports_dir: Path = Path("careen-reports")
    report_formats: tuple[str, ...] = ()
    rescan: bool = True
    rescan_timeout: float = 1800.0
    rescan_interval: float = 10.0
    notify: bool = True
    #: Issue 19: hold images no rebuild can change (``[run] hold``, ``--no-hold``,
    #: ``--rebuild IMAGE``).
    hold: HoldSettings = field(default_factory=HoldSettings)

    def recorded(self) -> dict[str, Any]:
        """What the state database keeps of these options (nothing secret is here)."""
        return {"jobs": self.jobs, "cascade": self.cascade, "dry_run": self.dry_run,
                "allow_dirty": self.allow_dirty, "resume": self.resume,
                "rescan": self.rescan, "reports_dir": str(self.reports_dir)}


@dataclass(frozen=True)
class NightlyOutcome:
    run_id: str | None
    plan: Plan
    result: RunResult
    reports: tuple[Path, ...]
    exit_code: ExitCode | int


async def run_nightly(
    parts: JobParts, options: NightlyOptions, *, store: StateStore,
    observer: Observer = NULL_OBSERVER,
) -> NightlyOutcome:
    """The whole nightly job; see the module's docstring. Takes the state's run lock for its
    whole length (a second run on the same state is refused at once)."""
    policy = parts.policy
    registry = parts.registry
    opener = parts.open_harbor
    with store.run_lock():
        store.mark_interrupted_runs()
        resumed = _resumable(store) if options.resume else None
        tree, revision = parts.open_tree(options.allow_dirty, observer)
        if options.dry_run:
            return await _dry_run(parts, options, store, tree, revision, observer)
        run = store.begin_run(
            RunKind.RUN, plan_id=resumed[1].id if resumed else None,
            tree_commit=revision.commit, options=options.recorded(),
            resumed_from=resumed[0].id if resumed else None)
        started = run.started_at
        async with _stoppable(), _finishing(store, run.id) as finish:
            async with _harbor(opener) as harbor:
                if resumed is not None:
                    interrupted, plan = resumed
                    observer.info(f"resuming {interrupted.id} (plan {plan.id})")
                    before = _recorded_before(store, interrupted.id, plan)
                    unscanned: tuple[tuple[str, str], ...] = ()
                    untagged: tuple[tuple[str, str], ...] = ()
                    judged = 0
                    fleet: dict[str, Any] = {}
                    totals: dict[str, int] = {}
                    night, _ = await _hold_night(parts, tree, revision, store, options, None)
                    if plan.tree_commit and revision.commit and plan.tree_commit != \
                            revision.commit:
                        observer.warning(f"the tree moved since plan {plan.id} was made "
                                         f"({plan.tree_commit[:12]} -> {revision.commit[:12]});"
                                         " building from the tree as it is now")
                else:
                    recording = _Recording(store, run.id)
                    inventory = await read_inventory(
                        harbor, policy, tree, projects=parts.projects,
                        observer=observer, on_batch=recording)
                    fleet = recording.summary()
                    untagged = _untagged(inventory)
                    if untagged:
                        observer.info(untagged_line(len(untagged)))
                    write_outputs(inventory.selection, policy,
                                  list_path=parts.vulnerable_list,
                                  json_path=parts.json_file)
                    night, holding = await _hold_night(parts, tree, revision, store, options,
                                                       inventory)
                    plan = store_plan(store, plan_from_inventory(
                        inventory, tree, policy, cascade=options.cascade, revision=revision,
                        holding=holding))
                    store.attach_plan(run.id, str(plan.id))
                    before, unscanned, judged = inventory.in_tree, inventory.unscanned, \
                        inventory.judged
                    # issue 14: skipped images keep their real scans; the fleet in totals
                    before = scans_of_plan(before, [i for i, _ in inventory.selection.selected])
                    totals = fleet_totals(inventory.selection, judged)
                observer.info(f"plan {plan.id}: {len(plan.steps)} to rebuild in "
                              f"{len(plan.levels)} level(s), {len(plan.skipped)} skipped")
                # issue 14: the CVE lists of the plan images, before building
                cves = CveStep(harbor, store, run.id, observer=observer, policy=parts.policy,
                               own_hosts=(parts.registry,),
                               by_digest=harbor.rescans_by_digest)
                await cves.before(plan, before)
                outcomes = await _build(plan, options, store, run.id, revision, parts,
                                        observer, night)
                after = None
                if options.rescan and any(o.ok for o in outcomes):
                    observer.info("asking Harbor to rescan the pushed images")
                    targets = scan_targets(outcomes, by_digest=harbor.rescans_by_digest)
                    scanned = await rescan(harbor, targets.values(),
                                           timeout=options.rescan_timeout,
                                           interval=options.rescan_interval, observer=observer)
                    after = {image: scanned[ref] for image, ref in targets.items()
                             if ref in scanned}
                    _record_after(store, run.id, outcomes, after)
                    await cves.after(plan, {i: r for i, r in targets.items() if i in after},
                                     after)
                elif options.rescan:
                    after = {}
            images = cves.explain(results_of(plan, outcomes, policy=policy, before=before,
                                             after=after), plan)
            result = RunResult(
                run_id=run.id, started_at=started, finished_at=datetime.now(UTC),
                policy=str(policy.rule), images=images,
                plan_id=plan.id, tree_commit=revision.commit, harbor=parts.harbor_url,
                registry=registry, unscanned=unscanned, judged=judged, untagged=untagged,
                attention=(plan.attention + outcome_attention(outcomes)
                           + verdict_attention(images)),
                fleet=totals, details_note=cves.note,
            )
            night.remember(run.id, result)  # issue 19: the verdict history
            reports = _report(result, plan, store, parts, options, observer,
                              running=fleet.get("fleet"))
            if options.notify and parts.webhook is not None:
                await send_webhook_async(parts.webhook, result, observer, title=parts.title)
            code = ExitCode.FAILED if result.needs_attention else ExitCode.OK
            finish(RunStatus.FAILED if result.failed else RunStatus.SUCCEEDED, code,
                   {"result": result.to_dict(), "reports": [str(p) for p in reports],
                    **fleet})
    return NightlyOutcome(run.id, plan, result, tuple(reports), code)


async def run_update(
    parts: JobParts, plan: Plan, options: NightlyOptions, *, store: StateStore,
    observer: Observer = NULL_OBSERVER,
) -> NightlyOutcome:
    """``careen update``: execute a stored plan (or a shard of it) as a run of its own — the
    builds recorded, pushes already made by earlier runs of the plan not repeated, reports
    written (a shard's JSON result merges with the others' by ``careen report --merge``).
    No rescan: that is ``careen run``'s verify step."""
    policy = parts.policy
    registry = parts.registry
    revision = describe_tree(Path(plan.tree_root))
    if options.dry_run:
        return _dry_run_outcome(plan, policy, started=datetime.now(UTC), before={},
                                tree_commit=revision.commit, harbor=None, registry=registry)
    with store.run_lock():
        store.mark_interrupted_runs()
        run = store.begin_run(RunKind.UPDATE, plan_id=plan.id, tree_commit=revision.commit,
                              options={**options.recorded(), **_restriction(plan)})
        async with _stoppable(), _finishing(store, run.id) as finish:
            outcomes = await _build(plan, options, store, run.id, revision, parts, observer)
            result = RunResult(
                run_id=run.id, started_at=run.started_at, finished_at=datetime.now(UTC),
                policy=str(policy.rule),
                images=results_of(plan, outcomes, policy=policy, before={}, after=None),
                plan_id=plan.id, tree_commit=revision.commit, registry=registry,
                extra=_restriction(plan),
                attention=plan.attention + outcome_attention(outcomes),
            )
            reports = _report(result, plan, store, parts, options, observer)
            code = ExitCode.FAILED if result.needs_attention else ExitCode.OK
            finish(RunStatus.FAILED if result.failed else RunStatus.SUCCEEDED, code,
                   {"result": result.to_dict(), "reports": [str(p) for p in reports]})
    return NightlyOutcome(run.id, plan, result, tuple(reports), code)


def _restriction(plan: Plan) -> dict[str, Any]:
    """The part of the plan a run of ``--only``/``--shard`` was limited to."""
    return {key: list(plan.extra[key]) for key in ("shard", "only", "level")
            if key in plan.extra}


async def _dry_run(parts: JobParts, options: NightlyOptions, store: StateStore,
                   tree: DockerfileTree, revision: TreeRevision,
                   observer: Observer) -> NightlyOutcome:
    """Inventory and plan (stored, so ``careen update --plan ID`` can run it); no run is
    recorded and nothing is written but the plan."""
    started = datetime.now(UTC)
    async def holder(inventory: Inventory) -> HoldDecision | None:
        return (await _hold_night(parts, tree, revision, store, options, inventory))[1]

    made, inventory = await plan_from_harbor(parts.open_harbor, tree, revision, parts.policy,
                                             cascade=options.cascade, projects=parts.projects,
                                             observer=observer, holder=holder)
    plan = store_plan(store, made)
    before = scans_of_plan(inventory.in_tree, [i for i, _ in inventory.selection.selected])
    return _dry_run_outcome(plan, parts.policy, started=started, before=before,
                            tree_commit=revision.commit, harbor=parts.harbor_url,
                            registry=parts.registry, unscanned=inventory.unscanned,
                            judged=inventory.judged, untagged=_untagged(inventory))


def _dry_run_outcome(plan: Plan, policy: Policy, *, started: datetime,
                     before: Mapping[ImageReference, Image], tree_commit: str | None,
                     harbor: str | None, registry: str | None,
                     unscanned: tuple[tuple[str, str], ...] = (),
                     judged: int = 0,
                     untagged: tuple[tuple[str, str], ...] = ()) -> NightlyOutcome:
    """What a dry run shows: every step "planned", nothing built, no run recorded; exit 1
    when the plan already needs attention (an image without a folder, an unreadable line)."""
    outcomes = [StepOutcome(step, StepStatus.WOULD_BUILD, step.image) for step in plan.steps]
    result = RunResult(
        run_id=f"dry-run-{plan.id}", started_at=started, finished_at=datetime.now(UTC),
        policy=str(policy.rule),
        images=results_of(plan, outcomes, policy=policy, before=before, after=None),
        plan_id=plan.id, tree_commit=tree_commit, harbor=harbor, registry=registry,
        unscanned=unscanned, judged=judged, dry_run=True, untagged=untagged,
        attention=plan.attention)
    return NightlyOutcome(None, plan, result, (),
                          ExitCode.FAILED if result.needs_attention else ExitCode.OK)


def _untagged(inventory: Inventory) -> tuple[tuple[str, str], ...]:
    """The untagged artifacts the policy selects: counted apart, never planned."""
    return tuple((image.reference.short, verdict.reason)
                 for image, verdict in inventory.selection.untagged)


def _resumable(store: StateStore) -> tuple[RunRecord, Plan] | None:
    unfinished = store.unfinished_run(RunKind.RUN)
    if unfinished is None:
        last = store.last_run(RunKind.RUN)
        raise UsageError(
            "no interrupted run to resume" + (f" (the last run, {last.id}, {last.status.value})"
                                              if last else ""),
            hint="run 'careen run' without --resume")
    if unfinished.plan_id is None:
        return None  # it died before planning: a fresh run is the resume
    return unfinished, load_plan(store, unfinished.plan_id)


def _recorded_before(store: StateStore, run_id: str,
                     plan: Plan) -> dict[ImageReference, Image]:
    wanted = {step.image.short: step.image for step in plan.steps}
    wanted.update({s.image.short: s.image for s in plan.skipped})
    before: dict[ImageReference, Image] = {}
    for scan in store.run(run_id).scans:
        if scan.phase is ScanPhase.BEFORE and scan.image in wanted:
            image = wanted[scan.image]
            before[image] = Image(image, scan.digest, scan.summary)
    return before


class _Recording:
    """Writes judged images to the state database in batches and sums the fleet's counts
    (the run's trend point) as they pass."""

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.images = 0
        self.scanned = 0
        self.counts = SeverityCounts()

    def __call__(self, batch: list[tuple[Image, Verdict]]) -> None:
        self.store.record_scans(self.run_id, (image for image, _ in batch),
                                phase=ScanPhase.BEFORE)
        self.store.record_verdicts(self.run_id, batch)
        for image, _ in batch:
            self.images += 1
            if image.scan.counts is not None:
                self.scanned += 1
                self.counts += image.scan.counts

    def summary(self) -> dict[str, Any]:
        return {"fleet": fleet_summary(self.images, self.scanned, self.counts)}


def _record_after(store: StateStore, run_id: str, outcomes: Iterable[StepOutcome],
                  after: Mapping[ImageReference, ScanSummary]) -> None:
    for outcome in outcomes:
        if outcome.digest is None:
            continue
        summary = after.get(outcome.step.image)
        if summary is not None:
            store.record_scan(run_id, outcome.step.image, phase=ScanPhase.AFTER,
                              summary=summary, digest=outcome.digest)


async def _hold_night(parts: JobParts, tree: DockerfileTree, revision: TreeRevision,
                      store: StateStore, options: NightlyOptions, inventory: Inventory | None,
                      ) -> tuple[NightMemory, HoldDecision | None]:
    return await hold_night(tree, revision, store, options.hold, inventory,
                            build_args=parts.build.build_args, registry=parts.registry,
                            base_digests=parts.base_digests)


async def _build(plan: Plan, options: NightlyOptions, store: StateStore, run_id: str,
                 revision: TreeRevision, parts: JobParts,
                 observer: Observer, night: NightMemory | None = None) -> list[StepOutcome]:
    if not plan.steps:
        return []
    if night is not None:  # issue 19: each build is labelled with its inputs
        await night.prepare_build(plan)
    build = parts.build
    update = UpdateOptions(
        registry=parts.registry, run_id=run_id,
        log_dir=options.reports_dir / "logs" / run_id, jobs=options.jobs,
        build_args=build.build_args, labels=build.labels,
        no_cache=build.no_cache, pull=build.pull, timeout=build.timeout,
        revision=revision.commit, source=revision.remote_url or str(parts.tree_root),
        input_labels=night.labels if night is not None else None,
        # Past build durations rank the ready steps (the longest chain of builds first).
        build_seconds=store.build_seconds(step.image for step in plan.steps),
    )
    already = store.pushed_images(str(plan.id)) if plan.id else {}
    if plan.id:
        already.update(await settle_interrupted_pushes(plan, store, parts.registry,
                                                       parts.pushed_tags, observer))
    with parts.open_builder() as builder:
        return await execute_plan(plan, builder, update,
                                  recorder=StateRecorder(store, run_id, plan),
                                  already_pushed=already, observer=observer)


async def settle_interrupted_pushes(plan: Plan, store: StateStore, registry: str,
                                    tags: PushedTags | None,
                                    observer: Observer = NULL_OBSERVER) -> dict[str, str]:
    """For each step of ``plan`` whose push an earlier run started and never recorded as
    ended (Careen died during it): ask the registry what the step's tags serve. If each
    serves a manifest whose config is the image built then, the push arrived: it is recorded
    as pushed (with the manifest's digest) and the step is not built again. Otherwise —
    another image, an index, a registry that cannot say — the record becomes failed with the
    reason, and the step is built and pushed again, as before: never judged pushed without
    the registry's proof. Returns ``repository:tag`` -> digest of the pushes proven."""
    in_plan = {step.image.short: step for step in plan.steps}
    latest: dict[str, BuildRecord] = {}
    for record in store.pushes_in_doubt(str(plan.id)):  # oldest first
        if record.image not in in_plan:
            continue
        earlier = latest.get(record.image)
        if earlier is not None:  # only the latest build can be what the tag serves
            store.build_failed(earlier.id, error="interrupted during its push; superseded "
                               "by a later build of the image", duration=earlier.duration)
        latest[record.image] = record
    if not latest:
        return {}
    answers = await asyncio.gather(*(
        _push_arrived(in_plan[image], record, registry, tags)
        for image, record in latest.items()))
    proven: dict[str, str] = {}
    for (image, record), (digest, why) in zip(latest.items(), answers, strict=True):
        if digest is not None:
            store.build_pushed(record.id, digest=digest, duration=record.duration)
            observer.info(f"{image}: the push interrupted last time had reached the registry "
                          f"({digest}); not pushed again")
            proven[image] = digest
        else:
            store.build_failed(record.id, error=f"interrupted during its push; {why}",
                               duration=record.duration)
            observer.info(f"{image}: the push interrupted last time is not known to have "
                          f"reached the registry ({why}); building and pushing it again")
    return proven


async def _push_arrived(step: PlanStep, record: BuildRecord, registry: str,
                        tags: PushedTags | None) -> tuple[str | None, str]:
    """The digest the step's tag serves if every tag of the step serves the image
    ``record`` built (the push arrived), else ``None`` and why not."""
    if tags is None:
        return None, "no client of the registry to ask"
    if record.image_id is None:  # pragma: no cover - the schema requires it
        return None, "the built image's id was not recorded"
    digest: str | None = None
    for tag in step.tags:
        reference = ImageReference(step.image.repository, tag, None, registry)
        try:
            served = await tags.manifest(reference)
        except Exception as error:  # any failure to ask is "unknown"
            return None, f"the registry could not be asked: {type(error).__name__}"
        if served.problem is not None:
            return None, f"the registry could not say: {served.problem}"
        if served.is_index or served.config is None:
            return None, f"{reference} serves an index, not one image to compare"
        if served.config != record.image_id:
            return None, (f"{reference} serves another image (config {served.config}, "
                          f"built {record.image_id})")
        digest = digest or served.digest
    return digest, ""


def _report(result: RunResult, plan: Plan, store: StateStore, parts: JobParts,
            options: NightlyOptions, observer: Observer,
            running: Mapping[str, Any] | None = None) -> list[Path]:
    trend = store.trend(running={result.run_id: running} if running else None)
    context = ReportContext(trend=trend, plan=plan, title=parts.title)
    written = write_reports(result, context, options.reports_dir,
                            formats=options.report_formats or None)
    observer.info("reports: " + ", ".join(str(p) for p in written))
    return written


@asynccontextmanager
async def _harbor(opener: HarborOpener) -> AsyncIterator[ScanSource]:
    client = await opener()
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def _stoppable() -> AsyncIterator[None]:
    """SIGTERM (Jenkins' abort, ``kill``) stops the run like Ctrl-C does: the running task is
    cancelled, what finished stays recorded, and the run is marked interrupted."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = False
    if task is not None:
        try:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
            installed = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)


Finish = Callable[[RunStatus, int, Mapping[str, Any]], None]


@asynccontextmanager
async def _finishing(store: StateStore, run_id: str) -> AsyncIterator[Finish]:
    """Whatever happens, the run ends recorded: interrupted on cancellation, failed with the
    error's exit code on an error (the error still propagates)."""
    finished = False

    def finish(status: RunStatus, code: int, summary: Mapping[str, Any]) -> None:
        nonlocal finished
        store.finish_run(run_id, status, int(code), summary)
        finished = True

    try:
        yield finish
    except (asyncio.CancelledError, KeyboardInterrupt):
        if not finished:
            store.finish_run(run_id, RunStatus.INTERRUPTED, INTERRUPTED_EXIT,
                             {"error": "interrupted"})
        raise
    except BaseException as error:
        if not finished:
            code = int(getattr(error, "exit_code", ExitCode.INTERNAL))
            store.finish_run(run_id, RunStatus.FAILED, code,
                             {"error": f"{type(error).__name__}: {error}"[:2000]})
        raise
