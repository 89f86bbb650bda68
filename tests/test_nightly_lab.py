"""``careen run`` end to end on the lab: real builds (buildah, and docker through podman's
API), real pushes with a login to a real registry, Harbor's simulator reading that registry.

The fleet: a base built on the lab's busybox image, two children of the base, a grandchild,
and an unrelated image. Harbor (the simulator) reports the base and one child as breaking the
policy; the old digests are scanned, the rebuilt ones are scanned when Careen asks (NOTES
§11.8: a push is a new artifact without a scan overview until scanned).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from careen.lab import Lab
from careen.sim.harbor import Fleet, SimOptions, SimulatorServer
from careen.sim.harbor.fleet import ScanResult
from careen.sim.harbor.options import ScanDelays

pytestmark = pytest.mark.lab

IMAGES = {  # folder -> Dockerfile body (after the ARG/FROM line)
    "base/1.0": ("busybox-base:1.0", "RUN echo base > /base.txt\n"),
    "jre/8": ("{project}/base:1.0", "RUN echo jre > /jre.txt\n"),
    "nginx/1.25": ("{project}/base:1.0", "RUN echo nginx > /nginx.txt\n"),
    "tomcat/8.5": ("{project}/jre:8", "RUN echo tomcat > /tomcat.txt\n"),
    "other/1": ("busybox-base:1.0", "RUN echo other > /other.txt\n"),
}
REBUILT = ["base:1.0", "jre:8", "nginx:1.25", "tomcat:8.5"]
HARBOR_USER, HARBOR_PASSWORD = "admin", "Harbor12345"


@dataclass
class Site:
    """One fleet on the lab: its tree, its Harbor, how to run careen on it."""

    lab: Lab
    harbor: SimulatorServer
    root: Path
    work: Path
    project: str
    builder: str
    registry: str  # the name the builder pushes to

    def env(self) -> dict[str, str]:
        lab_env = self.lab.buildah_env() if self.builder == "buildah" else self.lab.docker_env()
        return {
            **{k: v for k, v in os.environ.items()
               if not k.startswith("CAREEN_") and not k.lower().startswith("registry_")},
            **lab_env,
            "CAREEN_HARBOR_URL": self.harbor.url, "CAREEN_HARBOR_USER": HARBOR_USER,
            "CAREEN_HARBOR_PASSWORD": HARBOR_PASSWORD,
            "CAREEN_REGISTRY_SERVER": self.registry, "CAREEN_REGISTRY_USER": self.lab.user,
            "CAREEN_REGISTRY_PASSWORD": self.lab.password().get_secret_value(),
            "CAREEN_REGISTRY_VERIFY_TLS": "false",
            "CAREEN_TREE_ROOT": str(self.root), "CAREEN_TREE_PROJECT": self.project,
            "CAREEN_BUILD_BUILDER": self.builder,
            "CAREEN_BUILD_BUILD_ARGS": f"REGISTRY={self.registry}",
            "CAREEN_STATE_PATH": str(self.work / "state.sqlite"),
            "CAREEN_OUTPUT_REPORTS_DIR": str(self.work / "reports"),
            "CAREEN_OUTPUT_VULNERABLE_LIST": str(self.work / "vulnerable.list"),
            "CAREEN_RUN_RESCAN_TIMEOUT": "120", "CAREEN_RUN_RESCAN_INTERVAL": "0.2",
            # Parallel buildah builds keep their storages under the cache folder.
            "XDG_CACHE_HOME": str(self.work / "cache"),
        }

    def careen(self, *args: str, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "careen", *args], env=env or self.env(),
                              cwd=self.work, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "careen", *args], env=self.env(),
                                cwd=self.work, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def registry_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.lab.auth_registry_url, timeout=10,
                            auth=(self.lab.user, self.lab.password().get_secret_value()))

    def digest(self, name: str) -> str:
        repository, tag = name.split(":")
        with self.registry_client() as client:
            response = client.head(f"/v2/{self.project}/{repository}/manifests/{tag}",
                                   headers={"Accept": ACCEPT})
            response.raise_for_status()
            return response.headers["docker-content-digest"]

    def labels(self, name: str) -> dict[str, str]:
        repository, tag = name.split(":")
        with self.registry_client() as client:
            manifest = client.get(f"/v2/{self.project}/{repository}/manifests/{tag}",
                                  headers={"Accept": ACCEPT}).json()
            config = client.get(f"/v2/{self.project}/{repository}/blobs/"
                                f"{manifest['config']['digest']}").json()
        return dict(config.get("config", {}).get("Labels") or {})

    def report(self) -> dict[str, dict[str, object]]:
        document = json.loads((self.work / "reports" / "careen.json").read_text())
        return {item["image"].split("/", 1)[1]: item for item in document["images"]}


def manifest_puts(lab: Lab, project: str) -> Counter[str]:
    """Completed manifest uploads per ``repository:tag`` of ``project``, from the registry's
    log (the registry's own record of what was pushed)."""
    pattern = re.compile(r'http\.request\.method=PUT .*http\.request\.uri=/v2/'
                         rf'{re.escape(project)}/([^ ]+)/manifests/([^ ]+) .*'
                         r'http\.response\.status=201')
    puts: Counter[str] = Counter()
    for log in (lab.dir / "logs").glob("registry-auth*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if 'msg="response completed"' in line:
                found = pattern.search(line)
                if found:
                    puts[f"{found[1]}:{found[2]}"] += 1
    return puts


ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def write_tree(root: Path, project: str, *, failing: str | None = None) -> None:
    for folder, (parent, body) in IMAGES.items():
        parent_name = parent if "{project}" in parent else f"library/{parent}"
        text = (f"ARG REGISTRY\nFROM ${{REGISTRY}}/{parent_name.format(project=project)}\n"
                + body)
        if folder == failing:
            text += "RUN exit 1\n"
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "Dockerfile").write_text(text)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c",
                           "user.email=t@example.com", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def make_site(lab: Lab, tmp_path: Path, project: str, builder: str) -> Iterator[Site]:
    """Tree (a git commit), the old fleet built and pushed, Harbor's scans of it set."""
    root, work = tmp_path / "tree", tmp_path / "work"
    work.mkdir()
    write_tree(root, project)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "fleet")
    options = SimOptions(registry_url=lab.auth_registry_url,
                         registry_auth=(lab.user, lab.password().get_secret_value()),
                         registry_refresh=0.0,
                         scan_delay=ScanDelays(pending=0.1, running=0.1))
    fleet = Fleet.from_dict({"harbor_version": "2.14.0", "users": {HARBOR_USER: HARBOR_PASSWORD}})
    registry = lab.auth_registry if builder == "buildah" else lab.docker_auth_registry
    with SimulatorServer(fleet, options) as harbor:
        site = Site(lab, harbor, root, work, project, builder, registry)
        # The old fleet, built by buildah whatever the builder under test.
        old = Site(lab, harbor, root, work, project, "buildah", lab.auth_registry)
        listing = work / "everything.list"
        listing.write_text("".join(f"{project}/{name}\n" for name in [*REBUILT, "other:1"]))
        env = {**old.env(), "CAREEN_STATE_PATH": str(work / "setup.sqlite")}
        built = old.careen("update", "--from", str(listing), env=env)
        assert built.returncode == 0, built.stderr
        # Harbor's nightly scan of the old fleet: the base and jre break the policy.
        with httpx.Client(base_url=harbor.url, auth=(HARBOR_USER, HARBOR_PASSWORD)) as client:
            client.get(f"/api/v2.0/projects/{project}/artifacts").raise_for_status()
        for name in [*REBUILT, "other:1"]:
            repository, tag = name.split(":")
            result = {"base": ScanResult.of({"High": 2}, fixable=2),
                      "jre": ScanResult.of({"Medium": 4, "Low": 1}, fixable=3)}.get(
                          repository, ScanResult.of({}))
            harbor.state.set_scan(f"{project}/{repository}", tag, result)
        yield site


