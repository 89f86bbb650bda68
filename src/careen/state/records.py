"""What the state holds, as values: run, plan, scan and build records, their
vocabularies, the errors of the store, and where the state file lives.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from careen.errors import CareenError, ExitCode, UsageError
from careen.scan import ScanSummary, SeverityCounts

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
    #: Built, and its push under way: the registry may have the image or not. Durable
    #: before the push starts, with the built image's id, so that a resume after a crash
    #: in the push can ask the registry whether the push arrived (never trusted without).
    PUSHING = "pushing"
    PUSHED = "pushed"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_BUILD_STATUSES


_FINAL_BUILD_STATUSES = frozenset({BuildStatus.PUSHED, BuildStatus.FAILED, BuildStatus.SKIPPED})

#: Which status a build may move to from which: a record never goes back (a pushed image
#: stays pushed, which is what resume trusts).
BUILD_TRANSITIONS: Mapping[BuildStatus, frozenset[BuildStatus]] = {
    BuildStatus.PENDING: frozenset(
        {BuildStatus.BUILDING, BuildStatus.SKIPPED, BuildStatus.FAILED}
    ),
    BuildStatus.BUILDING: frozenset(
        {BuildStatus.BUILT, BuildStatus.PUSHING, BuildStatus.PUSHED, BuildStatus.FAILED}
    ),
    BuildStatus.BUILT: frozenset({BuildStatus.PUSHING, BuildStatus.PUSHED, BuildStatus.FAILED}),
    BuildStatus.PUSHING: frozenset({BuildStatus.PUSHED, BuildStatus.FAILED}),
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
    #: The built image's id (its config digest, ``sha256:...``), recorded as its push
    #: starts: what a resume compares with the config of the manifest the registry serves.
    image_id: str | None = None


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
