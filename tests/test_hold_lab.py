"""Issue 19 on the lab: real buildah builds and pushes to a real registry with a login, Harbor's
simulator reading that registry, the base's upstream resolved by Careen's own resolver
against the registry (Basic auth over plain HTTP, as the lab serves it).

Night 1: the base is rebuilt with its children and the rebuild does not help (its findings
come with it). Night 2: nothing changed: nothing is built or pushed (the registry's own log
says so), the base is held, exit 1. Night 3: the upstream image the base is built FROM is
republished under a new digest: the base and its children are rebuilt, the plan naming the
republished base.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from careen.builders.credentials import LoginTool, private_auth
from careen.builders.process import run_logged
from careen.lab import Lab
from careen.sim.harbor.fleet import ScanResult
from tests.test_nightly_lab import REBUILT, Site, git, make_site, manifest_puts

pytestmark = pytest.mark.lab

UPSTREAM = "library/upstream-hold:1.0"


def publish_upstream(lab: Lab, work: Path, build: int) -> None:
    """Build a small image on the lab's busybox base (``build`` makes its digest new) and push
    it to the registry that needs a login, as its upstream project would republish it."""
    context = work / f"upstream-{build}"
    context.mkdir()
    base = lab.base_image_in(lab.open_registry)
    (context / "Dockerfile").write_text(f"FROM {base}\nLABEL upstream.build={build}\n")
    env = {**os.environ, **lab.buildah_env()}
    local = f"localhost/upstream-hold:{build}"
    with private_auth(work) as auth:
        assert auth.login(lab.login(), tool=LoginTool.BUILDAH, env=env).ok
        for argv in (
            ["buildah", "--storage-driver", "vfs", "bud", "--isolation", "chroot",
             "--tls-verify=false", "-t", local, str(context)],
            ["buildah", "--storage-driver", "vfs", "push", "--tls-verify=false", "--authfile",
             str(auth.config_file), local, f"docker://{lab.auth_registry}/{UPSTREAM}"],
        ):
            done = run_logged(argv, env=env, log_path=work / "upstream.log", timeout=300)
            assert done.ok, done.tail_text[-800:]


@pytest.fixture
def site(lab: Lab, tmp_path: Path) -> Iterator[Site]:
    for made in make_site(lab, tmp_path, "e2e-hold", "buildah"):
        publish_upstream(lab, made.work, 1)
        # The base is now built FROM the upstream image (not Careen's to rebuild).
        (made.root / "base/1.0/Dockerfile").write_text(
            f"ARG REGISTRY\nFROM ${{REGISTRY}}/{UPSTREAM}\nRUN echo base > /base.txt\n")
        git(made.root, "commit", "-qam", "base on its upstream")
        # The base carries a finding no rebuild fixes (no fixed version): its old scan, and
        # the scan of whatever is pushed as base:1.0 later. The rest is clean.
        scanner = made.harbor.state.scanner
        assert scanner is not None
        unfixable = ScanResult.of({"High": 2}, fixable=0)
        scanner.table[f"{made.project}/base:1.0"] = unfixable  # type: ignore[attr-defined]
        made.harbor.state.set_scan(f"{made.project}/base", "1.0", unfixable)
        made.harbor.state.set_scan(f"{made.project}/jre", "8", ScanResult.of({}))
        yield made


def test_a_night_that_did_not_help_then_nothing_changed_then_a_new_upstream(
    site: Site,
) -> None:
    first = site.careen("run")
    assert first.returncode == 1, first.stderr
    report = site.report()
    assert report["base:1.0"]["outcome"] == "not_helped"
    assert {name for name in REBUILT if name in report} == set(REBUILT)
    labels = site.labels("base:1.0")
    assert labels["careen.inputs"].startswith("sha256:")
    assert labels["careen.inputs.folder"].startswith("git:")  # a clean git checkout
    assert labels["careen.inputs.from"].startswith(f"{site.registry}/{UPSTREAM}@sha256:")

    puts = manifest_puts(site.lab, site.project)
    second = site.careen("run")
    assert second.returncode == 1, second.stderr
    assert manifest_puts(site.lab, site.project) == puts  # nothing pushed
    assert f"needs attention: {site.project}/base:1.0: held: its rebuild of " in second.stderr
    assert "did not help" in second.stderr
    document = json.loads((site.work / "reports" / "careen.json").read_text())
    assert [i["image"] for i in document["images"] if i["outcome"] != "skipped"] == []
    held = site.report()["base:1.0"]
    assert held["outcome"] == "skipped" and held["note"] == "held"

    publish_upstream(site.lab, site.work, 2)
    third = site.careen("run")
    assert third.returncode == 1, third.stderr  # the rebuild still does not help
    after = manifest_puts(site.lab, site.project)
    for name in REBUILT:  # the base and every child, once each
        assert after[name] == puts[name] + 1, name
    report = site.report()
    assert f"base {site.registry}/{UPSTREAM} republished" in str(report["base:1.0"]["reason"])
    assert report["jre:8"]["outcome"] == "rebuilt"
