"""Careen's memory: a SQLite file of runs, plans, verdicts, scans and builds.

Why plain ``sqlite3`` and no ORM: five small tables, and resume depends on knowing exactly when
each record is durable. Every write method here is one explicit ``BEGIN IMMEDIATE … COMMIT``
transaction, visible in the code; an ORM would add a dependency and hide those boundaries
behind a session's flush/commit rules.

Durability. The database runs in WAL mode (readers — ``careen history`` — never block the
nightly writer) with ``synchronous=FULL``: every commit is fsynced before the method returns.
``NORMAL`` would survive a killed process (kill -9) but may lose the last commits on power loss
or a kernel crash, and the last commit is precisely "image X was pushed": losing it makes the
resumed run build and push X again. The price is one fsync per state change — a few per image
whose build takes minutes — so it is not measurable. Bulk records (a whole fleet's verdicts or
scans) are written in one transaction, so they cost one fsync too.

The run lock is ``flock`` on ``<db>.lock``: the kernel drops it when the holder dies, however
it dies, so there is never a stale lock to clean up. Runs are meant to be begun while holding
it; :meth:`StateStore.mark_interrupted_runs` relies on that to tell a dead run from a live one.

Nothing stored here is secret, and it must stay so: run options and summaries with a key that
names a secret (``password``, ``token``…) are refused rather than written.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

from careen.errors import CareenError, ExitCode, UsageError
from careen.inventory import Image
from careen.policy import Verdict
from careen.reference import ImageReference
from careen.scan import ScanStatus, ScanSummary, SeverityCounts
from careen.state.codec import counts_from_json, scan_counts_from_json, scan_counts_to_json
from careen.state.schema import migrate

#: How long a writer waits for another writer's transaction before giving up.
DEFAULT_BUSY_TIMEOUT_SECONDS = 10.0
#: Plan and run ids shown in "unknown id" messages.
LATEST_IDS_SHOWN = 5
#: Longest error text kept for a build (a builder's last lines, not its whole log).
ERROR_TEXT_LIMIT = 4000
STATE_FILE_NAME = "state.sqlite"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- vocabularies ----------------------------------------------------------------------------


class RunKind(StrEnum):
    RUN = "run"
    UPDATE = "update"
    VULNERABLE = "vulnerable"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: The process ended (killed, rebooted) without finishing the run.
    INTERRUPTED = "interrupted"


class BuildStatus(StrEnum):
    PENDING = "pending"
    BUILDING = "building"
    BUILT = "built"
    PUSHED = "pushed"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_BUILD_STATUSES


_FINAL_BUILD_STATUSES = frozenset({BuildStatus.PUSHED, BuildStatus.FAILED, BuildStatus.SKIPPED})

#: Which status a build may move to from which: a record never goes back (a pushed image
#: stays pushed, which is what resume trusts).
_BUILD_TRANSITIONS: Mapping[BuildStatus, frozenset[BuildStatus]] = {
    BuildStatus.PENDING: frozenset(
        {BuildStatus.BUILDING, BuildStatus.SKIPPED, BuildStatus.FAILED}
    ),
    BuildStatus.BUILDING: frozenset(
        {BuildStatus.BUILT, BuildStatus.PUSHED, BuildStatus.FAILED}
    ),
    BuildStatus.BUILT: frozenset({BuildStatus.PUSHED, BuildStatus.FAILED}),
}


class ScanPhase(StrEnum):
    #: The scan the policy judged (what Harbor said before Careen did anything).
    BEFORE = "before"
    #: The rescan of the rebuilt image (verify).
    AFTER = "after"


# -- errors ----------------------------------------------------------------------------------


class StateLockedError(CareenError):
    """Another process holds the run lock on this state."""

    exit_code = ExitCode.FAILED

    def __init__(self, path: Path, pid: int | None, started_at: str | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        if started_at:
            holder += f", started {started_at}"
        super().__init__(
            f"another careen run ({holder}) holds the state at {path}; "
            "wait for it or use another --state"
        )
        self.path = path
        self.pid = pid
        self.started_at = started_at


class StateFileError(UsageError):
    """The state file cannot be created or opened, or is not a Careen state database."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(
            f"state {path}: {problem}",
            hint="give another file with --state, or move this one aside",
        )
        self.path = path


class StateBusyError(UsageError):
    """Another process holds a transaction on the state database (issue 18 row 15). It is
    live: the message names the holder when a run lock names one, and never advises moving
    the file."""

    def __init__(self, path: Path, pid: int | None, started_at: str | None) -> None:
        holder = "another process"
        if pid is not None:
            holder = f"another process (careen run pid {pid}"
            holder += f", started {started_at})" if started_at else ")"
        super().__init__(
            f"state {path}: {holder} holds the database and did not let go in time",
            hint="wait for it to finish, or use another --state",
        )
        self.path = path
        self.pid = pid


def _busy(error: sqlite3.Error) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


