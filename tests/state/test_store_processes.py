"""What other processes see: the run lock, and a writer killed with SIGKILL.

Each test starts a child Python process that uses the store, then kills it with SIGKILL —
nothing in the child gets to clean up, as with kill -9 or a power cut of the process.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from careen.errors import ExitCode
from careen.state import RunStatus, StateLockedError, StateStore

HOLD_LOCK = """
import sys, time
from careen.state import StateStore
store = StateStore.open(sys.argv[1])
with store.run_lock():
    run = store.begin_run("update")
    print(run.id, flush=True)
    time.sleep(120)
"""

WRITE_BUILDS = """
import sys
from careen.state import StateStore
store = StateStore.open(sys.argv[1])
plan_id = store.save_plan({"images": "many"}, source="harbor", policy="high > 0")
with store.run_lock():
    run = store.begin_run("update", plan_id=plan_id)
    print(plan_id, run.id, flush=True)
    n = 0
    while True:
        image = f"library/app{n}:1"
        build = store.build_started(run.id, image, step=n, log_path=f"/logs/{n}.log")
        store.record_verdict(run.id, image, digest=None, kind="violates", reason="high 1 > 0")
        store.build_pushed(build.id, digest="sha256:" + format(n, "064x"))
        print(n, flush=True)  # after the commit: every number printed is durable
        n += 1
"""


@contextmanager
def _child(script: str, state: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def _first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        _, errors = process.communicate(timeout=30)
        pytest.fail(f"child ended without output: {errors}")
    return line.strip()


def test_run_lock_held_by_another_process(state_path: Path) -> None:
    with StateStore.open(state_path) as store, _child(HOLD_LOCK, state_path) as holder:
        live_run = _first_line(holder)

        with pytest.raises(StateLockedError) as caught, store.run_lock():
            pass
        message = str(caught.value)
        assert f"another careen run (pid {holder.pid}, started 20" in message
        assert f"holds the state at {state_path}" in message
        assert "use another --state" in message
        assert caught.value.pid == holder.pid
        assert caught.value.exit_code is ExitCode.FAILED
        # The holder is alive: its run is not interrupted.
        assert store.mark_interrupted_runs() == []
        assert store.run(live_run).run.status is RunStatus.RUNNING

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)

        # The kernel dropped the lock with the process: no stale lock.
        with store.run_lock():
            assert store.mark_interrupted_runs() == [live_run]
        unfinished = store.unfinished_run("update")
        assert unfinished is not None
        assert unfinished.id == live_run
        assert unfinished.status is RunStatus.INTERRUPTED


def test_run_lock_excludes_a_second_holder_in_the_same_process(state_path: Path) -> None:
    with StateStore.open(state_path) as first, StateStore.open(state_path) as second:
        with first.run_lock():
            assert first.holds_lock
            with pytest.raises(StateLockedError, match=r"pid \d+"), second.run_lock():
                pass
            with pytest.raises(RuntimeError, match="already holds"), first.run_lock():
                pass
        assert not first.holds_lock
        with second.run_lock():
            assert second.holds_lock


def test_killed_during_writes_leaves_an_intact_database(state_path: Path) -> None:
    with _child(WRITE_BUILDS, state_path) as writer:
        plan_id, run_id = _first_line(writer).split()
        assert writer.stdout is not None
        written = -1
        while written < 40:
            line = writer.stdout.readline()
            if not line:
                pytest.fail(f"writer ended early: {writer.communicate(timeout=30)[1]}")
            written = int(line)
        writer.send_signal(signal.SIGKILL)
        # Read through the text stream, not communicate(): readline may already hold later
        # lines in its buffer (a fast disk commits many between two reads), and
        # communicate() reads the pipe beneath it, so those lines would be missed.
        rest = writer.stdout.read()
        writer.wait(timeout=30)
        assert writer.returncode == -signal.SIGKILL
    # Lines printed between our last read and the kill were committed too.
    last = max([written, *(int(n) for n in rest.split())])

    with sqlite3.connect(state_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
    with StateStore.open(state_path) as store:
        pushed = store.pushed_images(plan_id)
        for n in range(last + 1):
            assert pushed[f"library/app{n}:1"] == "sha256:" + format(n, "064x")
        assert len(pushed) in (last + 1, last + 2)  # plus one committed just before the kill
        assert store.mark_interrupted_runs() == [run_id]
        assert store.load_plan(plan_id).policy == "high > 0"


def test_closing_the_store_inside_the_lock_releases_it(state_path: Path) -> None:
    first = StateStore.open(state_path)
    with first.run_lock():
        first.close()
        with StateStore.open(state_path) as second, second.run_lock():
            assert second.holds_lock


START_ONE_BUILD = """
import sys, time
from careen.state import StateStore
store = StateStore.open(sys.argv[1])
with store.run_lock():
    run = store.begin_run("update")
    build = store.build_started(run.id, "library/app:1", step=0, log_path="/logs/app.log")
    print(run.id, build.id, flush=True)  # after the commit
    time.sleep(120)
"""


def test_a_started_build_survives_a_killed_careen(state_path: Path) -> None:
    """A build's start is committed without waiting for the disk (one fsync less per step):
    in WAL mode it still survives the death of the process that wrote it."""
    with _child(START_ONE_BUILD, state_path) as writer:
        run_id, build_id = _first_line(writer).split()
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
    with StateStore.open(state_path) as store:
        build = store.build(int(build_id))
        assert (build.run_id, build.image, build.status.value) == (run_id, "library/app:1",
                                                                   "building")
        assert store.mark_interrupted_runs() == [run_id]
        # ...and the commits after it (a push, which a resume trusts) wait for the disk again.
        again = store.build_started(run_id, "library/other:1", step=1)
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        store.build_pushed(again.id, digest="sha256:" + "a" * 64)
