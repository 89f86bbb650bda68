"""The ``careen`` command line: it parses arguments, loads the config, calls the core and prints.

Nothing here decides anything about images; every command is a few lines of wiring around a
function of the core (``careen.jobs`` and the modules it uses). Errors of the core
(:class:`careen.errors.CareenError`) become a one-line diagnosis on stderr and the documented
exit code; no traceback reaches a person unless ``--debug`` is given.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.exceptions import TyperException

from careen import __version__
from careen.cli.output import ConsoleObserver, describe_error, unwrap
from careen.errors import CareenError, ExitCode
from careen.fileio import full_disk_in

HELP = unwrap("""\
Careen keeps a fleet of container images patched.

Every night, Harbor scans all images (Trivy; Clair in the old days). Careen reads those scan
results, picks the images that break your policy (by default the old Jenkins job's rule:
[bold]medium >= 3 or high > 0[/bold], critical counted like high), finds each image's
Dockerfile folder (app/version/Dockerfile), rebuilds it from a fresh base without cache,
pushes it, asks Harbor to rescan, and checks that the counts went down.

[bold]Try it on this machine first[/bold] (a registry, a builder and a simulated Harbor):

    careen demo

[bold]Typical Jenkins shell step:[/bold]

    careen run --reports-dir reports     # list, plan, rebuild, verify, report

or the old scheme's two steps, unchanged: list-vulnerable-images, then update-images.

Settings come from careen.toml in the working folder (or --config), then CAREEN_*
environment variables, then flags. Passwords only from the environment or a file:
CAREEN_HARBOR_PASSWORD, CAREEN_REGISTRY_PASSWORD (or the old registry_password).

Exit codes: 0 ok, 1 images break the policy or some work failed, 2 usage or config error,
3 Harbor, the registry or the builder could not be reached, 130 interrupted.
""")

app = typer.Typer(
    name="careen",
    help=HELP,
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    add_completion=False,
)


@dataclass
class Globals:
    """Options given before the subcommand, shared by all commands."""

    config_path: Path | None = None
    verbosity: int = 0
    debug: bool = False
    overrides: dict[str, object] = field(default_factory=dict)

    def observer(self) -> ConsoleObserver:
        return ConsoleObserver(self.verbosity)


def _version(value: bool) -> None:
    if value:
        print(f"careen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (default: ./careen.toml if present).",
                     envvar="CAREEN_CONFIG", show_envvar=True),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More detail on stderr (repeat for more).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q",
                                        help="Only warnings and errors on stderr.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    ctx.obj = Globals(config_path=config, verbosity=-1 if quiet else verbose, debug=debug)


def globals_of(ctx: typer.Context) -> Globals:
    obj = ctx.find_root().obj
    if not isinstance(obj, Globals):  # a command invoked without the root callback (tests)
        obj = Globals()
        ctx.find_root().obj = obj
    return obj


# Commands live in their own modules and register themselves on ``app``.
from careen.cli import commands as _commands  # noqa: E402,F401  (import registers commands)


def _run(args: Sequence[str] | None, prog_name: str) -> int:
    debug = "--debug" in (args if args is not None else sys.argv[1:])
    try:
        result: Any = app(args=list(args) if args is not None else None, prog_name=prog_name,
                          standalone_mode=False)
    except CareenError as error:
        if debug:  # the traceback, and still the class's own exit code (issue 18 row 10)
            traceback.print_exc(file=sys.stderr)
        print(describe_error(error), file=sys.stderr)
        return int(error.exit_code)
    except (typer.Abort, KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl-C, or SIGTERM (a Jenkins abort), which the nightly job turns into a cancel.
        print("careen: interrupted", file=sys.stderr)
        return 130
    except typer.Exit as exit_:
        return int(exit_.exit_code)
    except TyperException as error:  # bad flags, missing arguments: click's usage errors
        show = getattr(error, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            print(f"careen: error: {error}", file=sys.stderr)
        return int(getattr(error, "exit_code", ExitCode.USAGE))
    except Exception as error:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            traceback.print_exc(file=sys.stderr)
        full = full_disk_in(error)
        if full is not None:  # whoever wrote it, a full disk is no bug (issue 18 row 14)
            print(describe_error(full), file=sys.stderr)
            return int(full.exit_code)
        print(f"careen: internal error: {type(error).__name__}: {error}\n"
              "  hint: this is a bug in Careen; run again with --debug for the traceback "
              "and report it", file=sys.stderr)
        return int(ExitCode.INTERNAL)
    return int(result) if isinstance(result, int) else 0


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``careen``."""
    sys.exit(_run(argv, "careen"))


#: The seed's script names and the command each one is.
SEED_COMMANDS = {"list-vulnerable-images": "vulnerable", "update-images": "update"}

_GLOBAL_FLAGS = frozenset({"-v", "--verbose", "-q", "--quiet", "--debug"})
_GLOBAL_OPTIONS = frozenset({"-c", "--config"})


def run_seed_command(name: str, argv: Sequence[str]) -> int:
    """Run a seed script name (``list-vulnerable-images ARGS``) as its careen command. Global
    options given first (``-c FILE``, ``-v``) stay in front of the command."""
    args, front = list(argv), []
    while args and (args[0] in _GLOBAL_FLAGS or args[0] in _GLOBAL_OPTIONS
                    or args[0].startswith("--config=")):
        option = args.pop(0)
        front.append(option)
        if option in _GLOBAL_OPTIONS and args:
            front.append(args.pop(0))
    return _run([*front, SEED_COMMANDS[name], *args], name)


def list_vulnerable_images_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``list-vulnerable-images``: the seed's script name for
    ``careen vulnerable``."""
    sys.exit(run_seed_command("list-vulnerable-images", sys.argv[1:] if argv is None else argv))


def update_images_main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``update-images``: the seed's script name for ``careen update``."""
    sys.exit(run_seed_command("update-images", sys.argv[1:] if argv is None else argv))
