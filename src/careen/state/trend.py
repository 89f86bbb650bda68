"""The part of :class:`careen.state.store.StateStore` for the trend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from careen.scan import ScanSummary, SeverityCounts
from careen.state.codec import counts_from_json
from careen.state.database import Database
from careen.state.records import RunKind, ScanPhase, TrendPoint
from careen.state.rows import enum_value, scan_record, time_value


def fleet_summary(images: int, scanned: int, counts: SeverityCounts) -> dict[str, Any]:
    """The ``fleet`` entry of a run's summary: what :meth:`StateStore.trend` plots for it,
    summed by the run as it recorded its ``before`` scans (one image, one scan)."""
    return {"images": images, "scanned": scanned, "counts": counts.as_dict()}


def _fleet_totals(summary_text: str | None, given: Mapping[str, Any] | None = None,
                  ) -> tuple[int, int, SeverityCounts] | None:
    if given is None and not summary_text:
        return None
    try:
        fleet = given if given is not None else json.loads(str(summary_text)).get("fleet")
        if not isinstance(fleet, dict):
            return None
        return (int(fleet["images"]), int(fleet["scanned"]),
                counts_from_json(fleet["counts"], what="fleet counts"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # an older or damaged summary: the scans are summed instead


class Trend(Database):
    """The fleet's findings per severity over the latest runs (the trend chart)."""

    def trend(self, limit_nights: int = 30, *,
              kind: RunKind | str | None = None,
              running: Mapping[str, Mapping[str, Any]] | None = None) -> list[TrendPoint]:
        """The fleet's findings per severity, one point per run with ``before`` scans: the
        latest ``limit_nights`` such runs, oldest first (ready to plot). An image scanned twice
        in one run counts once (its last record). ``running`` gives the :func:`fleet_summary`
        of runs not finished yet (the run writing its report), so their scans are not
        summed again."""
        query = (
            "SELECT id, kind, started_at, summary FROM runs r WHERE EXISTS"
            " (SELECT 1 FROM scans s WHERE s.run_id = r.id AND s.phase = ?)"
        )
        parameters: list[Any] = [ScanPhase.BEFORE.value]
        if kind is not None:
            query += " AND r.kind = ?"
            parameters.append(enum_value(RunKind, kind, "run kind").value)
        query += " ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?"
        parameters.append(limit_nights)
        points: list[TrendPoint] = []
        for run in self._db.execute(query, parameters).fetchall():
            started = time_value(run["started_at"])
            fleet = _fleet_totals(run["summary"], (running or {}).get(run["id"]))
            if fleet is not None:  # summed as the run recorded its scans: no re-read
                images, scanned, counts = fleet
                points.append(TrendPoint(
                    run_id=run["id"], kind=RunKind(run["kind"]), started_at=started,
                    date=started.astimezone(UTC).date(), images=images, scanned=scanned,
                    counts=counts,
                ))
                continue
            latest: dict[str, ScanSummary] = {}
            for row in self._db.execute(
                "SELECT * FROM scans WHERE run_id = ? AND phase = ? ORDER BY id",
                (run["id"], ScanPhase.BEFORE.value),
            ):
                latest[row["image"]] = scan_record(row).summary
            total = SeverityCounts()
            scanned = 0
            for summary in latest.values():
                if summary.counts is not None:
                    total += summary.counts
                    scanned += 1
            points.append(TrendPoint(
                run_id=run["id"], kind=RunKind(run["kind"]), started_at=started,
                date=started.astimezone(UTC).date(), images=len(latest), scanned=scanned,
                counts=total,
            ))
        points.reverse()
        return points
