"""Rows to records and back: the text forms the state stores (times, counts, JSON
documents without secrets, plan sources) and the folders it lives in.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from careen.reference import ImageReference
from careen.scan import ScanStatus, ScanSummary, SeverityCounts
from careen.state.codec import scan_counts_from_json, scan_counts_to_json
from careen.state.records import (
    ERROR_TEXT_LIMIT,
    STATE_FILE_NAME,
    BuildRecord,
    BuildStatus,
    PlanRecord,
    ScanPhase,
    ScanRecord,
    StateFileError,
)

INSERT_SCAN = (
    "INSERT INTO scans (run_id, image, digest, phase, status, counts, scanner, scanned_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def scan_row(run_id: str, image: str, digest: str | None, phase: ScanPhase,
              summary: ScanSummary) -> tuple[Any, ...]:
    return (
        run_id, image, digest, phase.value, summary.status.value,
        counts_text(summary.counts, summary.fixable, summary.fixable_total,
                     summary.counts_unit),
        summary.scanner,
        summary.scanned_at.isoformat() if summary.scanned_at is not None else None,
    )


@functools.lru_cache(maxsize=4096)
def counts_text(counts: SeverityCounts | None, fixable: SeverityCounts | None,
                 fixable_total: int | None, unit: str) -> str | None:
    """The ``scans.counts`` text. A fleet has few distinct count sets and a night records
    every image's: each set is encoded once."""
    document = scan_counts_to_json(ScanSummary(ScanStatus.SUCCESS, counts=counts,
                                               fixable=fixable, fixable_total=fixable_total,
                                               counts_unit=unit))
    return json.dumps(document) if document is not None else None



def scan_record(row: sqlite3.Row) -> ScanRecord:
    counts = json.loads(row["counts"]) if row["counts"] is not None else None
    summary = scan_counts_from_json(
        counts, status=row["status"], scanner=row["scanner"],
        scanned_at=optional_time(row["scanned_at"]),
    )
    return ScanRecord(row["run_id"], row["image"], row["digest"], ScanPhase(row["phase"]),
                      summary)


def build_record(row: sqlite3.Row) -> BuildRecord:
    return BuildRecord(
        id=row["id"], run_id=row["run_id"], plan_id=row["plan_id"], image=row["image"],
        step=row["step"], attempt=row["attempt"], status=BuildStatus(row["status"]),
        started_at=optional_time(row["started_at"]),
        finished_at=optional_time(row["finished_at"]), duration=row["duration"],
        digest=row["digest"], log_path=row["log_path"], error=row["error"],
        image_id=row["image_id"],
    )


def plan_record(row: sqlite3.Row) -> PlanRecord:
    return PlanRecord(
        id=row["id"], created_at=time_value(row["created_at"]), source=row["source"],
        policy=row["policy"], body=json.loads(row["body"]),
    )


def row_id(value: int | None) -> int:
    if value is None:  # pragma: no cover - sqlite3 always sets it after an INSERT
        raise RuntimeError("SQLite returned no row id for an INSERT")
    return value


def image_text(image: ImageReference | str) -> str:
    text = image.short if isinstance(image, ImageReference) else image
    if not isinstance(text, str) or not text:
        raise ValueError(f"an image is a reference or non-empty text, not {image!r}")
    return text


def error_text(text: str) -> str:
    if len(text) <= ERROR_TEXT_LIMIT:
        return text
    return "…" + text[-(ERROR_TEXT_LIMIT - 1):]


def time_text(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("state timestamps must be timezone-aware (the clock returned naive)")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def time_value(text: str) -> datetime:
    return datetime.fromisoformat(text)


def optional_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


_E = TypeVar("_E", bound=StrEnum)


def enum_value(kind: type[_E], value: _E | str, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise ValueError(f"{what} {value!r} is not one of {known}") from None


#: Keys that name a secret. Matched against run options and summaries, which a CLI might
#: build from all of its flags — including a registry password.
_SECRET_KEY = re.compile(
    r"password|passwd|passphrase|(^|[_-])pass$|secret|token|credential|api_?key|private_?key",
    re.IGNORECASE,
)


def json_text(document: dict[str, Any], what: str, *, refuse_secrets: bool) -> str:
    if refuse_secrets:
        refuse_secret_keys(document, what)
    try:
        return json.dumps(document, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} cannot be stored as JSON: {error}") from None


def refuse_secret_keys(document: object, what: str, where: str = "") -> None:
    if isinstance(document, Mapping):
        for key, value in document.items():
            name = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and _SECRET_KEY.search(key):
                raise ValueError(
                    f"{what}: key {name!r} looks like a secret; secrets are never stored in "
                    "the state — leave it out"
                )
            refuse_secret_keys(value, what, name)
    elif isinstance(document, list | tuple):
        for index, item in enumerate(document):
            refuse_secret_keys(item, what, f"{where}[{index}]")


def plan_source(source: str) -> str:
    """``harbor``, ``stdin``, ``url``, ``file:PATH`` or ``url:URL``. A URL is stored without
    user info, query or fragment, where credentials and tokens hide."""
    if source in ("harbor", "stdin", "url"):
        return source
    if source.startswith("file:") and len(source) > len("file:"):
        return source
    if source.startswith("url:") and len(source) > len("url:"):
        parts = urlsplit(source[len("url:"):])
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return "url:" + urlunsplit((parts.scheme, host, parts.path, "", ""))
    raise ValueError(
        f"plan source {source!r} is not one of harbor, stdin, url, url:URL, file:PATH"
    )


def make_private_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents with mode 0700 (existing ones are left as
    they are)."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        except OSError as error:
            raise StateFileError(
                folder / STATE_FILE_NAME, f"cannot create folder {path}: {error.strerror}"
            ) from error
