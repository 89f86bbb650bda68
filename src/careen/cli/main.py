"""The ``careen`` command line: it parses arguments, loads the config, calls the core and prints.

Nothing here decides anything about images; every command is a few lines of wiring around a
function of the core (``careen.nightly`` and the modules it uses), its parts built from the
config by :mod:`careen.assemble`. Errors of the core (:class:`careen.errors.CareenError`)
become a one-line diagnosis on stderr and the documented exit code; no traceback reaches a
person unless ``--debug`` is given.

Every command is registered here, in :data:`COMMANDS`: its name, the module under
``careen.cli.commands`` that holds it and the line ``careen --help`` shows. A command's module
(and with it the core, the simulator, the lab or the demo) is imported only when that command
runs or shows its own help: ``careen --help`` and ``careen --version`` load typer and nothing
of the core.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer import _click as click  # typer vendors click (typer >= 0.25)
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import TyperException

from careen import __version__
from careen.cli.context import Globals, Interrupted, globals_of, unwrap
from careen.errors import CareenError, ExitCode
from careen.fileio import full_disk_in

__all__ = ["COMMANDS", "Globals", "app", "globals_of", "main"]

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


@dataclass(frozen=True)
class Entry:
    """One command of ``careen``: where it lives and what ``careen --help`` says of it."""

    #: Module under ``careen.cli.commands``.
    module: str
    #: The command's function, or a ``typer.Typer`` holding a group of commands.
    attribute: str
    #: The line shown in ``careen --help`` (a test holds it equal to the command's own help).
    summary: str


#: Every command of ``careen``, in the order ``careen --help`` lists them.
COMMANDS: dict[str, Entry] = {
    "demo": Entry("demo_cmd", "demo", "Run the nightly job on this machine: a real registry, "
                  "a real builder, a simulated Harbor."),
    "run": Entry("run_cmd", "run", "The nightly job: Harbor -> vulnerable.list -> plan -> "
                 "rebuild -> push -> rescan -> report."),
    "vulnerable": Entry("vulnerable_cmd", "vulnerable", "List the images that break the "
                        "policy, as the old list-vulnerable-images did."),
    "update": Entry("update_cmd", "update", "Rebuild and push every image of vulnerable.list "
                    "(or of a stored plan), as the old update-images did."),
    "plan": Entry("plan_cmd", "plan", "Decide what to rebuild and in which order, say why, "
                  "and store the plan."),
    "tree": Entry("tree_cmd", "tree", "Show which Dockerfile folder builds which image, each "
                  "image's parents, and the order a rebuild would follow."),
    "images": Entry("harbor_cmd", "images", "List every image in Harbor with its scan "
                    "summary: counts per severity, scan status, scanner and scan time."),
    "scan": Entry("harbor_cmd", "scan", "Ask Harbor to scan images now, instead of waiting "
                  "for the nightly scan-all."),
    "schedule": Entry("harbor_cmd", "schedule_app", "Show or set Harbor's scan-all "
                      "schedule."),
    "history": Entry("history_cmd", "history", "List the latest runs, newest first: status, "
                     "exit code, plan, and what they did."),
    "show": Entry("history_cmd", "show", "Show one run: its options, every build (status, "
                  "duration, digest, log) and outcome."),
    "report": Entry("report_cmd", "report", "Write the reports of a past run: JSON, JUnit "
                    "XML, Markdown and HTML."),
    "export": Entry("export_cmd", "export_app", "Hand a stored plan to another build engine: "
                    "a docker-bake.json for BuildKit, or a Jenkinsfile stage with parallel "
                    "branches."),
    "config": Entry("config_cmd", "config_app", "Inspect Careen's configuration."),
    "sim": Entry("sim_cmd", "sim_app", "Simulators for trying Careen without the real "
                 "services."),
}


def load_command(name: str, entry: Entry) -> click.Command:
    """The click command of ``entry``: its module imported now, its function's docstring
    (unwrapped, so rich reflows it) as its help."""
    module = importlib.import_module(f"careen.cli.commands.{entry.module}")
    target = getattr(module, entry.attribute)
    if isinstance(target, typer.Typer):
        group = typer.main.get_group(target)
        group.name = name
        return group
    holder = typer.Typer(rich_markup_mode="rich", add_completion=False)
    holder.command(name, help=unwrap(inspect.getdoc(target) or ""))(target)
    return typer.main.get_command(holder)


class CommandTable(TyperGroup):
    """The root group: commands from :data:`COMMANDS`, each imported when first used.

    Listing them (``careen --help``) needs only their summaries; running one, or showing its
    help, imports its module."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        if self._listing:
            return TyperCommand(name=cmd_name, help=entry.summary)
        if cmd_name not in self.commands:
            self.commands[cmd_name] = load_command(cmd_name, entry)
        return self.commands[cmd_name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="careen",
    help=HELP,
    cls=CommandTable,
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    add_completion=False,
)


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


def _run(args: Sequence[str] | None, prog_name: str) -> int:
    debug = "--debug" in (args if args is not None else sys.argv[1:])
    try:
        result: Any = app(args=list(args) if args is not None else None, prog_name=prog_name,
                          standalone_mode=False)
    except CareenError as error:
        if debug:  # the traceback, and still the class's own exit code (issue 18 row 10)
            traceback.print_exc(file=sys.stderr)
        from careen.cli.output import describe_error

        print(describe_error(error), file=sys.stderr)
        return int(error.exit_code)
    except Interrupted as stop:  # a run: how far it got, and how to finish it
        print(f"careen: {stop}", file=sys.stderr)
        return 130
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C
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
    except BaseException as error:
        # SIGTERM (a Jenkins abort), which a command's event loop turns into a cancel. asyncio
        # is not imported for it: a cancel can only come from a loop that imported it.
        running = sys.modules.get("asyncio")
        if running is not None and isinstance(error, running.CancelledError):
            print("careen: interrupted", file=sys.stderr)
            return 130
        if not isinstance(error, Exception):  # SystemExit and the like go on
            raise
        if debug:
            traceback.print_exc(file=sys.stderr)
        full = full_disk_in(error)
        if full is not None:  # whoever wrote it, a full disk is no bug (issue 18 row 14)
            from careen.cli.output import describe_error

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
