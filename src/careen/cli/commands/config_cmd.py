"""``careen config show``."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from careen.cli.common import emit, load

config_app = typer.Typer(
    help="Inspect Careen's configuration.", no_args_is_help=True, rich_markup_mode="rich",
)


@config_app.command("show")
def show(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="toml (annotated with where each value came from) "
                                     "or json.")] = "toml",
) -> None:
    """Print the effective configuration: careen.toml, then CAREEN_* variables, then flags.

    Secrets are masked. Each value in the TOML form says where it came from, so you can see
    which of the file, the environment (Jenkins credentials bindings) or the defaults won.

    Example:  CAREEN_HARBOR_URL=https://harbor.example.com careen config show
    """
    if fmt not in ("toml", "json"):
        raise typer.BadParameter("expected toml or json", param_hint="--format")
    chosen: Literal["toml", "json"] = "toml" if fmt == "toml" else "json"
    emit(load(ctx).show(chosen))
