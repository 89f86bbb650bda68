"""Helpers the commands share: loading the config with flag overrides, writing output."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from careen.cli.context import Globals, Interrupted, globals_of, unwrap
from careen.errors import UsageError

if TYPE_CHECKING:  # the config (pydantic) and the state: imported when a command runs, so
    # that 'careen COMMAND --help' starts without them
    from careen.cli.output import ConsoleObserver
    from careen.config import Config
    from careen.state.store import RunKind, RunRecord, StateStore

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def load(ctx: typer.Context, overrides: Mapping[str, object] | None = None,
         observer: ConsoleObserver | None = None) -> Config:
    """Load the effective config (file < environment < these flag ``overrides``) and print
    its warnings (such as TLS verification being off) on every run."""
    from careen.config import load_config

    options: Globals = globals_of(ctx)
    merged = {**options.overrides, **(overrides or {})}
    config = load_config(options.config_path, cwd=Path.cwd(), environ=os.environ,
                         overrides={k: v for k, v in merged.items() if v is not None})
    shown = observer if observer is not None else options.observer()
    command = ctx.command_path.split()[1:2]
    for warning in config.warnings:
        if _contacts(command[0] if command else "", warning):
            shown.warning(warning)
    return config


#: Commands that contact Harbor, and the registry (issue 14: a TLS warning is printed only by
#: the commands that contact the service it is about).
_HARBOR_COMMANDS = frozenset({"vulnerable", "images", "run", "plan", "scan", "schedule"})
_REGISTRY_COMMANDS = frozenset({"run", "update"})


def _contacts(command: str, warning: str) -> bool:
    if warning.startswith("TLS certificates of Harbor "):
        return command in _HARBOR_COMMANDS
    if warning.startswith("TLS certificates of the registry "):
        return command in _REGISTRY_COMMANDS
    return True


def emit(text: str) -> None:
    """Machine output: stdout only, with a final newline."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def command(group: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register a command whose docstring is its help, unwrapped so rich can reflow it."""
    def register(function: F) -> F:
        text = unwrap(inspect.getdoc(function) or "")
        group.command(name, help=text)(function)
        return function
    return register


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one coroutine of the core to its end (each command is one event loop).

    The result is handed out through a box, not as the main task's result: on Python 3.11,
    ``asyncio.run`` in the main thread ends by asking ``signal.getsignal`` for its SIGINT
    handler, a partial holding the main task, which formats that handler's repr into an
    unused error message, and with it the task's result through ``reprlib`` (in full for a
    dataclass: about 30 ms for 10,000 artifacts, on every command)."""
    box: list[T] = []

    async def main() -> None:
        box.append(await coroutine)

    asyncio.run(main())
    return box[0]


StateOption = Annotated[Path | None, typer.Option(
    "--state", help="The state database (default: \\[state] path, else "
    "$XDG_STATE_HOME/careen/state.sqlite).", show_default=False)]
#: ``careen plan`` and ``careen run``: override the hold (issue 19).
RebuildOption = Annotated[list[str] | None, typer.Option(
    "--rebuild", metavar="IMAGE", help="Rebuild IMAGE even if it is held (its last "
    "rebuild did not help and nothing changed since); repeatable.")]
NoHoldOption = Annotated[bool, typer.Option(
    "--no-hold", help="Hold nothing: rebuild every selected image (\\[run] hold = false).")]


@contextlib.contextmanager
def open_state(path: Path) -> Iterator[StateStore]:
    """Open an existing state to read it (``path``: :func:`careen.assemble.state_path` of the
    config, where ``--state`` is the ``state.path`` override). Never creates one (a mistyped
    --state would leave an empty database behind) and never takes the run lock."""
    if not path.is_file():
        raise UsageError(f"no state at {path}: Careen has recorded no runs or plans there",
                         hint="give the state file with --state, or set [state] path")
    from careen.state.store import StateStore

    with StateStore.open(path) as store:
        yield store


#: Says the command that finishes an interrupted run, given its plan's id (None: no plan yet).
Resume = Callable[[str | None], str]


@contextlib.contextmanager
def telling_interruption(store: StateStore, kind: RunKind, resume: Resume,
                         planned: Sequence[str] | None = None) -> Iterator[None]:
    """Turn Ctrl-C or SIGTERM during a run into :class:`Interrupted`: how far the run got
    (images of its plan pushed, by it or by earlier runs of the plan) and the command that
    finishes it. ``planned``: the images the run meant to build, when the command knows them
    (a restricted plan); else the stored plan's steps."""
    before = store.last_run(kind)
    try:
        yield
    except (KeyboardInterrupt, asyncio.CancelledError) as stop:
        raise Interrupted(interruption_line(store, kind, before, resume, planned)) from stop


def interruption_line(store: StateStore, kind: RunKind, before: RunRecord | None,
                      resume: Resume, planned: Sequence[str] | None = None) -> str:
    from careen.nightly import load_plan

    run = store.last_run(kind)
    if run is None or (before is not None and run.id == before.id):
        return "interrupted before the run began; nothing was built"
    if run.plan_id is None:
        return (f"interrupted before the plan was made; nothing was built; "
                f"'{resume(None)}' finishes this run")
    if planned is None:
        planned = [step.image.short for step in load_plan(store, run.plan_id).steps]
    pushed = store.pushed_images(run.plan_id)
    done = sum(1 for image in planned if image in pushed)
    return (f"interrupted: {done} of {len(planned)} images pushed; "
            f"'{resume(run.plan_id)}' finishes this run")
