"""``careen sim harbor``: run the bundled Harbor API simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from careen.cli.common import command
from careen.cli.context import globals_of

sim_app = typer.Typer(help="Simulators for trying Careen without the real services.",
                      no_args_is_help=True, rich_markup_mode="rich")


@command(sim_app, "harbor")
def harbor(
    ctx: typer.Context,
    fleet: Annotated[Path | None, typer.Option(
        "--fleet", help="Fleet file (YAML or JSON): projects, repositories, artifacts, scan "
        "results. See samples/fleet.yaml.")] = None,
    registry: Annotated[str | None, typer.Option(
        "--registry", help="Also serve the artifacts of this OCI registry, e.g. "
        "http://127.0.0.1:5555 (a push shows up as a new artifact).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    scan_delay: Annotated[float, typer.Option(
        "--scan-delay", help="Seconds a requested scan stays Pending, then Running.")] = 1.0,
    latency: Annotated[float, typer.Option(
        "--latency", help="Seconds added to every response (a loaded Harbor).")] = 0.0,
    error_rate: Annotated[float, typer.Option(
        "--error-rate", help="Share of requests answered 500 (fault injection).")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fault injection.")] = 0,
    advisories: Annotated[Path | None, typer.Option(
        "--advisories", help="Scan what images contain: package lists read from their layers "
        "in --registry, matched against this advisory file (see careen/demo/data/"
        "advisories.toml).")] = None,
) -> None:
    """Serve a Harbor v2 API on loopback from a fleet file and/or a real registry.

    The simulator follows Harbor's own API spec (paging, X-Total-Count and Link headers,
    double-encoded repository names, basic auth with robot accounts, asynchronous scans, the
    scan-all schedule). Use it to try Careen, in demos and in tests. The fleet file's users
    and robots are its accounts.

    Example:

        careen sim harbor --fleet samples/fleet.yaml --port 8080 &
        CAREEN_HARBOR_URL=http://127.0.0.1:8080 CAREEN_HARBOR_USER=admin \\
          CAREEN_HARBOR_PASSWORD=Harbor12345 careen vulnerable -o -
    """
    from careen.sim.harbor import FaultPlan, SimOptions, serve  # only when it runs
    from careen.sim.harbor.package_scanner import package_scanner_from_file

    globals_of(ctx)
    faults = FaultPlan(error_rate=error_rate, seed=seed) if error_rate else None
    scanner = package_scanner_from_file(advisories) if advisories is not None else None
    options = SimOptions(scan_delay=scan_delay, latency=latency, faults=faults,
                         scanner=scanner)
    serve(fleet, host=host, port=port, options=options, registry_url=registry)
