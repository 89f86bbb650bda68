"""Writing files so that a reader never sees half of one.

Every file Careen writes (vulnerable.list, reports, state) goes through
:func:`write_atomically`: the text goes to a temporary file in the same folder, is flushed to
disk, then renamed over the target. A crash or a full disk leaves the old file, never a
truncated one; a job reading vulnerable.list while ``list-vulnerable-images`` runs sees the old
list or the new one. A writer killed between writing and renaming (SIGKILL, a Jenkins abort
that does not wait) cannot remove its temporary file; each names its writer's process id, and
the next write of the same file removes those whose writer is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from careen.errors import WriteError

#: Mode of a new file (before the umask-free rename); an existing file keeps its own mode.
NEW_FILE_MODE = 0o644


def write_atomically(path: str | os.PathLike[str], data: str | bytes, *,
                     encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``data`` atomically. Text is written as is: ``"\\n"`` stays
    ``"\\n"`` on every platform. Raises :class:`WriteError` naming the path on failure (exit 2)."""
    target = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    folder = target.parent
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    except OSError as error:
        raise write_error(target, error) from error
    temp_name: str | None = None
    try:
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.{os.getpid()}.",
                                         suffix=".tmp")
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
        temp_name = None
    except OSError as error:
        raise write_error(target, error) from error
    finally:
        if temp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
    _fsync_folder(folder)
    _remove_leftovers(folder, target.name)


def _remove_leftovers(folder: Path, name: str) -> None:
    """Remove the temporary files of ``name`` left by writers that were killed: the process
    id in each file's name is no longer running. A live writer's file is never touched (its
    rename still to come); a file without a process id (or an id this system cannot check)
    is left alone."""
    prefix = f".{name}."
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        pid_text = entry.name[len(prefix):].split(".", 1)[0]
        if pid_text.isdigit() and not _running(int(pid_text)):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM), or no way to ask: assume it runs
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable. Best effort: not every platform can open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


#: Errors that mean the disk (or the quota) is full.
FULL_DISK = frozenset({errno.ENOSPC, errno.EDQUOT})


def write_error(target: str | os.PathLike[str], error: OSError) -> WriteError:
    """The :class:`WriteError` for ``error`` met writing ``target``: the system's reason in
    lower case (``cannot write reports/run.json: no space left on device``), exit 2."""
    reason = error.strerror or type(error).__name__
    reason = reason[:1].lower() + reason[1:]
    if error.errno in FULL_DISK:
        hint = "free some space on that disk, or write elsewhere (e.g. --reports-dir)"
    else:
        hint = "check that the folder exists and that you may write to it"
    return WriteError(str(target), reason, hint=hint)


def full_disk_in(error: BaseException) -> WriteError | None:
    """The :class:`WriteError` for a full disk met anywhere in ``error`` (its causes, or an
    exception group from a task group), or ``None``. Whatever code wrote the file (a build
    log, a report), a full disk is then told as one line and exit 2, not a traceback."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, WriteError):
            return current
        if isinstance(current, OSError) and current.errno in FULL_DISK:
            return write_error(current.filename or "a file", current)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None
