"""What every command receives from the root of the command line, kept free of heavy imports
(``careen --help`` and ``careen --version`` load this and typer, nothing of the core)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from careen.cli.output import ConsoleObserver


@dataclass
class Globals:
    """Options given before the subcommand, shared by all commands."""

    config_path: Path | None = None
    verbosity: int = 0
    debug: bool = False
    overrides: dict[str, object] = field(default_factory=dict)

    def observer(self) -> ConsoleObserver:
        from careen.cli.output import ConsoleObserver

        return ConsoleObserver(self.verbosity)


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    if not isinstance(obj, Globals):  # a command invoked without the root callback (tests)
        obj = Globals()
        ctx.find_root().obj = obj
    return obj


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped a run: the text is the one line the CLI prints (exit 130)."""


def unwrap(text: str) -> str:
    """Join the hard-wrapped lines of each paragraph of a help text, so rich can wrap it to
    the terminal. Indented lines (examples) stay as they are."""
    paragraphs: list[str] = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if all(line.startswith("    ") for line in lines):
            paragraphs.append("\n".join(lines))
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)
