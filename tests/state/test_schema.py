"""Opening a state file creates it, migrates it in one transaction, and refuses a newer one."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from careen.errors import ExitCode
from careen.state import SCHEMA_VERSION, StateFileError, StateStore, StateTooNewError
from careen.state.schema import MIGRATIONS, Migration, migrate, schema_version

TABLES = {"runs", "plans", "verdicts", "scans", "builds"}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}


def test_open_creates_file_folders_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.sqlite"
    with StateStore.open(path):
        pass
    assert _tables(path) >= TABLES
    with sqlite3.connect(path) as connection:
        assert schema_version(connection) == SCHEMA_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_folder_mode_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    with StateStore.open(tmp_path / "state.sqlite"):
        pass
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


def test_reopening_keeps_records_and_version(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with StateStore.open(path) as store:
        plan_id = store.save_plan({"images": ["library/a:1"]}, source="harbor", policy=None)
    with StateStore.open(path) as store:
        assert store.load_plan(plan_id).body == {"images": ["library/a:1"]}
    with sqlite3.connect(path) as connection:
        assert schema_version(connection) == SCHEMA_VERSION


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.sqlite") as store:
        connection = store._db  # the pragma is per connection: check the store's own
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_newer_database_is_refused_with_upgrade_advice(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with StateStore.open(path):
        pass
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateTooNewError) as caught:
        StateStore.open(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert "upgrade Careen" in message
    assert caught.value.exit_code is ExitCode.USAGE
    with sqlite3.connect(path) as connection:  # left as found
        assert schema_version(connection) == SCHEMA_VERSION + 1


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not sqlite, it is a shopping list\n" * 100)
    with pytest.raises(StateFileError, match="not a Careen state database") as caught:
        StateStore.open(path)
    assert str(path) in str(caught.value)
    assert caught.value.exit_code is ExitCode.USAGE


def test_a_folder_given_as_the_state_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match="cannot create"):
        StateStore.open(tmp_path)


def _plain(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


FIRST = Migration(1, "one table", ("CREATE TABLE one (x INTEGER)",))
SECOND = Migration(2, "another", ("CREATE TABLE two (y INTEGER)",))


def test_migrate_applies_only_the_missing_migrations(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    connection = _plain(path)
    assert migrate(connection, str(path), (FIRST,)) == 0
    connection.execute("INSERT INTO one VALUES (1)")
    assert migrate(connection, str(path), (FIRST, SECOND)) == 1
    assert schema_version(connection) == 2
    assert connection.execute("SELECT x FROM one").fetchall() == [(1,)]
    assert migrate(connection, str(path), (FIRST, SECOND)) == 2


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    connection = _plain(path)
    broken = Migration(2, "broken", ("CREATE TABLE two (y INTEGER)", "NOT SQL AT ALL"))
    migrate(connection, str(path), (FIRST,))
    with pytest.raises(sqlite3.OperationalError):
        migrate(connection, str(path), (FIRST, broken))
    assert schema_version(connection) == 1
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    assert "two" not in tables


def test_migrations_must_be_numbered_in_order(tmp_path: Path) -> None:
    connection = _plain(tmp_path / "db.sqlite")
    with pytest.raises(ValueError, match="expected 1"):
        migrate(connection, "db", (SECOND,))


def test_shipped_migrations_are_numbered_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[-1].version == SCHEMA_VERSION


def test_a_steps_build_lookups_read_its_records_through_an_index(tmp_path: Path) -> None:
    """A step's start or skip looks up the image's records of its run, and its attempt number
    counts them over the plan: SQLite's own query plan says each goes through an index on
    (run, image) or (plan, image), not a scan of every record of the run (N^2 reads a night)."""
    with StateStore.open(tmp_path / "state.sqlite"):
        pass
    lookups = {
        "builds_run_image": "SELECT id FROM builds WHERE run_id = ? AND image = ? AND status = ?"
                            " ORDER BY id DESC LIMIT 1",
        "builds_plan_image": "SELECT count(*) FROM builds WHERE plan_id = ? AND image = ?"
                             " AND status NOT IN (?, ?)",
    }
    with sqlite3.connect(tmp_path / "state.sqlite") as connection:
        for index, query in lookups.items():
            plan = " ".join(row[-1] for row in connection.execute(
                f"EXPLAIN QUERY PLAN {query}", ("a", "b", "c", "d")[:query.count("?")]))
            assert f"USING INDEX {index}" in plan, plan


def test_migration_5_keeps_every_build_and_allows_a_push_under_way(tmp_path: Path) -> None:
    """A state written at version 4 (builds' status CHECK without 'pushing') is rebuilt in
    place: every build row and its indexes kept, 'pushing' allowed with an image id only."""
    path = tmp_path / "state.sqlite"
    connection = _plain(path)
    migrate(connection, str(path), MIGRATIONS[:4])
    connection.execute("INSERT INTO plans VALUES ('plan-1', 't', 'harbor', NULL, '{}')")
    connection.execute("INSERT INTO runs (id, kind, started_at, status, plan_id, options)"
                       " VALUES ('run-1', 'run', 't', 'interrupted', 'plan-1', '{}')")
    connection.execute(
        "INSERT INTO builds (run_id, plan_id, image, step, attempt, status, digest, duration)"
        " VALUES ('run-1', 'plan-1', 'library/a:1', 0, 1, 'pushed', 'sha256:aa', 2.5)")
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute("INSERT INTO builds (run_id, image, step, attempt, status)"
                           " VALUES ('run-1', 'library/b:1', 1, 1, 'pushing')")
    before = connection.execute("SELECT * FROM builds").fetchall()
    connection.close()

    with StateStore.open(path) as store:
        assert store.pushed_images("plan-1") == {"library/a:1": "sha256:aa"}
        started = store.build_started("run-1", "library/b:1", step=1)
        assert store.build_pushing(started.id, image_id="sha256:" + "1" * 64
                                   ).status.value == "pushing"
    with sqlite3.connect(path) as connection:
        assert schema_version(connection) == 5
        assert connection.execute("SELECT * FROM builds WHERE id = 1").fetchall() == [
            (*before[0], None)]  # the new image_id column, empty
        with pytest.raises(sqlite3.IntegrityError):  # a push under way names its image
            connection.execute("INSERT INTO builds (run_id, image, step, attempt, status)"
                               " VALUES ('run-1', 'library/c:1', 2, 1, 'pushing')")
        indexes = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'builds'")}
        assert indexes == {"builds_run", "builds_plan_status", "builds_run_image",
                           "builds_plan_image"}
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