@pytest.fixture(params=["buildah", "docker"])
def site(request: pytest.FixtureRequest, lab: Lab, tmp_path: Path) -> Iterator[Site]:
    if request.param == "docker":
        request.getfixturevalue("docker_cli")
    yield from make_site(lab, tmp_path, f"e2e-{request.param}", request.param)


def _command_lines() -> list[str]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"))
            except OSError:
                continue
    return lines


def test_a_night_on_the_lab_rebuilds_in_order_pushes_and_verifies(site: Site) -> None:
    before = {name: site.digest(name) for name in [*REBUILT, "other:1"]}
    password = site.lab.password().get_secret_value()
    seen: list[str] = []
    running = threading.Event()
    running.set()

    def watch() -> None:
        while running.is_set():
            seen.extend(line for line in _command_lines() if password in line)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    # With buildah, two builds at once, each in a storage of its own (jre, nginx are one
    # level): the order must hold all the same.
    jobs = ["--jobs", "2"] if site.builder == "buildah" else []
    try:
        result = site.careen("run", *jobs)
    finally:
        running.clear()
        watcher.join()

    assert result.returncode == 0, result.stderr
    assert seen == [], "the registry password appeared in a command line"
    report = site.report()
    assert report["base:1.0"]["outcome"] == "fixed"
    assert report["jre:8"]["outcome"] == "fixed"
    assert report["nginx:1.25"]["outcome"] == "rebuilt"
    assert report["tomcat:8.5"]["outcome"] == "rebuilt"
    assert "other:1" not in report
    assert report["base:1.0"]["before"]["counts"]["high"] == 2  # type: ignore[index]
    assert report["base:1.0"]["after"]["counts"]["high"] == 0  # type: ignore[index]
    # New digests in the registry for the rebuilt images; the unrelated one untouched.
    after = {name: site.digest(name) for name in [*REBUILT, "other:1"]}
    assert all(after[name] != before[name] for name in REBUILT)
    assert after["other:1"] == before["other:1"]
    assert all(report[name]["after_digest"] == after[name] for name in REBUILT)
    # Labels: the run, the tree's commit, the source.
    document = json.loads((site.work / "reports" / "careen.json").read_text())
    labels = site.labels("tomcat:8.5")
    assert labels["careen.run"] == document["run_id"]
    assert labels["org.opencontainers.image.revision"] == git(site.root, "rev-parse", "HEAD")
    assert "org.opencontainers.image.created" in labels
    # Order: parents pushed before their children (state's build records).
    with sqlite3.connect(site.work / "state.sqlite") as db:
        rows = db.execute("SELECT image, started_at, finished_at FROM builds WHERE run_id = ?"
                          " AND status = 'pushed'", (document["run_id"],)).fetchall()
    times = {image.split("/", 1)[1]: (start, end) for image, start, end in rows}
    assert set(times) == set(REBUILT)
    for parent, child in (("base:1.0", "jre:8"), ("base:1.0", "nginx:1.25"),
                          ("jre:8", "tomcat:8.5")):
        assert times[parent][1] <= times[child][0], f"{child} started before {parent} ended"
    listed = (site.work / "vulnerable.list").read_text()
    assert f"{site.project}/base:1.0" in listed and f"{site.project}/jre:8" in listed
    assert "nginx" not in listed


