"""``careen sim harbor``: run the bundled Harbor API simulator."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from careen.cli.common import command
from careen.cli.context import globals_of
from careen.errors import UsageError

if TYPE_CHECKING:
    from careen.sim.harbor import Fleet

sim_app = typer.Typer(help="Simulators for trying Careen without the real services.",
                      no_args_is_help=True, rich_markup_mode="rich")

#: The Harbor 1.x ``--api v1`` serves unless told otherwise: the release whose spec is saved
#: (scan-all in the configurations, NOTES §9.4).
DEFAULT_V1_VERSION = "1.6.3"
_VERSION = re.compile(r"v?\d+\.\d+(\.\d+)?\Z")


def fleet_for(fleet_file: Path | None, api: str | None, version: str | None) -> Fleet:
    """The fleet to serve: the file's (or an empty Harbor), at ``version`` when given, at a
    1.x version when ``api`` is ``v1``; a version that contradicts ``api`` is refused."""
    from careen.sim.harbor import Fleet  # the simulator: only when its command runs

    if api not in (None, "v1", "v2"):
        raise UsageError(f"--api {api!r}: expected v1 (Harbor 1.x) or v2 (Harbor 2.x)")
    if version is not None and not _VERSION.match(version):
        raise UsageError(f"--harbor-version {version!r}: expected a version like 1.6.3")
    fleet = Fleet.from_file(fleet_file) if fleet_file is not None else Fleet()
    if version is None and api == "v1" and fleet.api != "v1":
        version = DEFAULT_V1_VERSION
    if version is not None:
        fleet = replace(fleet, harbor_version=version.lstrip("v"))
    if api is not None and fleet.api != ("v1" if api == "v1" else "v2.0"):
        raise UsageError(f"--api {api} does not serve Harbor {fleet.harbor_version}",
                         hint="give a matching --harbor-version, or leave --api out")
    return fleet


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
    api: Annotated[str | None, typer.Option(
        "--api", metavar="v1|v2", help="Serve Harbor 1.x's API (/api, with /login: what "
        "python-harborclient speaks) or 2.x's (/api/v2.0). Default: the fleet's "
        "harbor_version.")] = None,
    harbor_version: Annotated[str | None, typer.Option(
        "--harbor-version", help="The Harbor version to be, e.g. 1.6.3 (scan-all in the "
        "configurations), 1.9.4 (/api/system/scanAll/schedule) or 2.14.0. With --api v1 "
        f"the default is {DEFAULT_V1_VERSION}.")] = None,
    advisories: Annotated[Path | None, typer.Option(
        "--advisories", help="Scan what images contain: package lists read from their layers "
        "in --registry, matched against this advisory file (see careen/demo/data/"
        "advisories.toml).")] = None,
) -> None:
    """Serve a Harbor API (2.x, or 1.x with --api v1) on loopback from a fleet file and/or
    a real registry.

    The simulator follows Harbor's own API spec (paging, X-Total-Count and Link headers,
    double-encoded repository names, basic auth with robot accounts, asynchronous scans, the
    scan-all schedule). Use it to try Careen, in demos and in tests. The fleet file's users
    and robots are its accounts.

    Example:

        careen sim harbor --fleet samples/fleet.yaml --port 8080 &
        CAREEN_HARBOR_URL=http://127.0.0.1:8080 CAREEN_HARBOR_USER=admin \\
          CAREEN_HARBOR_PASSWORD=Harbor12345 careen vulnerable -o -

    The seed's Harbor and its own client (python-harborclient):

        careen sim harbor --api v1 --fleet samples/fleet.yaml --port 8080 &
        HARBOR_URL=http://127.0.0.1:8080 HARBOR_USERNAME=admin HARBOR_PASSWORD=Harbor12345 \\
          HARBOR_PROJECT=1 harbor list
    """
    from careen.sim.harbor import FaultPlan, SimOptions, serve  # only when it runs
    from careen.sim.harbor.package_scanner import package_scanner_from_file

    globals_of(ctx)
    served = fleet_for(fleet, api, harbor_version)
    faults = FaultPlan(error_rate=error_rate, seed=seed) if error_rate else None
    scanner = package_scanner_from_file(advisories) if advisories is not None else None
    options = SimOptions(scan_delay=scan_delay, latency=latency, faults=faults,
                         scanner=scanner, api=served.api)
    serve(host=host, port=port, options=options, registry_url=registry, fleet=served)
