"""The push window on the lab: Careen killed after the registry took a push, before the state
recorded it (CI's crash-anywhere saw such a tag pushed twice). A resume asks the registry
what the tag serves: the image built before the kill, so the push is recorded, not repeated.

Also here: what that check relies on, against the real registry — the manifest a tag serves
after a push names, as its config, the image id the builder reported (``--iidfile``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from careen.builders import BuildRequest, build_and_push
from careen.lab import Lab
from careen.reference import ImageReference
from careen.registries.resolve import DigestResolver
from tests.builders.test_builds_on_lab import Setup, _child_context, _labels, setup
from tests.test_nightly_lab import REBUILT, Site, make_site, manifest_puts

pytestmark = pytest.mark.lab

__all__ = ["setup"]  # the fixture, shared with the builders' lab tests

#: The image whose push is cut off from its record.
KILLED_AT = "tomcat:8.5"


def test_a_pushed_tags_manifest_names_the_built_image_as_its_config(setup: Setup,
                                                                     tmp_path: Path) -> None:
    image = ImageReference.parse(f"{setup.registry}/library/window-{setup.kind}:1.0")
    request = BuildRequest(image, _child_context(tmp_path), tmp_path / "build.log",
                           build_args={"REGISTRY": setup.registry},
                           labels=_labels(f"run-{setup.kind}"), timeout=300, push_timeout=120)
    built, pushed = build_and_push(setup.builder(), request)
    assert built.ok and pushed is not None and pushed.ok, built.log_tail
    resolver = DigestResolver(credentials={setup.registry: (setup.lab.user,
                                                            setup.lab.password())},
                              insecure={setup.registry})
    served = asyncio.run(resolver.manifest(image))
    assert served.problem is None, served.problem
    assert not served.is_index
    assert served.config == built.image_id
    assert served.digest == pushed.digest


@pytest.fixture
def site(lab: Lab, tmp_path: Path) -> Iterator[Site]:
    yield from make_site(lab, tmp_path, "push-window", "buildah")


def killing_buildah(folder: Path, marker: Path) -> Path:
    """A ``buildah`` first on PATH that runs the real one, and once the push of
    :data:`KILLED_AT` has succeeded (the registry holds the manifest), SIGKILLs Careen — its
    parent — before Careen hears of it. Once: the marker file says it happened."""
    folder.mkdir()
    script = folder / "buildah"
    script.write_text(f"""#!/bin/sh
case " $* " in
  *" push "*"/{KILLED_AT} "*)
    if [ ! -e '{marker}' ]; then
      /usr/bin/buildah "$@" || exit $?
      : > '{marker}'
      kill -KILL "$PPID"
      exit 0
    fi;;
esac
exec /usr/bin/buildah "$@"
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_a_push_the_registry_took_before_careen_was_killed_is_not_made_again(
    site: Site, tmp_path: Path,
) -> None:
    before = manifest_puts(site.lab, site.project)
    marker = tmp_path / "killed"
    wrapper = killing_buildah(tmp_path / "bin", marker)
    env = site.env()
    env["PATH"] = f"{wrapper}:{env['PATH']}"
    killed = site.careen("run", env=env)
    assert marker.exists(), killed.stderr
    assert killed.returncode == -9, (killed.returncode, killed.stderr)  # SIGKILL
    taken = manifest_puts(site.lab, site.project) - before
    assert taken[KILLED_AT] == 1  # the registry has it; the state does not say so
    state = site.work / "state.sqlite"
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT count(*) FROM builds WHERE status = 'pushed' AND image = ?",
                          (f"{site.project}/{KILLED_AT}",)).fetchone()[0] == 0

    resumed = site.careen("run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    pushes = manifest_puts(site.lab, site.project) - before
    assert {name: pushes[name] for name in REBUILT} == dict.fromkeys(REBUILT, 1), pushes
    served = site.digest(KILLED_AT)
    said = resumed.stdout + resumed.stderr
    assert (f"{site.project}/{KILLED_AT}: the push interrupted last time had reached the "
            f"registry ({served}); not pushed again") in said, said
    with sqlite3.connect(state) as db:
        recorded = db.execute("SELECT digest, image_id FROM builds WHERE status = 'pushed'"
                              " AND image = ?", (f"{site.project}/{KILLED_AT}",)).fetchall()
    assert [digest for digest, _ in recorded] == [served]
    assert recorded[0][1] is not None and recorded[0][1].startswith("sha256:")
