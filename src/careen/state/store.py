"""Careen's memory: a SQLite file of runs, plans, verdicts, scans and builds.

:class:`StateStore` is the one entry. It is composed of one part per seam, each a module of
this package over the shared :class:`~careen.state.database.Database` (connection, lifecycle,
run lock, transactions): :mod:`~careen.state.runs`, :mod:`~careen.state.plans`,
:mod:`~careen.state.scans` (verdicts and scan summaries), :mod:`~careen.state.builds` and
:mod:`~careen.state.trend`. The values they return are in :mod:`~careen.state.records`, the
text forms of rows in :mod:`~careen.state.rows`, the lock file in :mod:`~careen.state.lock`.
Every name callers used from this module is still importable from it.

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
scans) are written in one transaction, so they cost one fsync too. The executor writes a
plan's build records from a thread of its own and groups those that queue up while the disk
is busy into one transaction (:meth:`Database.grouped`): a thousand-step plan at ``--jobs 16``
does not wait for a thousand fsyncs.

A push itself is announced first: "image X (id ``sha256:…``) is being pushed" is on disk
before the push starts (:meth:`Builds.build_pushing`), so a crash after the registry took
the push but before "pushed" was written leaves a record the resume asks the registry about
(:meth:`Builds.pushes_in_doubt`) instead of pushing again. That announcement is the one
fsync of a build step: its start may be lost to a power loss (the resume builds it again),
and its "pushed" needs none of its own — a crash of Careen keeps it (WAL), the next fsync
writes it with the rest of the log, and should a power loss take it first, the announcement
is still there for the resume to check.

The run lock is ``flock`` on ``<db>.lock``: the kernel drops it when the holder dies, however
it dies, so there is never a stale lock to clean up. Runs are meant to be begun while holding
it; :meth:`StateStore.mark_interrupted_runs` relies on that to tell a dead run from a live one.

Nothing stored here is secret, and it must stay so: run options and summaries with a key that
names a secret (``password``, ``token``…) are refused rather than written.
"""

from __future__ import annotations

from careen.state.builds import Builds
from careen.state.plans import Plans
from careen.state.records import (
    BUILD_TRANSITIONS,
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    ERROR_TEXT_LIMIT,
    LATEST_IDS_SHOWN,
    STATE_FILE_NAME,
    BuildRecord,
    BuildStatus,
    Clock,
    PlanRecord,
    RunDetail,
    RunKind,
    RunRecord,
    RunStatus,
    ScanPhase,
    ScanRecord,
    StateBusyError,
    StateFileError,
    StateLockedError,
    TrendPoint,
    UnknownPlanError,
    UnknownRecordError,
    UnknownRunError,
    VerdictRecord,
    default_state_path,
    lock_path_for,
    new_record_id,
    utc_now,
)
from careen.state.runs import Runs
from careen.state.scans import Scans
from careen.state.trend import Trend, fleet_summary

__all__ = [
    "BUILD_TRANSITIONS",
    "DEFAULT_BUSY_TIMEOUT_SECONDS",
    "ERROR_TEXT_LIMIT",
    "LATEST_IDS_SHOWN",
    "STATE_FILE_NAME",
    "BuildRecord",
    "BuildStatus",
    "Clock",
    "PlanRecord",
    "RunDetail",
    "RunKind",
    "RunRecord",
    "RunStatus",
    "ScanPhase",
    "ScanRecord",
    "StateBusyError",
    "StateFileError",
    "StateLockedError",
    "StateStore",
    "TrendPoint",
    "UnknownPlanError",
    "UnknownRecordError",
    "UnknownRunError",
    "VerdictRecord",
    "default_state_path",
    "fleet_summary",
    "lock_path_for",
    "new_record_id",
    "utc_now",
]


class StateStore(Runs, Plans, Scans, Builds, Trend):
    """One open state database. Use :meth:`open`; close it (or use ``with``) when done.

    Every write method commits before it returns. Image arguments take an
    :class:`ImageReference` (stored as its ``short`` form, ``repository:tag``) or text (stored
    as given): use one form consistently, since :meth:`pushed_images` keys are this text.
    """
