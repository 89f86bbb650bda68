"""Typed errors. Each one carries the exit code the CLI ends with and a one-line diagnosis.

The CLI prints ``str(error)`` (and the hint, if any) instead of a traceback, so the message
must name the input that was wrong and say what to do about it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    #: Images break the policy, or some work (a build, a push) failed.
    FAILED = 1
    #: Bad command line, bad config, bad input file.
    USAGE = 2
    #: A service (Harbor, the registry, the builder) could not be reached, or answered
    #: something that is not its answer (never a smaller fleet judged clean).
    UNREACHABLE = 3
    #: Careen itself failed (a bug): the message says so and ``--debug`` shows the traceback.
    INTERNAL = 4


class CareenError(Exception):
    """Base of every error Careen reports to a person rather than as a traceback."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(CareenError):
    """The command line or an input given by the user is wrong."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A config file, environment variable or flag has a bad value.

    ``source`` names where the value came from (a file path, ``environment``, ``command line``);
    ``key`` is the dotted key (``harbor.url``).
    """

    def __init__(
        self, message: str, *, source: str | None = None, key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ": ".join(part for part in (source, key) if part)
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.source = source
        self.key = key


class InvalidReferenceError(UsageError, ValueError):
    """An image reference does not follow the distribution reference grammar."""

    def __init__(self, text: str, reason: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"invalid image reference {shown!r}: {reason}")
        self.text = text
        self.reason = reason


class PolicySyntaxError(UsageError):
    """A policy rule does not parse. ``column`` is 1-based."""

    def __init__(self, rule: str, column: int, reason: str) -> None:
        pointer = " " * (column - 1) + "^"
        super().__init__(f"policy rule, column {column}: {reason}\n  {rule}\n  {pointer}")
        self.rule = rule
        self.column = column
        self.reason = reason


class InputFileError(UsageError):
    """A file given as input (vulnerable.list, a Dockerfile) is malformed."""

    def __init__(self, path: str, message: str, *, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class WriteError(UsageError):
    """A file Careen was told to write cannot be written: the folder is missing, not
    writable, or on a full disk. ``path`` is the file; ``reason`` the system's word for it
    (``no space left on device``)."""

    def __init__(self, path: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"cannot write {path}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


class ServiceError(CareenError):
    """A service (Harbor, a registry, a builder) could not be reached, refused to work, or
    answered something that is not its answer (not JSON, too large, too slow, no list).

    ``service`` is a short name (``Harbor``), ``host`` where it was looked for.
    """

    exit_code = ExitCode.UNREACHABLE

    def __init__(self, service: str, host: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{service} at {host}: {message}", hint=hint)
        self.service = service
        self.host = host