def _busy_error(path: Path) -> StateBusyError:
    """Who holds ``path``, as its run lock says (``None`` when no run lock names one)."""
    try:
        fd = os.open(lock_path_for(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return StateBusyError(path, None, None)
    try:
        pid, started = _read_holder(fd)
    finally:
        os.close(fd)
    if pid == os.getpid():  # our own run's lock: the holder is someone else, unnamed
        return StateBusyError(path, None, None)
    return StateBusyError(path, pid, started)


class UnknownRecordError(UsageError):
    """No record of that id; the message lists the latest ids of the kind."""

    kind = "record"

    def __init__(self, path: Path, record_id: str, latest: list[str]) -> None:
        if latest:
            message = (f"no {self.kind} {record_id!r} in the state at {path}; latest "
                       f"{self.kind}s: {', '.join(latest)}")
        else:
            message = f"no {self.kind} {record_id!r}: the state at {path} holds no {self.kind}s yet"
        super().__init__(message)
        self.record_id = record_id
        self.latest = latest


class UnknownPlanError(UnknownRecordError):
    kind = "plan"


class UnknownRunError(UnknownRecordError):
    kind = "run"


# -- records ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    kind: RunKind
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    tree_commit: str | None
    plan_id: str | None
    #: The interrupted run this one resumed, if any.
    resumed_from: str | None
    pid: int | None
    options: Mapping[str, Any]
    summary: Mapping[str, Any] | None

    @property
    def finished(self) -> bool:
        return self.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)


@dataclass(frozen=True, slots=True)
class PlanRecord:
    id: str
    created_at: datetime
    #: ``harbor``, ``stdin``, ``url`` (or ``url:URL`` without credentials), ``file:PATH``.
    source: str
    policy: str | None
    #: The plan exactly as given to :meth:`StateStore.save_plan` (JSON round trip).
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    run_id: str
    image: str
    digest: str | None
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class ScanRecord:
    run_id: str
    image: str
    digest: str | None
    phase: ScanPhase
    summary: ScanSummary


@dataclass(frozen=True, slots=True)
class BuildRecord:
    id: int
    run_id: str
    plan_id: str | None
    image: str
    #: The image's position in the plan's build order.
    step: int
    #: 1 for the first time this image was built for this plan (or run, without a plan).
    attempt: int
    status: BuildStatus
    started_at: datetime | None
    finished_at: datetime | None
    #: Seconds, as measured by the caller or from the two timestamps.
    duration: float | None
    #: The pushed manifest's digest (set once pushed; may be set once built).
    digest: str | None
    log_path: str | None
    #: Why the build failed or was skipped.
    error: str | None


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: RunRecord
    verdicts: tuple[VerdictRecord, ...]
    scans: tuple[ScanRecord, ...]
    builds: tuple[BuildRecord, ...]


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """The fleet as one run saw it before rebuilding anything."""

    run_id: str
    kind: RunKind
    started_at: datetime
    #: ``started_at``'s date in UTC.
    date: date
    #: Images whose ``before`` scan was recorded.
    images: int
    #: Of those, images with severity counts (a successful scan).
    scanned: int
    #: Findings per severity, summed over the scanned images.
    counts: SeverityCounts


# -- locations -------------------------------------------------------------------------------


def default_state_path(environ: Mapping[str, str], home: str | os.PathLike[str]) -> Path:
    """``$XDG_STATE_HOME/careen/state.sqlite``, else ``HOME/.local/state/careen/state.sqlite``.

    The XDG base-directory spec says a relative ``XDG_STATE_HOME`` is invalid and must be
    ignored, and so it is (as is an empty one)."""
    xdg = environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path(home) / ".local" / "state"
    return base / "careen" / STATE_FILE_NAME


def lock_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def new_record_id(prefix: str, now: datetime) -> str:
    """``prefix-YYYYMMDD-HHMMSS-xxxx`` (UTC): sorts by creation time, readable in a log, and
    unique enough with four random hex digits (a clash is retried by the caller)."""
    return f"{prefix}-{now.astimezone(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


# -- the store -------------------------------------------------------------------------------


class StateStore:
    """One open state database. Use :meth:`open`; close it (or use ``with``) when done.

    Every write method commits before it returns. Image arguments take an
    :class:`ImageReference` (stored as its ``short`` form, ``repository:tag``) or text (stored
    as given): use one form consistently, since :meth:`pushed_images` keys are this text.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path, clock: Clock) -> None:
        self._db = connection
        self._path = path
        self._clock = clock
        self._lock_fd: int | None = None
        #: Runs begun through this object: never "interrupted" by it.
        self._own_runs: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, clock: Clock = utc_now,
             busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> StateStore:
        """Open (creating folders and file if needed) and migrate the database at ``path``.

        Raises :class:`StateFileError` if it cannot, and
        :class:`careen.state.schema.StateTooNewError` if a newer Careen wrote it."""
        target = Path(path)
        _make_private_folders(target.parent)
        try:
            # Created here rather than by SQLite so that it is private from the start.
            os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as error:
            raise StateFileError(target, f"cannot create: {error.strerror}") from error
        try:
            connection = sqlite3.connect(target, timeout=busy_timeout, isolation_level=None)
        except sqlite3.Error as error:
            raise StateFileError(target, f"cannot open: {error}") from error
        try:
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StateFileError(
                    target, f"cannot use write-ahead logging here (journal mode {mode})"
                )
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
            migrate(connection, str(target))
        except sqlite3.OperationalError as error:
            connection.close()
            if _busy(error):
                raise _busy_error(target) from error
            raise StateFileError(target, f"cannot open: {error}") from error
        except sqlite3.DatabaseError as error:
            connection.close()
            raise StateFileError(target, f"not a Careen state database ({error})") from error
        except BaseException:
            connection.close()
            raise
        return cls(connection, target, clock)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def lock_path(self) -> Path:
        return lock_path_for(self._path)

    def close(self) -> None:
        if self._lock_fd is not None:
            _release_lock(self._lock_fd)
            self._lock_fd = None
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- run lock ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the state's run lock for the ``with`` block, or raise
        :class:`StateLockedError` at once if another process holds it. Not re-entrant."""
        if self._lock_fd is not None:
            raise RuntimeError("this StateStore already holds the run lock")
        self._lock_fd = _acquire_lock(self.lock_path, self._path, self._clock())
        try:
            yield
        finally:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:  # None if close() already released it
                _release_lock(fd)

    @property
    def holds_lock(self) -> bool:
        return self._lock_fd is not None

    # -- runs --------------------------------------------------------------------------------

    def begin_run(self, kind: RunKind | str, *, plan_id: str | None = None,
                  tree_commit: str | None = None, options: Mapping[str, Any] | None = None,
                  resumed_from: str | None = None) -> RunRecord:
        """Record that a run starts now (status ``running``)."""
        run_kind = _enum(RunKind, kind, "run kind")
        options_text = _json_text(dict(options or {}), "run options", refuse_secrets=True)
        if plan_id is not None:
            self._plan_row(plan_id)
        if resumed_from is not None:
            self._run_row(resumed_from)
        now = self._clock()
        run_id = self._insert_with_new_id(
            "run", now,
            "INSERT INTO runs (id, kind, started_at, status, tree_commit, plan_id, resumed_from,"
            " pid, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_kind.value, _time_text(now), RunStatus.RUNNING.value, tree_commit, plan_id,
             resumed_from, os.getpid(), options_text),
        )
        self._own_runs.add(run_id)
        return self._run_record(self._run_row(run_id))

    def finish_run(self, run_id: str, status: RunStatus | str, exit_code: int,
                   summary: Mapping[str, Any] | None = None) -> RunRecord:
        """Record the end of a run: ``succeeded``, ``failed`` or ``interrupted`` (stopped by a
        signal the process could handle)."""
        final = _enum(RunStatus, status, "run status")
        if final is RunStatus.RUNNING:
            raise ValueError("finish_run needs a final status, not 'running'")
        summary_text = (
            None if summary is None
            else _json_text(dict(summary), "run summary", refuse_secrets=True)
        )
        with self._write():
            row = self._run_row(run_id)
            if RunStatus(row["status"]) in (RunStatus.SUCCEEDED, RunStatus.FAILED):
                raise ValueError(f"run {run_id} already finished ({row['status']})")
            self._db.execute(
                "UPDATE runs SET status = ?, exit_code = ?, finished_at = ?, summary = ?"
                " WHERE id = ?",
                (final.value, int(exit_code), _time_text(self._clock()), summary_text, run_id),
            )
        self._own_runs.discard(run_id)
        return self._run_record(self._run_row(run_id))

    def attach_plan(self, run_id: str, plan_id: str) -> RunRecord:
        """Record the plan a running run made (a nightly run is begun before its inventory,
        so that a run failing there is remembered too, and plans only once it is read).
        Builds recorded from now on carry the plan, which is what resume looks up."""
        self._plan_row(plan_id)
        with self._write():
            row = self._run_row(run_id)
            if row["plan_id"] not in (None, plan_id):
                raise ValueError(f"run {run_id} already has plan {row['plan_id']}")
            if RunStatus(row["status"]) is not RunStatus.RUNNING:
                raise ValueError(f"run {run_id} is {row['status']}, not running")
            self._db.execute("UPDATE runs SET plan_id = ? WHERE id = ?", (plan_id, run_id))
        return self._run_record(self._run_row(run_id))

    def mark_interrupted_runs(self) -> list[str]:
        """Mark as ``interrupted`` every ``running`` run whose process is gone, and their
        unfinished builds as failed; return the run ids marked.

        A run is known dead when nobody else holds the run lock: runs are begun under it. If
        another process holds the lock, its run is alive and nothing is marked. Runs begun
        through this object are never marked."""
        if self._lock_fd is not None:
            return self._interrupt_running()
        try:
            fd = _acquire_lock(self.lock_path, self._path, self._clock())
        except StateLockedError:
            return []
        try:
            return self._interrupt_running()
        finally:
            _release_lock(fd)

    def _interrupt_running(self) -> list[str]:
        now = _time_text(self._clock())
        with self._write():
            rows = self._db.execute(
                "SELECT id FROM runs WHERE status = ? ORDER BY started_at, rowid",
                (RunStatus.RUNNING.value,),
            ).fetchall()
            marked = [row["id"] for row in rows if row["id"] not in self._own_runs]
            for run_id in marked:
                self._db.execute(
                    "UPDATE runs SET status = ? WHERE id = ?",
                    (RunStatus.INTERRUPTED.value, run_id),
                )
                self._db.execute(
                    "UPDATE builds SET status = ?, finished_at = ?, error = ?"
                    " WHERE run_id = ? AND status IN (?, ?, ?)",
                    (BuildStatus.FAILED.value, now,
                     "interrupted: the careen process ended before this build finished",
                     run_id, BuildStatus.PENDING.value, BuildStatus.BUILDING.value,
                     BuildStatus.BUILT.value),
                )
        return marked

    def last_run(self, kind: RunKind | str | None = None) -> RunRecord | None:
        found = self.runs(1, kind=kind)
        return found[0] if found else None

    def unfinished_run(self, kind: RunKind | str | None = None) -> RunRecord | None:
        """The latest run (of ``kind``) if it did not finish — ``running`` or
        ``interrupted`` — else ``None``: what ``--resume`` picks up. Call
        :meth:`mark_interrupted_runs` first to tell a dead ``running`` run from a live one."""
        latest = self.last_run(kind)
        return latest if latest is not None and not latest.finished else None

    def runs(self, limit: int = 20, *, kind: RunKind | str | None = None) -> list[RunRecord]:
        """The latest ``limit`` runs (of ``kind``), newest first."""
        if kind is None:
            rows = self._db.execute(
                "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE kind = ? ORDER BY started_at DESC, rowid DESC"
                " LIMIT ?",
                (_enum(RunKind, kind, "run kind").value, limit),
            ).fetchall()
        return [self._run_record(row) for row in rows]

    def run(self, run_id: str) -> RunDetail:
        """A run with everything recorded under it."""
        record = self._run_record(self._run_row(run_id))
        verdicts = tuple(
            VerdictRecord(row["run_id"], row["image"], row["digest"], row["kind"],
                          row["reason"])
            for row in self._db.execute(
                "SELECT * FROM verdicts WHERE run_id = ? ORDER BY id", (run_id,)
            )
        )
        scans = tuple(
            _scan_record(row)
            for row in self._db.execute(
                "SELECT * FROM scans WHERE run_id = ? ORDER BY id", (run_id,)
            )
        )
        builds = tuple(
            _build_record(row)
            for row in self._db.execute(
                "SELECT * FROM builds WHERE run_id = ? ORDER BY step, id", (run_id,)
            )
        )
        return RunDetail(record, verdicts, scans, builds)

    # -- plans -------------------------------------------------------------------------------

    def save_plan(self, body: Mapping[str, Any], *, source: str,
                  policy: str | None) -> str:
        """Store a plan as given; return its id (``plan-YYYYMMDD-HHMMSS-xxxx``)."""
        if not isinstance(body, Mapping):
            raise TypeError(f"a plan body is a JSON object (dict), not {type(body).__name__}")
        body_text = _json_text(dict(body), "plan body", refuse_secrets=False)
        now = self._clock()
        return self._insert_with_new_id(
            "plan", now,
            "INSERT INTO plans (id, created_at, source, policy, body) VALUES (?, ?, ?, ?, ?)",
            (_time_text(now), _plan_source(source), policy, body_text),
        )

    def import_plan(self, plan_id: str, body: Mapping[str, Any], *, source: str,
                    policy: str | None) -> PlanRecord:
        """Store a plan made elsewhere under its own id (a CI agent running one image of a
        plan another machine made); an id already stored is kept as it is."""
        if not isinstance(body, Mapping):
            raise TypeError(f"a plan body is a JSON object (dict), not {type(body).__name__}")
        body_text = _json_text(dict(body), "plan body", refuse_secrets=False)
        with self._write():
            self._db.execute(
                "INSERT OR IGNORE INTO plans (id, created_at, source, policy, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (plan_id, _time_text(self._clock()), _plan_source(source), policy, body_text),
            )
        return self.load_plan(plan_id)

    def load_plan(self, plan_id: str) -> PlanRecord:
        """The plan ``plan_id``; :class:`UnknownPlanError` (listing the latest ids) if none."""
        return _plan_record(self._plan_row(plan_id))

    def latest_plan(self) -> PlanRecord | None:
        plans = self.plans(1)
        return plans[0] if plans else None

    def plans(self, limit: int = 20) -> list[PlanRecord]:
        """The latest ``limit`` plans, newest first."""
        rows = self._db.execute(
            "SELECT * FROM plans ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_plan_record(row) for row in rows]

    # -- verdicts and scans ------------------------------------------------------------------

    def record_verdict(self, run_id: str, image: ImageReference | str, *,
                       digest: str | None, kind: str, reason: str) -> None:
        self._insert_many(
            "INSERT INTO verdicts (run_id, image, digest, kind, reason) VALUES (?, ?, ?, ?, ?)",
            run_id, [(run_id, _image_text(image), digest, str(kind), reason)],
        )

    def record_verdicts(self, run_id: str, judged: Iterable[tuple[Image, Verdict]]) -> int:
        """Record many verdicts (``policy.Judged`` pairs) in one transaction; return how
        many."""
        rows = [
            (run_id, image.reference.short, image.digest, verdict.kind.value, verdict.reason)
            for image, verdict in judged
        ]
        self._insert_many(
            "INSERT INTO verdicts (run_id, image, digest, kind, reason) VALUES (?, ?, ?, ?, ?)",
            run_id, rows,
        )
        return len(rows)

    def record_scan(self, run_id: str, image: ImageReference | str, *,
                    phase: ScanPhase | str, summary: ScanSummary,
                    digest: str | None = None) -> None:
        self._insert_many(_INSERT_SCAN, run_id, [
            _scan_row(run_id, _image_text(image), digest, _enum(ScanPhase, phase, "phase"),
                      summary),
        ])

    def record_scans(self, run_id: str, images: Iterable[Image], *,
                     phase: ScanPhase | str) -> int:
        """Record every image's scan summary in one transaction; return how many. The
        ``before`` scans of every image (passing ones too) are what :meth:`trend` sums."""
        scan_phase = _enum(ScanPhase, phase, "phase")
        rows = [
            _scan_row(run_id, image.reference.short, image.digest, scan_phase, image.scan)
            for image in images
        ]
        self._insert_many(_INSERT_SCAN, run_id, rows)
        return len(rows)

    # -- builds ------------------------------------------------------------------------------

    def build_pending(self, run_id: str, image: ImageReference | str, *,
                      step: int) -> BuildRecord:
        """Record that the plan will build ``image`` at ``step`` (optional: lets history show
        what a run meant to do before it started)."""
        with self._write():
            run = self._run_row(run_id)
            build_id = self._db.execute(
                "INSERT INTO builds (run_id, plan_id, image, step, attempt, status)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, run["plan_id"], _image_text(image), int(step),
                 self._next_attempt(run, _image_text(image)), BuildStatus.PENDING.value),
            ).lastrowid
        return self._build(_row_id(build_id))

    def build_started(self, run_id: str, image: ImageReference | str, *, step: int,
                      log_path: str | os.PathLike[str] | None = None) -> BuildRecord:
        """Record that building ``image`` starts now. A ``pending`` record of the same image
        in this run becomes this build; otherwise (first or next attempt) one is added."""
        text = _image_text(image)
        log = os.fspath(log_path) if log_path is not None else None
        now = _time_text(self._clock())
        with self._write():
            run = self._run_row(run_id)
            pending = self._db.execute(
                "SELECT id FROM builds WHERE run_id = ? AND image = ? AND status = ?"
                " ORDER BY id DESC LIMIT 1",
                (run_id, text, BuildStatus.PENDING.value),
            ).fetchone()
            if pending is not None:
                build_id = int(pending["id"])
                self._db.execute(
                    "UPDATE builds SET status = ?, step = ?, started_at = ?, log_path = ?"
                    " WHERE id = ?",
                    (BuildStatus.BUILDING.value, int(step), now, log, build_id),
                )
            else:
                build_id = _row_id(self._db.execute(
                    "INSERT INTO builds (run_id, plan_id, image, step, attempt, status,"
                    " started_at, log_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, run["plan_id"], text, int(step), self._next_attempt(run, text),
                     BuildStatus.BUILDING.value, now, log),
                ).lastrowid)
        return self._build(build_id)

    def build_built(self, build_id: int, *, digest: str | None = None) -> BuildRecord:
        """The image is built (not yet pushed)."""
        return self._move_build(build_id, BuildStatus.BUILT, digest=digest, finish=False)

    def build_pushed(self, build_id: int, *, digest: str,
                     duration: float | None = None) -> BuildRecord:
        """The image is pushed as ``digest``: from now on resume will not build it again."""
        if not digest:
            raise ValueError("a pushed build needs the pushed manifest's digest")
        return self._move_build(build_id, BuildStatus.PUSHED, digest=digest, duration=duration)

    def build_failed(self, build_id: int, *, error: str,
                     duration: float | None = None) -> BuildRecord:
        return self._move_build(build_id, BuildStatus.FAILED, error=error, duration=duration)

    def build_skipped(self, run_id: str, image: ImageReference | str, *, step: int,
                      reason: str) -> BuildRecord:
        """Record that ``image`` is not built in this run (already pushed before a resume, a
        base image failed...). A ``pending`` record of it becomes the skipped one."""
        text = _image_text(image)
        now = _time_text(self._clock())
        with self._write():
            run = self._run_row(run_id)
            pending = self._db.execute(
                "SELECT id FROM builds WHERE run_id = ? AND image = ? AND status = ?"
                " ORDER BY id DESC LIMIT 1",
                (run_id, text, BuildStatus.PENDING.value),
            ).fetchone()
            if pending is not None:
                build_id = int(pending["id"])
                self._db.execute(
                    "UPDATE builds SET status = ?, step = ?, finished_at = ?, error = ?"
                    " WHERE id = ?",
                    (BuildStatus.SKIPPED.value, int(step), now, _error_text(reason), build_id),
                )
            else:
                build_id = _row_id(self._db.execute(
                    "INSERT INTO builds (run_id, plan_id, image, step, attempt, status,"
                    " finished_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, run["plan_id"], text, int(step), self._next_attempt(run, text),
                     BuildStatus.SKIPPED.value, now, _error_text(reason)),
                ).lastrowid)
        return self._build(build_id)

    def pushed_images(self, plan_id: str) -> dict[str, str]:
        """Image -> pushed digest, for every image of ``plan_id`` pushed by any run of it.
        Exact after a crash: a push is recorded in its own committed transaction."""
        rows = self._db.execute(
            "SELECT image, digest FROM builds WHERE plan_id = ? AND status = ?"
            " ORDER BY finished_at, id",
            (plan_id, BuildStatus.PUSHED.value),
        ).fetchall()
        return {row["image"]: row["digest"] for row in rows}

    def build(self, build_id: int) -> BuildRecord:
        return self._build(build_id)

    # -- reports -----------------------------------------------------------------------------

    def trend(self, limit_nights: int = 30, *,
              kind: RunKind | str | None = None,
              running: Mapping[str, Mapping[str, Any]] | None = None) -> list[TrendPoint]:
        """The fleet's findings per severity, one point per run with ``before`` scans: the
        latest ``limit_nights`` such runs, oldest first (ready to plot). An image scanned twice
        in one run counts once (its last record). ``running`` gives the :func:`fleet_summary`
        of runs not finished yet (the run writing its report), so their scans are not
        summed again."""
        query = (
            "SELECT id, kind, started_at, summary FROM runs r WHERE EXISTS"
            " (SELECT 1 FROM scans s WHERE s.run_id = r.id AND s.phase = ?)"
        )
        parameters: list[Any] = [ScanPhase.BEFORE.value]
        if kind is not None:
            query += " AND r.kind = ?"
            parameters.append(_enum(RunKind, kind, "run kind").value)
        query += " ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?"
        parameters.append(limit_nights)
        points: list[TrendPoint] = []
        for run in self._db.execute(query, parameters).fetchall():
            started = _time_value(run["started_at"])
            fleet = _fleet_totals(run["summary"], (running or {}).get(run["id"]))
            if fleet is not None:  # summed as the run recorded its scans: no re-read
                images, scanned, counts = fleet
                points.append(TrendPoint(
                    run_id=run["id"], kind=RunKind(run["kind"]), started_at=started,
                    date=started.astimezone(UTC).date(), images=images, scanned=scanned,
                    counts=counts,
                ))
                continue
            latest: dict[str, ScanSummary] = {}
            for row in self._db.execute(
                "SELECT * FROM scans WHERE run_id = ? AND phase = ? ORDER BY id",
                (run["id"], ScanPhase.BEFORE.value),
            ):
                latest[row["image"]] = _scan_record(row).summary
            total = SeverityCounts()
            scanned = 0
            for summary in latest.values():
                if summary.counts is not None:
                    total += summary.counts
                    scanned += 1
            points.append(TrendPoint(
                run_id=run["id"], kind=RunKind(run["kind"]), started_at=started,
                date=started.astimezone(UTC).date(), images=len(latest), scanned=scanned,
                counts=total,
            ))
        points.reverse()
        return points

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One transaction. ``IMMEDIATE`` takes the write lock at once, so a busy database
        waits (busy timeout) at BEGIN instead of failing half-way."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if _busy(error):
                raise _busy_error(self._path) from error
            raise
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _insert_many(self, sql: str, run_id: str, rows: list[tuple[Any, ...]]) -> None:
        with self._write():
            self._run_row(run_id)
            self._db.executemany(sql, rows)

    def _insert_with_new_id(self, prefix: str, now: datetime, sql: str,
                            values: tuple[Any, ...]) -> str:
        for _ in range(8):
            record_id = new_record_id(prefix, now)
            try:
                with self._write():
                    self._db.execute(sql, (record_id, *values))
            except sqlite3.IntegrityError as error:
                if "UNIQUE" in str(error) and f"{prefix}s.id" in str(error):
                    continue
                raise
            return record_id
        raise RuntimeError(f"could not find an unused {prefix} id")  # pragma: no cover

    def _next_attempt(self, run: sqlite3.Row, image: str) -> int:
        """Attempts count across every run of the run's plan (a resumed image's second try
        is attempt 2); without a plan, within the run. Pending and skipped records are not
        attempts."""
        if run["plan_id"] is not None:
            where, key = "plan_id = ?", run["plan_id"]
        else:
            where, key = "run_id = ?", run["id"]
        row = self._db.execute(
            f"SELECT count(*) FROM builds WHERE {where} AND image = ?"  # noqa: S608 - fixed text
            " AND status NOT IN (?, ?)",
            (key, image, BuildStatus.PENDING.value, BuildStatus.SKIPPED.value),
        ).fetchone()
        return int(row[0]) + 1

    def _move_build(self, build_id: int, status: BuildStatus, *, digest: str | None = None,
                    error: str | None = None, duration: float | None = None,
                    finish: bool = True) -> BuildRecord:
        now = self._clock()
        with self._write():
            current = self._build(build_id)
            allowed = _BUILD_TRANSITIONS.get(current.status, frozenset())
            if status not in allowed:
                raise ValueError(
                    f"build {build_id} of {current.image} is {current.status.value}; "
                    f"it cannot become {status.value}"
                )
            if finish and duration is None and current.started_at is not None:
                duration = max(0.0, (now - current.started_at).total_seconds())
            self._db.execute(
                "UPDATE builds SET status = ?, digest = coalesce(?, digest),"
                " error = coalesce(?, error), finished_at = ?, duration = ? WHERE id = ?",
                (status.value, digest, _error_text(error) if error is not None else None,
                 _time_text(now) if finish else None, duration if finish else None, build_id),
            )
        return self._build(build_id)

    def _build(self, build_id: int) -> BuildRecord:
        row = self._db.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        if row is None:
            raise ValueError(f"no build record {build_id} in the state at {self._path}")
        return _build_record(row)

    def _run_row(self, run_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise UnknownRunError(self._path, run_id, self._latest_ids("runs", "started_at"))
        return row

    def _plan_row(self, plan_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM plans WHERE id = ?", (plan_id,)
        ).fetchone()
        if row is None:
            raise UnknownPlanError(self._path, plan_id, self._latest_ids("plans", "created_at"))
        return row

    def _latest_ids(self, table: str, time_column: str) -> list[str]:
        # Table and column names come from this module's two call sites, never from input.
        rows = self._db.execute(
            f"SELECT id FROM {table} ORDER BY {time_column} DESC, rowid DESC LIMIT ?",  # noqa: S608
            (LATEST_IDS_SHOWN,),
        ).fetchall()
        return [row["id"] for row in rows]

    def _run_record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"], kind=RunKind(row["kind"]), status=RunStatus(row["status"]),
            started_at=_time_value(row["started_at"]),
            finished_at=_optional_time(row["finished_at"]), exit_code=row["exit_code"],
            tree_commit=row["tree_commit"], plan_id=row["plan_id"],
            resumed_from=row["resumed_from"], pid=row["pid"],
            options=json.loads(row["options"]),
            summary=json.loads(row["summary"]) if row["summary"] is not None else None,
        )


