"""The open database under every part of the store: the connection, its lifecycle,
the run lock, one-transaction writes and the row look-ups the parts share.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from careen.state.lock import acquire_lock, busy_error, is_busy, release_lock
from careen.state.records import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    LATEST_IDS_SHOWN,
    Clock,
    StateFileError,
    UnknownPlanError,
    UnknownRunError,
    lock_path_for,
    new_record_id,
    utc_now,
)
from careen.state.rows import make_private_folders
from careen.state.schema import migrate


class Database:
    """One open state database (the base of
    :class:`careen.state.store.StateStore`). Use :meth:`open`; close it (or use
    ``with``) when done. Every write method of the parts commits before it returns."""

    def __init__(self, connection: sqlite3.Connection, path: Path, clock: Clock) -> None:
        self._db = connection
        self._path = path
        self._clock = clock
        self._lock_fd: int | None = None
        #: Runs begun through this object: never "interrupted" by it.
        self._own_runs: set[str] = set()
        #: Inside :meth:`grouped`: each write is a savepoint of the group's transaction.
        self._grouped = False
        #: Whether a write of the current group asked to be durable (its commit then is).
        self._group_durable = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, clock: Clock = utc_now,
             busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> Self:
        """Open (creating folders and file if needed) and migrate the database at ``path``.

        Raises :class:`StateFileError` if it cannot, and
        :class:`careen.state.schema.StateTooNewError` if a newer Careen wrote it."""
        target = Path(path)
        make_private_folders(target.parent)
        try:
            # Created here rather than by SQLite so that it is private from the start.
            os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as error:
            raise StateFileError(target, f"cannot create: {error.strerror}") from error
        try:
            # check_same_thread off: the executor writes a plan's build records from a thread
            # of its own (careen.update), while nothing else uses the store, so that a
            # commit's fsync holds up neither the event loop nor the builds.
            connection = sqlite3.connect(target, timeout=busy_timeout, isolation_level=None,
                                         check_same_thread=False)
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
            if is_busy(error):
                raise busy_error(target) from error
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
            release_lock(self._lock_fd)
            self._lock_fd = None
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[None]:
        """Hold the state's run lock for the ``with`` block, or raise
        :class:`StateLockedError` at once if another process holds it. Not re-entrant."""
        if self._lock_fd is not None:
            raise RuntimeError("this StateStore already holds the run lock")
        self._lock_fd = acquire_lock(self.lock_path, self._path, self._clock())
        try:
            yield
        finally:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:  # None if close() already released it
                release_lock(fd)

    @property
    def holds_lock(self) -> bool:
        return self._lock_fd is not None

    @contextlib.contextmanager
    def grouped(self) -> Iterator[None]:
        """Make the writes of the ``with`` block one transaction: each write is a savepoint
        of it, so one that fails is undone alone and raises as it would have, while the
        others commit together at the end of the block. Nothing of the block is on disk
        before it ends; if the commit itself fails, none of it is.

        The group is as durable as its most demanding write: committed without waiting for
        the disk, then, if any write of it asked for durability (the default of
        :meth:`_write`), the write-ahead log is synced — what ``synchronous = FULL`` does at
        a commit in WAL mode — before the block returns. A group of writes that need no
        fsync (a build's start, a push's start) costs none.

        The executor's record thread groups the records that queued up while the previous
        group was being written (group commit): a step's push is on disk before its children
        start, at a fraction of the fsyncs. Re-entrant (an inner group joins)."""
        if self._grouped:
            yield
            return
        self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            self._begin()
            self._grouped = True
            self._group_durable = False
            try:
                try:
                    yield
                finally:
                    self._grouped = False
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already (disk full)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if self._group_durable:
                self._sync_log()
        finally:
            self._db.execute("PRAGMA synchronous = FULL")

    def _sync_log(self) -> None:
        """The write-ahead log on disk (fsync), as ``synchronous = FULL`` leaves it after a
        commit: every transaction committed before is then durable (the log is written in
        order). The log exists while this connection is open."""
        descriptor = os.open(f"{self._path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _begin(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if is_busy(error):
                raise busy_error(self._path) from error
            raise

    @contextlib.contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[None]:
        """One transaction. ``IMMEDIATE`` takes the write lock at once, so a busy database
        waits (busy timeout) at BEGIN instead of failing half-way.

        ``durable=False`` commits without waiting for the disk (``synchronous = NORMAL``): in
        WAL mode the commit survives a crash of Careen itself, and the next durable commit
        writes it to disk too; only a power loss in between could lose it. For records whose
        loss costs nothing but repeated work (a build that started: a resume builds whatever
        is not recorded as pushed), this halves the fsyncs of a build step.

        Inside :meth:`grouped`, a savepoint of the group's transaction instead; the group
        commits durably if any of its writes asked to be."""
        if self._grouped:
            self._group_durable = self._group_durable or durable
            self._db.execute("SAVEPOINT careen_write")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK TO careen_write")
                self._db.execute("RELEASE careen_write")
                raise
            self._db.execute("RELEASE careen_write")
            return
        if not durable:
            self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            self._begin()
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            if not durable:
                self._db.execute("PRAGMA synchronous = FULL")

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
