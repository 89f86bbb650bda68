"""The JSON report: :meth:`RunResult.to_dict`, as documented by
``docs/schemas/run-result.schema.json`` (versioned by ``schema_version``), and its reader.

The reader (:func:`result_from_dict`) is what ``careen report --merge`` uses to load the JSON
results of CI shards: a JSON file is input, so every field is checked and a bad one is named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from careen.attention import attention_from_dicts
from careen.details import Finding, findings_from_dicts
from careen.errors import InputFileError
from careen.reference import ImageReference
from careen.reports.interface import ReportContext
from careen.results import RESULT_SCHEMA_VERSION, ImageResult, Outcome, RunResult
from careen.scan import ScanStatus, ScanSummary
from careen.state.codec import counts_from_json


class JsonReport:
    name = "json"
    suffix = ".json"

    def render(self, result: RunResult, context: ReportContext) -> str:
        return render_json(result)


def render_json(result: RunResult) -> str:
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def read_result(text: str, *, source: str = "JSON result") -> RunResult:
    """Parse a JSON report written by :func:`render_json`; ``source`` (a path) names it in
    errors. Raises :class:`InputFileError`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputFileError(source, f"not JSON ({error.msg}, line {error.lineno}); give a "
                             "file written by 'careen run --reports-dir' (*.json)") from None
    return result_from_dict(data, source=source)


def result_from_dict(data: object, *, source: str = "JSON result") -> RunResult:
    """Rebuild a :class:`RunResult` from :meth:`RunResult.to_dict`'s document."""
    if not isinstance(data, Mapping):
        raise InputFileError(source, "not a Careen run result (expected a JSON object)")
    version = data.get("schema_version")
    # Version 2 only added fields: a version 1 document (an older run's) reads with them empty.
    if version not in (1, RESULT_SCHEMA_VERSION):
        raise InputFileError(
            source, f"run result schema version {version!r}; this Careen reads version "
            f"{RESULT_SCHEMA_VERSION}: write the result again with this Careen")
    try:
        return RunResult(
            run_id=_text(data["run_id"], "run_id"),
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(data["finished_at"]),
            policy=_text(data["policy"], "policy"),
            images=tuple(_image(raw, index) for index, raw in enumerate(data["images"])),
            plan_id=_optional_text(data.get("plan_id"), "plan_id"),
            tree_commit=_optional_text(data.get("tree_commit"), "tree_commit"),
            harbor=_optional_text(data.get("harbor"), "harbor"),
            registry=_optional_text(data.get("registry"), "registry"),
            unscanned=tuple((_text(item["image"], "unscanned.image"),
                             _text(item["reason"], "unscanned.reason"))
                            for item in data.get("unscanned", ())),
            judged=_count(data.get("judged", 0), "judged"),
            dry_run=bool(data.get("dry_run", False)),
            untagged=tuple((_text(item["image"], "untagged.image"),
                            _text(item["reason"], "untagged.reason"))
                           for item in data.get("untagged", ())),
            attention=attention_from_dicts(data.get("attention") or ()),
            fleet={str(k): _count(v, f"fleet.{k}") for k, v in (data.get("fleet") or {}).items()},
            details_note=_text(data.get("details_note", ""), "details_note"),
        )
    except (KeyError, TypeError, ValueError) as error:
        what = f"missing field {error}" if isinstance(error, KeyError) else str(error)
        raise InputFileError(source, f"not a valid Careen run result: {what}") from None


def _image(raw: Mapping[str, Any], index: int) -> ImageResult:
    where = f"images[{index}]"
    level = raw.get("level")
    duration = raw.get("duration")
    return ImageResult(
        image=ImageReference.parse_short(raw["image"]),
        outcome=Outcome(raw["outcome"]),
        reason=_text(raw["reason"], f"{where}.reason"),
        note=_text(raw.get("note", ""), f"{where}.note"),
        level=None if level is None else _count(level, f"{where}.level"),
        parents=tuple(ImageReference.parse_short(p) for p in raw.get("parents", ())),
        selected=bool(raw.get("selected", True)),
        before=_summary(raw.get("before"), f"{where}.before"),
        before_digest=_optional_text(raw.get("before_digest"), f"{where}.before_digest"),
        after=_summary(raw.get("after"), f"{where}.after"),
        after_digest=_optional_text(raw.get("after_digest"), f"{where}.after_digest"),
        duration=None if duration is None else float(duration),
        log_path=_optional_text(raw.get("log_path"), f"{where}.log_path"),
        log_tail=tuple(_text(line, f"{where}.log_tail") for line in raw.get("log_tail", ())),
        cves_before=_findings(raw.get("cves_before")),
        cves_after=_findings(raw.get("cves_after")),
    )


def _findings(raw: Any) -> tuple[Finding, ...] | None:
    return None if raw is None else findings_from_dicts(raw)


def _summary(raw: Mapping[str, Any] | None, where: str) -> ScanSummary | None:
    if raw is None:
        return None
    counts = raw.get("counts")
    scanned_at = raw.get("scanned_at")
    fixable = raw.get("fixable")
    return ScanSummary(
        status=ScanStatus(raw["status"]),
        counts=None if counts is None else counts_from_json(counts, what=f"{where}.counts"),
        fixable_total=None if fixable is None else _count(fixable, f"{where}.fixable"),
        scanner=_optional_text(raw.get("scanner"), f"{where}.scanner"),
        scanned_at=None if scanned_at is None else datetime.fromisoformat(scanned_at),
    )


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be text, not {type(value).__name__}")
    return value


def _optional_text(value: object, where: str) -> str | None:
    return None if value is None else _text(value, where)


def _count(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{where} must be a whole number >= 0, not {value!r}")
    return value