# -- row conversion --------------------------------------------------------------------------

_INSERT_SCAN = (
    "INSERT INTO scans (run_id, image, digest, phase, status, counts, scanner, scanned_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _scan_row(run_id: str, image: str, digest: str | None, phase: ScanPhase,
              summary: ScanSummary) -> tuple[Any, ...]:
    return (
        run_id, image, digest, phase.value, summary.status.value,
        _counts_text(summary.counts, summary.fixable, summary.fixable_total,
                     summary.counts_unit),
        summary.scanner,
        summary.scanned_at.isoformat() if summary.scanned_at is not None else None,
    )


@functools.lru_cache(maxsize=4096)
def _counts_text(counts: SeverityCounts | None, fixable: SeverityCounts | None,
                 fixable_total: int | None, unit: str) -> str | None:
    """The ``scans.counts`` text. A fleet has few distinct count sets and a night records
    every image's: each set is encoded once."""
    document = scan_counts_to_json(ScanSummary(ScanStatus.SUCCESS, counts=counts,
                                               fixable=fixable, fixable_total=fixable_total,
                                               counts_unit=unit))
    return json.dumps(document) if document is not None else None


def fleet_summary(images: int, scanned: int, counts: SeverityCounts) -> dict[str, Any]:
    """The ``fleet`` entry of a run's summary: what :meth:`StateStore.trend` plots for it,
    summed by the run as it recorded its ``before`` scans (one image, one scan)."""
    return {"images": images, "scanned": scanned, "counts": counts.as_dict()}


