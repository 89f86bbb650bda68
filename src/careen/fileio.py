"""Writing files so that a reader never sees half of one.

Every file Careen writes (vulnerable.list, reports, state) goes through
:func:`write_atomically`: the text goes to a temporary file in the same folder, is flushed to
disk, then renamed over the target. A crash or a full disk leaves the old file, never a
truncated one; a job reading vulnerable.list while ``list-vulnerable-images`` runs sees the old
list or the new one.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from careen.errors import CareenError

#: Mode of a new file (before the umask-free rename); an existing file keeps its own mode.
NEW_FILE_MODE = 0o644


def write_atomically(path: str | os.PathLike[str], data: str | bytes, *,
                     encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``data`` atomically. Text is written as is: ``"\\n"`` stays
    ``"\\n"`` on every platform. Raises :class:`CareenError` naming the path on failure."""
    target = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    folder = target.parent
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    except OSError as error:
        raise _write_error(target, error) from error
    temp_name: str | None = None
    try:
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
        temp_name = None
    except OSError as error:
        raise _write_error(target, error) from error
    finally:
        if temp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
    _fsync_folder(folder)


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


def _write_error(target: Path, error: OSError) -> CareenError:
    reason = error.strerror or type(error).__name__
    return CareenError(
        f"cannot write {target}: {reason}",
        hint="check that the folder exists and that you may write to it",
    )
