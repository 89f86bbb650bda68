"""A night that goes wrong in every way a person must act on, run end to end: the nightly job
against the Harbor simulator (whose scanner reports CVE lists, NOTES §6.6), a builder that
"pushes" into it, and a Dockerfile tree.

- ``library/base:1.0``: its OS packages are fixed by the rebuild: fixed.
- ``library/app:1`` (FROM base): its own ``openssl`` is pinned in the Dockerfile: the rebuilt
  image still has the old version though a fix exists: rebuild did not help, and why.
- ``library/very-long-…-gateway-backend:2024.11.05-build.1234`` (a long name): fewer
  findings, but ``libxml2`` with no fix upstream and ``curl`` held by its base keep it
  breaking the policy: improved.
- ``library/broken:1``: its build fails.
- ``library/lone:1``: no Dockerfile folder.
- ``library/never:1``: never scanned.
- ``dockerhub/library/debian``: Harbor's proxy cache of Docker Hub's Debian (ignored by the
  policy): its newest tag passing the policy, 12.8, is named for the long-named image.

``python -m tests.reports.failing_night FOLDER`` writes its reports into FOLDER (for
``scripts/screenshot-report``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from careen.nightly import NightlyOutcome
from careen.sim.harbor import Fleet, SimOptions, SimulatorServer
from careen.sim.harbor.fleet import CLEAN
from careen.sim.harbor.scanner import DetailedScanResult, Finding, TableScanner
from careen.state.store import StateStore

LONG = "library/very-long-service-name-for-the-payments-gateway-backend"
LONG_TAG = "2024.11.05-build.1234"


def _f(cve: str, package: str, version: str, severity: str, fix: str = "") -> Finding:
    return Finding(cve, package, version, severity, fix,
                   description=f"{package} {version}: {severity.lower()} flaw",
                   links=(f"https://avd.aquasec.com/nvd/{cve.lower()}",))


OPENSSL_OLD = _f("CVE-2023-5678", "openssl", "3.0.11-1~deb12u1", "High", "3.0.13-1~deb12u1")
ZLIB_OLD = _f("CVE-2023-45853", "zlib", "1:1.2.13.dfsg-1", "Medium", "1:1.2.13.dfsg-1+deb12u1")
LIBXML = _f("CVE-2024-25062", "libxml2", "2.9.14+dfsg-1.3", "Medium")
CURL_OLD = _f("CVE-2023-46218", "curl", "7.88.1-10+deb12u4", "Medium", "7.88.1-10+deb12u5")
LIBXML_LOW = _f("CVE-2024-34459", "libxml2", "2.9.14+dfsg-1.3", "Low")
LIBXML_2 = _f("CVE-2024-56171", "libxml2", "2.9.14+dfsg-1.3", "Medium")

BEFORE = {
    "library/base:1.0": (OPENSSL_OLD, ZLIB_OLD),
    "library/app:1": (OPENSSL_OLD,),
    f"{LONG}:{LONG_TAG}": (OPENSSL_OLD, ZLIB_OLD, CURL_OLD, LIBXML, LIBXML_2),
    "library/broken:1": (OPENSSL_OLD,),
    "library/lone:1": (OPENSSL_OLD, ZLIB_OLD, LIBXML_LOW),
}
AFTER = {
    "library/base:1.0": (),
    "library/app:1": (OPENSSL_OLD,),  # pinned in its Dockerfile
    f"{LONG}:{LONG_TAG}": (LIBXML, LIBXML_2, CURL_OLD, LIBXML_LOW),  # curl held by the base
}

FLEET: dict[str, Any] = {
    "harbor_version": "2.14.0",
    "users": {"admin": "Harbor12345"},
    "projects": [
        {"name": "library", "repositories": [
            {"name": "base", "artifacts": [{"tags": ["1.0"], "scan": {}}]},
            {"name": "app", "artifacts": [{"tags": ["1"], "scan": {}}]},
            {"name": "broken", "artifacts": [{"tags": ["1"], "scan": {}}]},
            {"name": "lone", "artifacts": [{"tags": ["1"], "scan": {}}]},
            {"name": "never", "artifacts": [{"tags": ["1"], "scan": None}]},
            {"name": "fine", "artifacts": [{"tags": ["1"], "scan": {}}]},
            {"name": LONG.split("/", 1)[1], "artifacts": [{"tags": [LONG_TAG], "scan": {}}]},
        ]},
        # A proxy-cache project of Docker Hub: Debian's images as pulled through Harbor.
        {"name": "dockerhub", "repositories": [{"name": "library/debian", "artifacts": [
            {"tags": ["12.5"], "scan": {"medium": 3}, "push_time": "2024-03-01T00:00:00Z"},
            {"tags": ["12.8"], "scan": {"low": 2}, "push_time": "2024-11-10T00:00:00Z"},
            {"tags": ["12.9"], "scan": {"high": 1}, "push_time": "2025-01-11T00:00:00Z"},
        ]}]},
    ],
}

DOCKERFILES = {
    "base/1.0": "FROM debian:12.5\nRUN apt-get update && apt-get -y upgrade\n",
    "app/1": ("FROM registry.test/library/base:1.0\n"
              "RUN apt-get install -y openssl=3.0.11-1~deb12u1\n"),
    f"{LONG.split('/', 1)[1]}/{LONG_TAG}": "FROM debian:12.5\nRUN apt-get install -y curl\n",
    "broken/1": "FROM debian:12.5\nRUN exit 1\n",
    "fine/1": "FROM debian:12.5\n",
}


def detailed(findings: tuple[Finding, ...]) -> DetailedScanResult:
    return DetailedScanResult.from_findings(findings)


def start_harbor() -> SimulatorServer:
    server = SimulatorServer(Fleet.from_dict(FLEET), SimOptions(scan_delay=0.02))
    server.__enter__()
    state = server.state
    for artifact in state.artifacts.values():  # what Harbor's last scan found
        name = f"{artifact.repo.name}:{artifact.tags[0].name}" if artifact.tags else ""
        if name in BEFORE and artifact.scan is not None:
            artifact.scan.result = detailed(BEFORE[name])
            artifact.baseline = None
    assert state.scanner is not None
    state.scanner = TableScanner(state.scanner.info, {
        name: detailed(found) for name, found in AFTER.items()}, CLEAN)
    return server


def write_tree(root: Path) -> None:
    for folder, text in DOCKERFILES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "Dockerfile").write_text(text)


def failing_night(folder: Path) -> NightlyOutcome:
    """Run the night in ``folder`` (tree, state, reports under it)."""
    from careen.assemble import job_parts
    from careen.config import load_config
    from careen.nightly import run_nightly
    from tests.test_nightly import PushingBuilder, opener, options

    server = start_harbor()
    try:
        write_tree(folder / "tree")
        config = load_config(None, cwd=folder, environ={
            "CAREEN_HARBOR_URL": server.url, "CAREEN_HARBOR_USER": "admin",
            "CAREEN_HARBOR_PASSWORD": "Harbor12345", "CAREEN_REGISTRY_SERVER": "registry.test",
            "CAREEN_TREE_ROOT": str(folder / "tree"),
            "CAREEN_OUTPUT_REPORTS_DIR": str(folder / "reports"),
            "CAREEN_NOTIFY_TITLE": "Careen nightly run"},
            overrides={"policy.ignore": ["dockerhub/*"]})
        with StateStore.open(folder / "state.sqlite") as store:
            builder = PushingBuilder(server, fail={"library/broken"})
            return asyncio.run(run_nightly(job_parts(config, open_builder=opener(builder)),
                                           options(folder), store=store))
    finally:
        server.__exit__(None, None, None)


if __name__ == "__main__":
    outcome = failing_night(Path(sys.argv[1]).resolve())
    print("\n".join(str(p) for p in outcome.reports))
