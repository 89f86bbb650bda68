"""The part of :class:`careen.state.store.StateStore` for runs."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from careen.state.database import Database
from careen.state.lock import acquire_lock, release_lock
from careen.state.records import (
    BuildStatus,
    RunDetail,
    RunKind,
    RunRecord,
    RunStatus,
    StateLockedError,
    VerdictRecord,
)
from careen.state.rows import (
    build_record,
    enum_value,
    json_text,
    optional_time,
    scan_record,
    time_text,
    time_value,
)


class Runs(Database):
    """Runs: begun, finished, interrupted, listed, and one run with everything
    recorded under it."""

    def begin_run(self, kind: RunKind | str, *, plan_id: str | None = None,
                  tree_commit: str | None = None, options: Mapping[str, Any] | None = None,
                  resumed_from: str | None = None) -> RunRecord:
        """Record that a run starts now (status ``running``)."""
        run_kind = enum_value(RunKind, kind, "run kind")
        options_text = json_text(dict(options or {}), "run options", refuse_secrets=True)
        if plan_id is not None:
            self._plan_row(plan_id)
        if resumed_from is not None:
            self._run_row(resumed_from)
        now = self._clock()
        run_id = self._insert_with_new_id(
            "run", now,
            "INSERT INTO runs (id, kind, started_at, status, tree_commit, plan_id, resumed_from,"
            " pid, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_kind.value, time_text(now), RunStatus.RUNNING.value, tree_commit, plan_id,
             resumed_from, os.getpid(), options_text),
        )
        self._own_runs.add(run_id)
        return self._run_record(self._run_row(run_id))

    def finish_run(self, run_id: str, status: RunStatus | str, exit_code: int,
                   summary: Mapping[str, Any] | None = None) -> RunRecord:
        """Record the end of a run: ``succeeded``, ``failed`` or ``interrupted`` (stopped by a
        signal the process could handle)."""
        final = enum_value(RunStatus, status, "run status")
        if final is RunStatus.RUNNING:
            raise ValueError("finish_run needs a final status, not 'running'")
        summary_text = (
            None if summary is None
            else json_text(dict(summary), "run summary", refuse_secrets=True)
        )
        with self._write():
            row = self._run_row(run_id)
            if RunStatus(row["status"]) in (RunStatus.SUCCEEDED, RunStatus.FAILED):
                raise ValueError(f"run {run_id} already finished ({row['status']})")
            self._db.execute(
                "UPDATE runs SET status = ?, exit_code = ?, finished_at = ?, summary = ?"
                " WHERE id = ?",
                (final.value, int(exit_code), time_text(self._clock()), summary_text, run_id),
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
            fd = acquire_lock(self.lock_path, self._path, self._clock())
        except StateLockedError:
            return []
        try:
            return self._interrupt_running()
        finally:
            release_lock(fd)

    def _interrupt_running(self) -> list[str]:
        now = time_text(self._clock())
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
                (enum_value(RunKind, kind, "run kind").value, limit),
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
            scan_record(row)
            for row in self._db.execute(
                "SELECT * FROM scans WHERE run_id = ? ORDER BY id", (run_id,)
            )
        )
        builds = tuple(
            build_record(row)
            for row in self._db.execute(
                "SELECT * FROM builds WHERE run_id = ? ORDER BY step, id", (run_id,)
            )
        )
        return RunDetail(record, verdicts, scans, builds)

    def _run_record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"], kind=RunKind(row["kind"]), status=RunStatus(row["status"]),
            started_at=time_value(row["started_at"]),
            finished_at=optional_time(row["finished_at"]), exit_code=row["exit_code"],
            tree_commit=row["tree_commit"], plan_id=row["plan_id"],
            resumed_from=row["resumed_from"], pid=row["pid"],
            options=json.loads(row["options"]),
            summary=json.loads(row["summary"]) if row["summary"] is not None else None,
        )
