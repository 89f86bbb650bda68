"""The rebuild memory (issue 19): schema version 3 (and later) over an older state file, one
verdict per rebuild read back whole, and the fixable CVE ids where the run read the details
(issue 14's ``findings`` table)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from careen.inputs import BuildInputs, args_fingerprint
from careen.scan import SeverityCounts
from careen.state import StateStore
from careen.state.memory import RebuildMemory
from careen.state.schema import MIGRATIONS, migrate, schema_version

INPUTS = BuildInputs("git:" + "c" * 40, args_fingerprint({}),
                     (("docker.io/library/debian:bookworm-slim", "sha256:" + "d" * 64),))


def test_a_version_1_state_file_gains_the_rebuilds_table_and_keeps_its_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite"
    connection = sqlite3.connect(path, isolation_level=None)
    migrate(connection, str(path), MIGRATIONS[:1])
    connection.execute("INSERT INTO runs (id, kind, started_at, status, options) VALUES "
                       "('run-1', 'run', '2026-11-30T23:00:00+00:00', 'succeeded', '{}')")
    connection.close()
    with StateStore.open(path) as store:
        assert store.run("run-1").run.id == "run-1"
        assert RebuildMemory.of(store).last("library/base:1.0") is None
    with sqlite3.connect(path) as check:
        assert schema_version(check) == MIGRATIONS[-1].version >= 3
        tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master")}
    assert {"rebuilds", "findings"} <= tables


def test_a_verdict_reads_back_whole_and_the_last_one_wins(tmp_path: Path) -> None:
    now = [datetime(2026, 11, 30, 23, 14, tzinfo=UTC)]
    with StateStore.open(tmp_path / "state.sqlite", clock=lambda: now[0]) as store:
        first = store.begin_run("run")
        now[0] = datetime(2026, 12, 1, 23, 9, tzinfo=UTC)
        second = store.begin_run("run")
        now[0] = datetime(2026, 11, 30, 23, 14, tzinfo=UTC)
        memory = RebuildMemory.of(store)
        memory.remember(first.id, "library/base:1.0", digest="sha256:" + "1" * 64,
                        inputs=INPUTS, outcome="fixed", note="passes the policy now",
                        counts=SeverityCounts(), fixable=0)
        now[0] = datetime(2026, 12, 1, 23, 9, tzinfo=UTC)
        memory.remember(second.id, "library/base:1.0", digest="sha256:" + "2" * 64,
                        inputs=INPUTS, outcome="not_helped",
                        note="rebuild did not help: no fix available upstream",
                        counts=SeverityCounts(high=3), fixable=1,
                        fixable_ids=frozenset({"CVE-2024-6119"}))
        memory.remember(second.id, "library/app:1", digest=None, inputs=None,
                        outcome="rebuilt", note="", counts=None, fixable=None)
        last = memory.last("library/base:1.0")
        history = memory.history("library/base:1.0")
        app = memory.last("library/app:1")
    assert last is not None and last.run_id == second.id
    assert last.recorded_at == datetime(2026, 12, 1, 23, 9, tzinfo=UTC)
    assert last.outcome == "not_helped" and last.digest == "sha256:" + "2" * 64
    assert last.inputs == INPUTS and last.fingerprint == INPUTS.fingerprint
    assert last.counts == SeverityCounts(high=3) and last.fixable == 1
    assert last.fixable_ids == frozenset({"CVE-2024-6119"})
    assert [memo.outcome for memo in history] == ["not_helped", "fixed"]
    assert app is not None and app.inputs is None and app.fingerprint == "unknown"


def test_fixable_ids_come_from_the_details_read_after_the_rescan(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.sqlite") as store:
        run = store.begin_run("run")
        memory = RebuildMemory.of(store)
        assert memory.fixable_ids(run.id, "library/base:1.0") is None  # never read
        db = store._db
        db.execute("INSERT INTO finding_reads (run_id, image, phase, digest) "
                   "VALUES (?, 'library/base:1.0', 'after', NULL)", (run.id,))
        rows = [("CVE-2024-6119", "openssl", "3.0.13-1~deb12u1", "3.0.14-1~deb12u1"),
                ("CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1", ""),
                ("CVE-2024-6119", "libssl3", "3.0.13-1~deb12u1", "3.0.14-1~deb12u1")]
        for cve, package, version, fix in rows:
            db.execute("INSERT INTO findings (run_id, image, digest, phase, cve, package, "
                       "version, fix_version, severity, cvss, links, description) VALUES "
                       "(?, 'library/base:1.0', NULL, 'after', ?, ?, ?, ?, 'High', NULL, "
                       "'[]', '')", (run.id, cve, package, version, fix))
        assert memory.fixable_ids(run.id, "library/base:1.0") == frozenset({"CVE-2024-6119"})
