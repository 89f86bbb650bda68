"""The verdict history of Careen's own rebuilds: what each was built from and whether it helped.

One row per rebuilt image per run (table ``rebuilds``, schema version 3): the image, the digest
pushed, its inputs (:class:`careen.inputs.BuildInputs`: fingerprint and parts), the outcome of
the before/after judgement, why, and the findings after the rescan — the severity counts, the
summary's fixable count, and the set of fixable CVE ids when the run read the vulnerability
details (issue 14's ``findings`` table). The planner reads the last row of an image to decide
whether to hold it (:mod:`careen.hold`).

A small class over the state database's own connection (:class:`~careen.state.store.StateStore`
keeps runs, plans, builds; this keeps the rebuild history), so it shares its transactions'
locking and lives and dies with the same file.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from careen.inputs import BuildInputs
from careen.scan import SeverityCounts
from careen.state.store import StateStore

__all__ = ["RebuildMemo", "RebuildMemory"]


@dataclass(frozen=True, slots=True)
class RebuildMemo:
    """One remembered rebuild."""

    run_id: str
    image: str
    digest: str | None
    recorded_at: datetime
    fingerprint: str
    inputs: BuildInputs | None
    outcome: str
    note: str
    counts: SeverityCounts | None
    fixable: int | None
    fixable_ids: frozenset[str] | None


class RebuildMemory:
    """Reads and writes the ``rebuilds`` table of an open state database."""

    def __init__(self, store: StateStore) -> None:
        # ``store``'s connection and its transactions (the busy database said as such).
        self._db = store._db
        self._write = store._write
        self._clock = store._clock

    @classmethod
    def of(cls, store: StateStore) -> RebuildMemory:
        """The memory kept in ``store``'s file, over its connection."""
        return cls(store)

    def remember(self, run_id: str, image: str, *, digest: str | None,
                 inputs: BuildInputs | None, outcome: str, note: str,
                 counts: SeverityCounts | None, fixable: int | None,
                 fixable_ids: frozenset[str] | None = None) -> None:
        """Record one rebuild's verdict (committed before returning)."""
        row = (run_id, image, digest, self._clock().astimezone(UTC).isoformat(),
               inputs.fingerprint if inputs is not None else "unknown",
               json.dumps(inputs.to_dict()) if inputs is not None else None, outcome,
               note[:2000], json.dumps(counts.as_dict()) if counts is not None else None,
               fixable, json.dumps(sorted(fixable_ids)) if fixable_ids is not None else None)
        with self._write():
            self._db.execute(
                "INSERT INTO rebuilds (run_id, image, digest, recorded_at, inputs, parts, "
                "outcome, note, counts, fixable, fixable_ids) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def last(self, image: str) -> RebuildMemo | None:
        """The latest remembered rebuild of ``image`` (``repository:tag``)."""
        row = self._db.execute(
            "SELECT * FROM rebuilds WHERE image = ? ORDER BY id DESC LIMIT 1", (image,),
        ).fetchone()
        return None if row is None else _memo(row)

    def history(self, image: str, limit: int = 20) -> list[RebuildMemo]:
        rows = self._db.execute(
            "SELECT * FROM rebuilds WHERE image = ? ORDER BY id DESC LIMIT ?", (image, limit),
        ).fetchall()
        return [_memo(row) for row in rows]

    def fixable_ids(self, run_id: str, image: str) -> frozenset[str] | None:
        """The fixable CVE ids of ``image`` after its rescan in ``run_id``, when that run read
        the vulnerability details (``None`` otherwise: the counts are all there is)."""
        try:
            read = self._db.execute(
                "SELECT 1 FROM finding_reads WHERE run_id = ? AND image = ? AND phase = 'after'",
                (run_id, image)).fetchone()
            if read is None:
                return None
            rows = self._db.execute(
                "SELECT DISTINCT cve FROM findings WHERE run_id = ? AND image = ? AND "
                "phase = 'after' AND fix_version IS NOT NULL AND fix_version <> ''",
                (run_id, image)).fetchall()
        except sqlite3.OperationalError:  # a database without issue 14's tables
            return None
        return frozenset(str(row[0]) for row in rows)


def _memo(row: sqlite3.Row) -> RebuildMemo:
    parts = row["parts"]
    counts = row["counts"]
    ids = row["fixable_ids"]
    return RebuildMemo(
        run_id=row["run_id"], image=row["image"], digest=row["digest"],
        recorded_at=datetime.fromisoformat(row["recorded_at"]), fingerprint=row["inputs"],
        inputs=BuildInputs.from_dict(json.loads(parts)) if parts else None,
        outcome=row["outcome"], note=row["note"],
        counts=SeverityCounts(**json.loads(counts)) if counts else None,
        fixable=row["fixable"],
        fixable_ids=frozenset(json.loads(ids)) if ids is not None else None,
    )
