"""The seed's own client, python-harborclient (PyPI, converted with lib2to3), against
`careen sim harbor --api v1` run from the command line: `harbor list` and `harbor show` run
unchanged, and the seed's pipeline selects exactly what `careen vulnerable` selects.

Lab: the session installs python-harborclient and its dependencies from the package index
into a temporary folder (NOTES §10), or reuses the install in $CAREEN_HARBORCLIENT_DIR.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.seed_client import (
    HarborCli,
    install_harborclient,
    pipe,
    run_seed_pipeline,
    seed_overview,
    seed_selects,
)

pytestmark = pytest.mark.lab

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SRC = Path(__file__).resolve().parents[2] / "src"
USER, PASSWORD = "admin", "Harbor12345"


@pytest.fixture(scope="session")
def harbor_cli(tmp_path_factory: pytest.TempPathFactory) -> HarborCli:
    kept = os.environ.get("CAREEN_HARBORCLIENT_DIR")
    return install_harborclient(Path(kept) if kept else tmp_path_factory.mktemp("harborclient"))


def careen_env(url: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "CAREEN_HARBOR_URL": url,
            "CAREEN_HARBOR_USER": USER, "CAREEN_HARBOR_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def sim_v1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`careen sim harbor --api v1 --fleet samples/fleet.yaml` as a process of its own."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("sim") / "sim.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "careen", "sim", "harbor", "--api", "v1", "--fleet",
             str(SAMPLES / "fleet.yaml"), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=careen_env(url))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the simulator did not start: {log.read_text()}"
                                       ) from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def careen_vulnerable(url: str) -> list[str]:
    """`careen vulnerable --project library -o -`: the images of its vulnerable.list."""
    result = subprocess.run(
        [sys.executable, "-m", "careen", "-q", "vulnerable", "--project", "library", "-o",
         "-", "--exit-zero"], capture_output=True, text=True, timeout=120,
        env=careen_env(url), check=True)
    return sorted(line.split()[-1] for line in result.stdout.splitlines() if line.strip())


def test_harbor_list_and_show_run_unchanged(harbor_cli: HarborCli, sim_v1: str) -> None:
    """NOTES §10: `harbor list` prints repo:tag rows (the tag latest as the bare name), the
    size summed from the manifest's layers; `harbor show` prints tag_scan_overview."""
    env = harbor_cli.env(sim_v1, USER, PASSWORD, 1)
    listing = pipe(harbor_cli.argv("list"), env=env)
    names = re.findall(r"^\|\s+(\S+)\s+\|\s+1\s+\|", listing, re.MULTILINE)
    assert {"library/grafana:4.1.2", "library/team/tools:1.0"} <= set(names)
    assert "library/alpine" in names  # the tag latest, as the bare name
    header = next(line for line in listing.splitlines() if "project_id" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "name", "project_id", "size", "tags_count", "star_count", "pull_count", "update_time"]
    shown = pipe(harbor_cli.argv("show", "library/grafana:4.1.2"), env=env)
    assert "tag_scan_overview" in shown and "tag_digest" in shown
    overview = seed_overview(harbor_cli, env, "library/grafana:4.1.2")
    assert overview["scan_status"] == "finished" and seed_selects(overview)
    assert seed_overview(harbor_cli, env, "library/mysql:5.6.35") is None  # never scanned
    missing = pipe(harbor_cli.argv("show", "library/nope:1"), env=env)
    assert "Image 'library/nope' not found." in missing


def test_the_seed_pipeline_selects_what_careen_selects(harbor_cli: HarborCli,
                                                        sim_v1: str) -> None:
    """The seed's list-vulnerable-images with its own client: `harbor list | awk '{print
    $2}' | egrep -v '^name$|^$'`, one `harbor show` per image, components medium >= 3 or
    high > 0; against `careen vulnerable` on the same simulator."""
    run = run_seed_pipeline(harbor_cli, sim_v1, USER, PASSWORD, project_id=1)
    assert "library/alpine:latest" in run.images and "library/team/tools:1.0" in run.images
    assert len(run.images) == len(set(run.images)) > 10
    careen = careen_vulnerable(sim_v1)
    assert list(run.selected) == careen
    assert "library/grafana:4.1.2" in careen and "library/mysql:5.6.35" not in careen


def test_inventory_seed_client_mode_at_a_toy_size(harbor_cli: HarborCli,
                                                  tmp_path: Path) -> None:
    """`python -m bench.inventory --seed-client`: the real client against Careen on a
    simulated Harbor 1.6; requests counted by the simulator, the same selection."""
    from bench import inventory

    out = tmp_path / "seed.json"
    assert inventory.main(["--in-process", "--seed-client", "--images", "10", "--latency", "0",
                           "--harborclient-dir", str(harbor_cli.site.parent),
                           "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    seed, careen = report["seed"], report["careen"]
    assert report["selection_match"] is True and seed["selected"] == careen["selected_tagged"]
    assert seed["images"] == careen["images"] >= 10
    # Per image: a login, the project's repositories, the repository's tags (harbor show).
    assert seed["requests"] >= 3 * seed["images"]
    assert careen["server_requests"] < seed["requests"] / 5
