"""The part of :class:`careen.state.store.StateStore` for plans."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from careen.state.database import Database
from careen.state.records import PlanRecord
from careen.state.rows import json_text, plan_record, plan_source, time_text


class Plans(Database):
    """Plans: saved, imported under their own id, loaded and listed."""

    def save_plan(self, body: Mapping[str, Any], *, source: str,
                  policy: str | None) -> str:
        """Store a plan as given; return its id (``plan-YYYYMMDD-HHMMSS-xxxx``)."""
        if not isinstance(body, Mapping):
            raise TypeError(f"a plan body is a JSON object (dict), not {type(body).__name__}")
        body_text = json_text(dict(body), "plan body", refuse_secrets=False)
        now = self._clock()
        return self._insert_with_new_id(
            "plan", now,
            "INSERT INTO plans (id, created_at, source, policy, body) VALUES (?, ?, ?, ?, ?)",
            (time_text(now), plan_source(source), policy, body_text),
        )

    def import_plan(self, plan_id: str, body: Mapping[str, Any], *, source: str,
                    policy: str | None) -> PlanRecord:
        """Store a plan made elsewhere under its own id (a CI agent running one image of a
        plan another machine made); an id already stored is kept as it is."""
        if not isinstance(body, Mapping):
            raise TypeError(f"a plan body is a JSON object (dict), not {type(body).__name__}")
        body_text = json_text(dict(body), "plan body", refuse_secrets=False)
        with self._write():
            self._db.execute(
                "INSERT OR IGNORE INTO plans (id, created_at, source, policy, body)"
                " VALUES (?, ?, ?, ?, ?)",
                (plan_id, time_text(self._clock()), plan_source(source), policy, body_text),
            )
        return self.load_plan(plan_id)

    def load_plan(self, plan_id: str) -> PlanRecord:
        """The plan ``plan_id``; :class:`UnknownPlanError` (listing the latest ids) if none."""
        return plan_record(self._plan_row(plan_id))

    def latest_plan(self) -> PlanRecord | None:
        plans = self.plans(1)
        return plans[0] if plans else None

    def plans(self, limit: int = 20) -> list[PlanRecord]:
        """The latest ``limit`` plans, newest first."""
        rows = self._db.execute(
            "SELECT * FROM plans ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
        ).fetchall()
        return [plan_record(row) for row in rows]
