"""The state database's schema and its migrations.

The schema version lives in SQLite's ``PRAGMA user_version`` (an integer in the file header,
written inside the same transaction as the tables, so a crash never leaves a half-migrated
file marked as migrated). :data:`MIGRATIONS` is ordered; migration *n* takes the database from
version *n - 1* to *n*. A released migration is never edited: a change is a new one appended
to the list.

Each migration is a tuple of single statements rather than one script because
``sqlite3.Connection.executescript`` commits before it runs, which would break the
all-or-nothing transaction :func:`migrate` wraps around the whole upgrade.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from careen.errors import UsageError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# Timestamps are ISO-8601 text in UTC with microseconds (``2026-11-27T23:15:01.123456+00:00``):
# they sort as text, read back with ``datetime.fromisoformat`` and stay legible in ``sqlite3``.
# JSON columns hold documents written by :mod:`careen.state.codec` or given by the caller.
_V1 = Migration(
    version=1,
    description="runs, plans, verdicts, scans, builds",
    statements=(
        """
        CREATE TABLE plans (
            id          TEXT PRIMARY KEY,
            created_at  TEXT NOT NULL,
            source      TEXT NOT NULL,
            policy      TEXT,
            body        TEXT NOT NULL CHECK (json_valid(body))
        )
        """,
        "CREATE INDEX plans_created ON plans (created_at)",
        """
        CREATE TABLE runs (
            id            TEXT PRIMARY KEY,
            kind          TEXT NOT NULL CHECK (kind IN ('run', 'update', 'vulnerable')),
            started_at    TEXT NOT NULL,
            finished_at   TEXT,
            status        TEXT NOT NULL
                          CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
            exit_code     INTEGER,
            tree_commit   TEXT,
            plan_id       TEXT REFERENCES plans (id),
            resumed_from  TEXT REFERENCES runs (id),
            pid           INTEGER,
            options       TEXT NOT NULL CHECK (json_valid(options)),
            summary       TEXT CHECK (summary IS NULL OR json_valid(summary))
        )
        """,
        "CREATE INDEX runs_started ON runs (started_at)",
        "CREATE INDEX runs_plan ON runs (plan_id)",
        """
        CREATE TABLE verdicts (
            id       INTEGER PRIMARY KEY,
            run_id   TEXT NOT NULL REFERENCES runs (id),
            image    TEXT NOT NULL,
            digest   TEXT,
            kind     TEXT NOT NULL,
            reason   TEXT NOT NULL
        )
        """,
        "CREATE INDEX verdicts_run ON verdicts (run_id)",
        """
        CREATE TABLE scans (
            id          INTEGER PRIMARY KEY,
            run_id      TEXT NOT NULL REFERENCES runs (id),
            image       TEXT NOT NULL,
            digest      TEXT,
            phase       TEXT NOT NULL CHECK (phase IN ('before', 'after')),
            status      TEXT NOT NULL,
            counts      TEXT CHECK (counts IS NULL OR json_valid(counts)),
            scanner     TEXT,
            scanned_at  TEXT
        )
        """,
        "CREATE INDEX scans_run_phase ON scans (run_id, phase)",
        """
        CREATE TABLE builds (
            id           INTEGER PRIMARY KEY,
            run_id       TEXT NOT NULL REFERENCES runs (id),
            plan_id      TEXT REFERENCES plans (id),
            image        TEXT NOT NULL,
            step         INTEGER NOT NULL,
            attempt      INTEGER NOT NULL CHECK (attempt >= 1),
            status       TEXT NOT NULL CHECK (status IN
                         ('pending', 'building', 'built', 'pushed', 'failed', 'skipped')),
            started_at   TEXT,
            finished_at  TEXT,
            duration     REAL,
            digest       TEXT,
            log_path     TEXT,
            error        TEXT,
            CHECK (status <> 'pushed' OR digest IS NOT NULL)
        )
        """,
        "CREATE INDEX builds_run ON builds (run_id)",
        # What resume reads: pushed_images(plan_id).
        "CREATE INDEX builds_plan_status ON builds (plan_id, status)",
    ),
)

# Issue 14: the CVEs of the images that matter (plan images before, rebuilt digests after),
# one row per finding, read by careen.state.details.
_V2 = Migration(
    version=2,
    description="vulnerability details of plan images",
    statements=(
        """
        CREATE TABLE findings (
            id           INTEGER PRIMARY KEY,
            run_id       TEXT NOT NULL REFERENCES runs (id),
            image        TEXT NOT NULL,
            digest       TEXT,
            phase        TEXT NOT NULL CHECK (phase IN ('before', 'after')),
            cve          TEXT NOT NULL,
            package      TEXT NOT NULL,
            version      TEXT NOT NULL,
            fix_version  TEXT,
            severity     TEXT NOT NULL,
            cvss         REAL,
            links        TEXT NOT NULL CHECK (json_valid(links)),
            description  TEXT NOT NULL
        )
        """,
        "CREATE INDEX findings_run_phase ON findings (run_id, phase, image)",
        # Which images' details were read (a clean image has no findings rows).
        """
        CREATE TABLE finding_reads (
            run_id   TEXT NOT NULL REFERENCES runs (id),
            image    TEXT NOT NULL,
            phase    TEXT NOT NULL CHECK (phase IN ('before', 'after')),
            digest   TEXT,
            PRIMARY KEY (run_id, phase, image)
        )
        """,
    ),
)

# Issue 19: the verdict history of Careen's own rebuilds (inputs, outcome, the findings
# after the rescan), read when planning to hold what no rebuild can change; see
# careen.state.memory.
_V3 = Migration(
    version=3,
    description="rebuild memory: each rebuild's inputs and whether it helped",
    statements=(
        """
        CREATE TABLE rebuilds (
            id           INTEGER PRIMARY KEY,
            run_id       TEXT NOT NULL REFERENCES runs (id),
            image        TEXT NOT NULL,
            digest       TEXT,
            recorded_at  TEXT NOT NULL,
            inputs       TEXT NOT NULL,
            parts        TEXT CHECK (parts IS NULL OR json_valid(parts)),
            outcome      TEXT NOT NULL,
            note         TEXT NOT NULL,
            counts       TEXT CHECK (counts IS NULL OR json_valid(counts)),
            fixable      INTEGER,
            fixable_ids  TEXT CHECK (fixable_ids IS NULL OR json_valid(fixable_ids))
        )
        """,
        "CREATE INDEX rebuilds_image ON rebuilds (image, id)",
    ),
)

# A build step's start and skip look up the image's records of this run (and, for the
# attempt number, of its plan): with only ``builds_run`` and ``builds_plan_status`` each
# lookup read every record of the run, so a night of N images cost N^2 row reads.
_V4 = Migration(
    version=4,
    description="indexes for a step's build records by run and image, and by plan and image",
    statements=(
        "CREATE INDEX builds_run_image ON builds (run_id, image)",
        "CREATE INDEX builds_plan_image ON builds (plan_id, image)",
    ),
)

# A push that reached the registry while Careen was killed before recording it was pushed
# again by the resume (CI's crash-anywhere test saw two manifest PUTs of one tag). A build now
# becomes ``pushing``, with the built image's id, durably before its push starts; a resume
# asks the registry whether the tag serves that image. The status CHECK of V1 cannot be
# altered in place: the table is rebuilt (SQLite's documented way: create the new table, copy,
# drop the old one, rename) and its indexes made again, inside migrate's one transaction.
_BUILD_COLUMNS = ("id, run_id, plan_id, image, step, attempt, status, started_at, finished_at,"
                  " duration, digest, log_path, error")
_V5 = Migration(
    version=5,
    description="builds: 'pushing' with the built image's id, recorded before a push",
    statements=(
        """
        CREATE TABLE builds_v5 (
            id           INTEGER PRIMARY KEY,
            run_id       TEXT NOT NULL REFERENCES runs (id),
            plan_id      TEXT REFERENCES plans (id),
            image        TEXT NOT NULL,
            step         INTEGER NOT NULL,
            attempt      INTEGER NOT NULL CHECK (attempt >= 1),
            status       TEXT NOT NULL CHECK (status IN
                         ('pending', 'building', 'built', 'pushing', 'pushed', 'failed',
                          'skipped')),
            started_at   TEXT,
            finished_at  TEXT,
            duration     REAL,
            digest       TEXT,
            log_path     TEXT,
            error        TEXT,
            image_id     TEXT,
            CHECK (status <> 'pushed' OR digest IS NOT NULL),
            CHECK (status <> 'pushing' OR image_id IS NOT NULL)
        )
        """,
        f"INSERT INTO builds_v5 ({_BUILD_COLUMNS}) SELECT {_BUILD_COLUMNS} FROM builds",  # noqa: S608 - fixed text
        "DROP TABLE builds",
        "ALTER TABLE builds_v5 RENAME TO builds",
        "CREATE INDEX builds_run ON builds (run_id)",
        "CREATE INDEX builds_plan_status ON builds (plan_id, status)",
        "CREATE INDEX builds_run_image ON builds (run_id, image)",
        "CREATE INDEX builds_plan_image ON builds (plan_id, image)",
    ),
)

#: Every migration, oldest first. ``MIGRATIONS[i].version == i + 1``.
MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3, _V4, _V5)

#: The schema version this code writes and understands.
SCHEMA_VERSION = MIGRATIONS[-1].version


class StateTooNewError(UsageError):
    """The state database was written by a newer Careen than the one running."""

    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            f"the state at {path} has schema version {found}, newer than this Careen "
            f"understands (up to {known}); upgrade Careen, or use another --state",
            hint="pip install --upgrade careen",
        )
        self.path = path
        self.found = found
        self.known = known


def schema_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(connection: sqlite3.Connection, path: str,
            migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Bring the database up to the last of ``migrations``; return the version it was at.

    ``connection`` must be in autocommit mode (``isolation_level=None``): this function
    opens its own ``BEGIN IMMEDIATE`` transaction, so two processes opening a fresh file at the
    same time cannot both create the tables — the second one waits (busy timeout), then sees
    the version the first one wrote and does nothing.
    """
    _check_ordered(migrations)
    known = migrations[-1].version if migrations else 0
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(connection)
        if found > known:
            raise StateTooNewError(path, found, known)
        for migration in migrations[found:]:
            for statement in migration.statements:
                connection.execute(statement)
            # PRAGMA takes no parameters; the value is an int from this module, not input.
            connection.execute(f"PRAGMA user_version = {int(migration.version)}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return found


def _check_ordered(migrations: tuple[Migration, ...]) -> None:
    for index, migration in enumerate(migrations):
        if migration.version != index + 1:
            raise ValueError(
                f"migration {migration.description!r} has version {migration.version}, "
                f"expected {index + 1}: migrations must be numbered 1, 2, 3... in order"
            )