@pytest.fixture
def buildah_site(lab: Lab, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    yield from make_site(lab, tmp_path, f"e2e-{request.node.name[5:25].replace('_', '-')}",
                         "buildah")


def test_a_failed_build_skips_its_children_and_not_the_other_branch(
    buildah_site: Site,
) -> None:
    site = buildah_site
    write_tree(site.root, site.project, failing="jre/8")
    git(site.root, "commit", "-qam", "jre breaks")
    before = {name: site.digest(name) for name in REBUILT}

    result = site.careen("run")

    assert result.returncode == 1, result.stderr
    report = site.report()
    assert report["base:1.0"]["outcome"] == "fixed"
    assert report["nginx:1.25"]["outcome"] == "rebuilt"
    assert report["jre:8"]["outcome"] == "failed"
    assert report["tomcat:8.5"]["outcome"] == "skipped"
    assert "parent" in str(report["tomcat:8.5"]["note"])
    assert site.digest("nginx:1.25") != before["nginx:1.25"]
    assert site.digest("jre:8") == before["jre:8"]
    assert site.digest("tomcat:8.5") == before["tomcat:8.5"]
    assert any("exit" in line for line in report["jre:8"]["log_tail"])  # type: ignore[union-attr]


def test_a_killed_run_resumes_without_pushing_anything_twice(buildah_site: Site) -> None:
    site = buildah_site
    puts_before = manifest_puts(site.lab, site.project)
    process = site.spawn("run")
    state = site.work / "state.sqlite"
    deadline = time.monotonic() + 300
    pushed: list[str] = []
    while time.monotonic() < deadline and not pushed and process.poll() is None:
        time.sleep(0.1)
        if state.exists():
            try:
                with sqlite3.connect(state) as db:
                    pushed = [row[0] for row in db.execute(
                        "SELECT image FROM builds WHERE status = 'pushed'")]
            except sqlite3.OperationalError:
                # The file exists before its schema is committed ("no such table"), or the
                # run holds the write lock at this instant: look again at the next tick.
                continue
    assert pushed, "no push recorded before the run ended"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    first = {name: site.digest(name) for name in REBUILT}

    result = site.careen("run", "--resume")

    assert result.returncode == 0, result.stderr
    with sqlite3.connect(state) as db:
        counts = dict(db.execute("SELECT image, count(*) FROM builds WHERE status = 'pushed'"
                                 " GROUP BY image").fetchall())
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        statuses = [row[0] for row in db.execute("SELECT status FROM runs ORDER BY started_at")]
    assert statuses == ["interrupted", "succeeded"]
    assert counts == {f"{site.project}/{name}": 1 for name in REBUILT}
    # What the killed run pushed is in the registry as it pushed it: not pushed again.
    for image in pushed:
        name = image.split("/", 1)[1]
        assert site.digest(name) == first[name]
    assert set(site.report()) == set(REBUILT)
    # The registry's own record: one manifest upload per image since the old fleet's.
    pushes = manifest_puts(site.lab, site.project) - puts_before
    assert {name: pushes[name] for name in REBUILT} == dict.fromkeys(REBUILT, 1)
