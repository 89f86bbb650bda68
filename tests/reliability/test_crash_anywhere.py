"""Crash anywhere (issue 7, point 3): ``careen run`` killed with SIGKILL at seeded random
moments on the lab, then resumed, until the night is done.

Checked after the last resume: every planned image was pushed exactly once overall — by the
registry's own request log (completed manifest PUTs) and by the state's build records —, the
state database passes ``PRAGMA integrity_check``, and vulnerable.list and the JSON report,
where present, are whole (each is written to a temporary file and renamed).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from careen.lab import Lab
from careen.vulnlist import read_vulnerable_list
from tests.test_nightly_lab import REBUILT, Site, make_site, manifest_puts

pytestmark = pytest.mark.lab

KILLS = 10
SEED = 20171208
#: Kill moments are drawn in [0, this) seconds after the start of each attempt: shorter than
#: a whole night on this small fleet (start-up, inventory, four builds and pushes, rescans),
#: so each attempt gets a little further and kills land in every phase.
WINDOW_SECONDS = 4.0
#: Attempts that finished before their kill moment (no-op nights once the work is done).
MAX_ATTEMPTS = 30


@pytest.fixture
def site(lab: Lab, tmp_path: Path) -> Iterator[Site]:
    yield from make_site(lab, tmp_path, "crash-anywhere", "buildah")


def unfinished(state: Path) -> bool:
    if not state.exists():
        return False
    with sqlite3.connect(state) as db:
        row = db.execute("SELECT status FROM runs WHERE kind = 'run'"
                         " ORDER BY started_at DESC, rowid DESC LIMIT 1").fetchone()
    return row is not None and row[0] in ("running", "interrupted")


def test_killed_at_random_moments_the_night_still_pushes_each_image_once(site: Site) -> None:
    rng = random.Random(SEED)
    state = site.work / "state.sqlite"
    before = manifest_puts(site.lab, site.project)
    assert all(before[name] == 1 for name in REBUILT)  # the old fleet
    kills = attempts = 0
    completed = False
    #: How long the last attempt that ended by itself took: once the work is done, a no-op
    #: night can be shorter than the window, and a kill moment drawn past its end kills
    #: nothing; the moments are then drawn within that night's length instead.
    natural = WINDOW_SECONDS
    while kills < KILLS and attempts < MAX_ATTEMPTS:
        attempts += 1
        resume = unfinished(state)
        started = time.monotonic()
        process = site.spawn("run", *(["--resume"] if resume else []))
        window = min(WINDOW_SECONDS, natural) if completed else WINDOW_SECONDS
        deadline = started + rng.uniform(0.0, window)
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        else:
            natural = time.monotonic() - started
        process.wait()
        completed = completed or process.returncode == 0
    if unfinished(state):
        result = site.careen("run", "--resume")
        assert result.returncode == 0, result.stderr

    assert kills == KILLS, f"only {kills} of {attempts} attempts were killed before they ended"
    pushes = manifest_puts(site.lab, site.project) - before
    assert {name: pushes[name] for name in REBUILT} == dict.fromkeys(REBUILT, 1), pushes
    assert pushes["other:1"] == 0
    with sqlite3.connect(state) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        recorded = Counter(image.split("/", 1)[1] for (image,) in db.execute(
            "SELECT image FROM builds WHERE status = 'pushed'"))
        statuses = [s for (s,) in db.execute("SELECT status FROM runs")]
    assert recorded == Counter(REBUILT)
    assert "running" not in statuses and statuses.count("succeeded") >= 1
    listing = site.work / "vulnerable.list"
    if listing.exists():
        read_vulnerable_list(listing.read_text(), source=str(listing), strict=True)
    report = site.work / "reports" / "careen.json"
    if report.exists():
        json.loads(report.read_text())
    leftovers = [p.name for p in site.work.rglob("*") if ".tmp" in p.name]
    assert leftovers == []