def _fleet_totals(summary_text: str | None, given: Mapping[str, Any] | None = None,
                  ) -> tuple[int, int, SeverityCounts] | None:
    if given is None and not summary_text:
        return None
    try:
        fleet = given if given is not None else json.loads(str(summary_text)).get("fleet")
        if not isinstance(fleet, dict):
            return None
        return (int(fleet["images"]), int(fleet["scanned"]),
                counts_from_json(fleet["counts"], what="fleet counts"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # an older or damaged summary: the scans are summed instead


def _scan_record(row: sqlite3.Row) -> ScanRecord:
    counts = json.loads(row["counts"]) if row["counts"] is not None else None
    summary = scan_counts_from_json(
        counts, status=row["status"], scanner=row["scanner"],
        scanned_at=_optional_time(row["scanned_at"]),
    )
    return ScanRecord(row["run_id"], row["image"], row["digest"], ScanPhase(row["phase"]),
                      summary)


def _build_record(row: sqlite3.Row) -> BuildRecord:
    return BuildRecord(
        id=row["id"], run_id=row["run_id"], plan_id=row["plan_id"], image=row["image"],
        step=row["step"], attempt=row["attempt"], status=BuildStatus(row["status"]),
        started_at=_optional_time(row["started_at"]),
        finished_at=_optional_time(row["finished_at"]), duration=row["duration"],
        digest=row["digest"], log_path=row["log_path"], error=row["error"],
    )


def _plan_record(row: sqlite3.Row) -> PlanRecord:
    return PlanRecord(
        id=row["id"], created_at=_time_value(row["created_at"]), source=row["source"],
        policy=row["policy"], body=json.loads(row["body"]),
    )


def _row_id(value: int | None) -> int:
    if value is None:  # pragma: no cover - sqlite3 always sets it after an INSERT
        raise RuntimeError("SQLite returned no row id for an INSERT")
    return value


def _image_text(image: ImageReference | str) -> str:
    text = image.short if isinstance(image, ImageReference) else image
    if not isinstance(text, str) or not text:
        raise ValueError(f"an image is a reference or non-empty text, not {image!r}")
    return text


def _error_text(text: str) -> str:
    if len(text) <= ERROR_TEXT_LIMIT:
        return text
    return "…" + text[-(ERROR_TEXT_LIMIT - 1):]


def _time_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("state timestamps must be timezone-aware (the clock returned naive)")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _time_value(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: _E | str, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise ValueError(f"{what} {value!r} is not one of {known}") from None


#: Keys that name a secret. Matched against run options and summaries, which a CLI might
#: build from all of its flags — including a registry password.
_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|(^|[_-])pass$|secret|token|credential|api_?key|private_?key",
    re.IGNORECASE,
)


def _json_text(document: dict[str, Any], what: str, *, refuse_secrets: bool) -> str:
    if refuse_secrets:
        _refuse_secret_keys(document, what)
    try:
        return json.dumps(document, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} cannot be stored as JSON: {error}") from None


def _refuse_secret_keys(document: object, what: str, where: str = "") -> None:
    if isinstance(document, Mapping):
        for key, value in document.items():
            name = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and _SECRET_KEY.search(key):
                raise ValueError(
                    f"{what}: key {name!r} looks like a secret; secrets are never stored in "
                    "the state — leave it out"
                )
            _refuse_secret_keys(value, what, name)
    elif isinstance(document, list | tuple):
        for index, item in enumerate(document):
            _refuse_secret_keys(item, what, f"{where}[{index}]")


def _plan_source(source: str) -> str:
    """``harbor``, ``stdin``, ``url``, ``file:PATH`` or ``url:URL``. A URL is stored without
    user info, query or fragment, where credentials and tokens hide."""
    if source in ("harbor", "stdin", "url"):
        return source
    if source.startswith("file:") and len(source) > len("file:"):
        return source
    if source.startswith("url:") and len(source) > len("url:"):
        parts = urlsplit(source[len("url:"):])
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return "url:" + urlunsplit((parts.scheme, host, parts.path, "", ""))
    raise ValueError(
        f"plan source {source!r} is not one of harbor, stdin, url, url:URL, file:PATH"
    )


def _make_private_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents with mode 0700 (existing ones are left as
    they are)."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        except OSError as error:
            raise StateFileError(
                folder / STATE_FILE_NAME, f"cannot create folder {path}: {error.strerror}"
            ) from error


# -- the lock file ---------------------------------------------------------------------------


def _acquire_lock(lock_path: Path, state_path: Path, now: datetime) -> int:
    """Take the ``flock`` on ``lock_path`` without waiting; write our pid and start time
    into it for the message another contender will show. Return the open descriptor."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StateFileError(
            state_path, f"cannot open lock file {lock_path}: {error.strerror}"
        ) from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, started = _read_holder(fd)
        os.close(fd)
        raise StateLockedError(state_path, pid, started) from None
    except BaseException:
        os.close(fd)
        raise
    holder = json.dumps({"pid": os.getpid(), "started_at": _time_text(now)})
    os.ftruncate(fd, 0)
    os.pwrite(fd, (holder + "\n").encode(), 0)
    return fd


def _release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    """Who holds the lock, as written in the file; ``(None, None)`` if it cannot be read
    (the holder may be between truncating and writing it)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    pid, started = data.get("pid"), data.get("started_at")
    return (pid if isinstance(pid, int) else None,
            started if isinstance(started, str) else None)
