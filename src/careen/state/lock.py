"""The run lock: ``flock`` on ``<db>.lock``, dropped by the kernel when its holder
dies, with the holder's pid and start time written in it for the next contender's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from datetime import datetime
from pathlib import Path

from careen.state.records import StateBusyError, StateFileError, StateLockedError, lock_path_for
from careen.state.rows import time_text


def acquire_lock(lock_path: Path, state_path: Path, now: datetime) -> int:
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
        pid, started = read_holder(fd)
        os.close(fd)
        raise StateLockedError(state_path, pid, started) from None
    except BaseException:
        os.close(fd)
        raise
    holder = json.dumps({"pid": os.getpid(), "started_at": time_text(now)})
    os.ftruncate(fd, 0)
    os.pwrite(fd, (holder + "\n").encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def read_holder(fd: int) -> tuple[int | None, str | None]:
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


def busy_error(path: Path) -> StateBusyError:
    """The error for ``path`` held by another process's transaction, naming the holder when
    its run lock names one (not this process: then the holder is someone else, unnamed)."""
    try:
        fd = os.open(lock_path_for(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return StateBusyError(path, None, None)
    try:
        pid, started = read_holder(fd)
    finally:
        os.close(fd)
    if pid == os.getpid():
        return StateBusyError(path, None, None)
    return StateBusyError(path, pid, started)


def is_busy(error: BaseException) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    text = str(error).lower()
    return "locked" in text or "busy" in text
