"""How the core tells the outside world what it is doing, without knowing about terminals.

Long operations take an :class:`Observer`; the CLI supplies one that prints the seed's
``YYYY-MM-DD HH:MM:SS Processing IMAGE`` lines and a progress bar, tests supply a recorder,
and library users may pass :data:`NULL_OBSERVER`.
"""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def processing(self, image: str) -> None:
        """Work on one image starts (the seed's ``Processing IMAGE`` line)."""

    def progress(self, task: str, done: int, total: int | None) -> None:
        """``done`` of ``total`` units of ``task`` are finished (``total`` may be unknown)."""

    def info(self, message: str) -> None:
        """Something a person running the job would like to know."""

    def warning(self, message: str) -> None:
        """Something went wrong but the work goes on (a skipped line, a retried request)."""


class NullObserver:
    def processing(self, image: str) -> None:
        pass

    def progress(self, task: str, done: int, total: int | None) -> None:
        pass

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass


class RecordingObserver:
    """Keeps every event, for tests and for callers that want to show them later."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def processing(self, image: str) -> None:
        self.events.append(("processing", image))

    def progress(self, task: str, done: int, total: int | None) -> None:
        self.events.append(("progress", f"{task} {done}/{total}"))

    def info(self, message: str) -> None:
        self.events.append(("info", message))

    def warning(self, message: str) -> None:
        self.events.append(("warning", message))

    def of_kind(self, kind: str) -> list[str]:
        return [text for k, text in self.events if k == kind]


NULL_OBSERVER: Observer = NullObserver()
