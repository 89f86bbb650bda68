"""Commands that talk to Harbor: ``images``, ``scan``, ``schedule``."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from careen import assemble
from careen.cli.commands.vulnerable_cmd import HarborUrlOption, ProjectOption
from careen.cli.common import command, emit, load, run_async
from careen.cli.context import globals_of
from careen.cli.output import ConsoleObserver, table_console
from careen.config import Config
from careen.errors import ExitCode, UsageError
from careen.inventory import Artifact, Image
from careen.reference import ImageReference
from careen.registries.harbor import HarborClient, open_harbor
from careen.registries.interface import ScanControl
from careen.scan import ScanSummary, Severity
from careen.textsafe import csv_row, terminal_text

T = TypeVar("T")

SEVERITY_COLUMNS = [s.label for s in sorted(Severity, reverse=True)]
#: A string as ``json.dumps`` writes it (ASCII, escaped), without the encoder around it.
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _with_client(config: Config, observer: ConsoleObserver,
                 work: Callable[[HarborClient], Awaitable[T]]) -> T:
    settings = assemble.harbor_settings(config)

    async def run() -> T:
        client = await open_harbor(settings, observer=observer)
        try:
            return await work(client)
        finally:
            await client.aclose()

    with observer:
        return run_async(run())


#: The columns of :func:`image_row`, in order (the CSV header).
IMAGE_ROW_COLUMNS = ("image", "digest", "status", *SEVERITY_COLUMNS, "fixable", "scanner",
                     "scanned_at", "multi_arch", "immutable")


def image_row(image: Image) -> dict[str, Any]:
    scan = image.scan
    counts = scan.counts.as_dict() if scan.counts is not None else dict.fromkeys(
        SEVERITY_COLUMNS)
    return {
        "image": image.reference.short, "digest": image.digest,
        # Success with counts Careen cannot read is not a clean success (issue 18 row 2).
        "status": "unreadable" if scan.unreadable_reason else scan.status.value,
        **counts, "fixable": scan.fixable_total, "scanner": scan.scanner,
        "scanned_at": scan.scanned_at.isoformat() if scan.scanned_at else None,
        "multi_arch": image.is_index, "immutable": image.immutable,
    }


def json_rows(artifact: Artifact) -> Iterator[tuple[str, str]]:
    """``(image, json.dumps(image_row(image)))`` for each image of ``artifact``, the JSON
    made once per artifact for what its images share (all but the name and immutability):
    a 10,000-artifact inventory encodes 10,000 small objects instead of 11,000 whole rows
    and builds no :class:`Image` (tests check the lines are ``image_row``'s)."""
    scan = artifact.scan
    counts = scan.counts.as_dict() if scan.counts is not None else dict.fromkeys(
        SEVERITY_COLUMNS)
    shared = json.dumps({
        "digest": artifact.digest,
        "status": "unreadable" if scan.unreadable_reason else scan.status.value,
        **counts, "fixable": scan.fixable_total, "scanner": scan.scanner,
        "scanned_at": scan.scanned_at.isoformat() if scan.scanned_at else None,
        "multi_arch": artifact.is_index,
    })[1:-1]
    for name, immutable in artifact.image_names():
        yield name, (f'{{"image": {_json_string(name)}, {shared}, "immutable": '
                     f'{"true" if immutable else "false"}}}')


def images(
    ctx: typer.Context,
    project: ProjectOption = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or csv.")] = "table",
    harbor_url: HarborUrlOption = None,
) -> None:
    """List every image in Harbor with its scan summary: counts per severity, scan status,
    scanner and scan time.

    This is the old 'harbor list' followed by one 'harbor show' per image, done in one
    command: Careen reads whole pages of artifacts with their scan overviews, many at once.
    Untagged artifacts are listed by digest; images never scanned show status not_scanned.

    Examples:

        careen images --project library
        careen images --format csv > inventory.csv
        careen images --format json | jq '.[] | select(.high > 0) | .image'
    """
    if fmt not in ("table", "json", "csv"):
        raise typer.BadParameter("expected table, json or csv", param_hint="--format")
    observer = globals_of(ctx).observer()
    config = load(ctx, {"harbor.url": harbor_url, "harbor.projects": project or None}, observer)
    projects = list(config.harbor.projects) or None

    # Each row is kept in its output form as it streams in (one JSON object on a line, the
    # neutralised CSV cells), not as a dict: a fleet of 100,000 images stays a few tens of MB.
    # Only the table, for people, keeps whole rows.
    def encode(row: dict[str, Any]) -> Any:
        if fmt == "csv":
            cells = csv_row(row)
            return tuple(cells[column] for column in IMAGE_ROW_COLUMNS)
        return row

    async def collect(client: HarborClient) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = []
        stream: AsyncIterator[Artifact] = client.artifacts(projects)
        async for artifact in stream:
            if fmt == "json":
                rows.extend(json_rows(artifact))
                continue
            for image in artifact.images():
                row = image_row(image)
                rows.append((str(row["image"]), encode(row)))
        rows.sort(key=lambda pair: pair[0])
        return rows

    rows = _with_client(config, observer, collect)
    if fmt == "json":
        write = sys.stdout.write
        write("[")
        for index, (_, line) in enumerate(rows):
            write(("\n  " if index == 0 else ",\n  ") + line)
        write("\n]\n" if rows else "]\n")
        sys.stdout.flush()
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(IMAGE_ROW_COLUMNS)
        writer.writerows(cells for _, cells in rows)
    else:
        table = Table(show_edge=False)
        for column in ("image", "status", *SEVERITY_COLUMNS, "fixable"):
            table.add_column(column, justify="left" if column in ("image", "status") else "right")
        for _, row in rows:
            table.add_row(*(("-" if row[c] is None else terminal_text(str(row[c])))
                            for c in ("image", "status", *SEVERITY_COLUMNS, "fixable")))
        # Piped output keeps whole names rather than fitting 80 columns.
        table_console().print(table)


def scan(
    ctx: typer.Context,
    images_: Annotated[list[str] | None, typer.Argument(
        metavar="[IMAGE]...", help="Images to scan, e.g. library/grafana:4.1.2.",
        show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Scan every image (Harbor's scan-all).")
                    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until each scan finishes and print "
                                       "the new summaries.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")
                       ] = 600.0,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.05, help="Seconds between two looks at the scans with --wait.")
    ] = 5.0,
    harbor_url: HarborUrlOption = None,
) -> int:
    """Ask Harbor to scan images now, instead of waiting for the nightly scan-all.

    Harbor scans in the background: without --wait the command returns once Harbor accepted
    each request. With --wait it polls until each scan is finished (or --timeout) and prints
    the new summaries as JSON on stdout. On Harbor 1.x images are scanned by tag and --all
    is the 1.x scan-all (POST /api/repositories/scanAll, or a manual scan-all from 1.8).

    Examples:

        careen scan library/grafana:4.1.2 --wait
        careen scan --all
    """
    if all_ == bool(images_):
        raise UsageError("name images to scan, or give --all (not both)")
    references = [ImageReference.parse(text) for text in images_ or []]
    observer = globals_of(ctx).observer()
    config = load(ctx, {"harbor.url": harbor_url}, observer)

    async def work(harbor: ScanControl) -> dict[ImageReference, ScanSummary]:
        if all_:
            started = await harbor.trigger_scan_all()
            observer.info("scan-all started" if started else "a scan-all is already running")
            return {}
        for reference in references:
            observer.processing(reference.short)
            await harbor.request_scan(reference)
        if not wait:
            return {}
        return await harbor.wait_for_scans(references, timeout=timeout, interval=interval)

    results = _with_client(config, observer, work)
    if results:
        emit(json.dumps([{"image": ref.short, "status": s.status.value,
                          "counts": s.counts.as_dict() if s.counts else None}
                         for ref, s in results.items()], indent=2))
        unfinished = [ref.short for ref, s in results.items() if not s.status.is_final]
        if unfinished:
            observer.warning(f"not finished after {timeout:g} s: {', '.join(unfinished)}")
            return int(ExitCode.FAILED)
    return int(ExitCode.OK)


schedule_app = typer.Typer(help="Show or set Harbor's scan-all schedule.",
                           no_args_is_help=True, rich_markup_mode="rich")

_DAILY = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)\Z")


def cron_for_daily(time_of_day: str, *, local: bool = False, option: str = "--daily",
                   now: datetime | None = None) -> tuple[str, str]:
    """Harbor's 6-field cron (seconds first, and 0; Harbor runs it in UTC) for a daily time
    ``HH:MM``, and a sentence saying when that is. ``local``: ``HH:MM`` is this machine's
    local time (at ``now``'s UTC offset), converted to UTC; else it is UTC."""
    match = _DAILY.match(time_of_day)
    if match is None:
        raise UsageError(f"{option} {time_of_day!r}: expected HH:MM, e.g. 00:00")
    hour, minute = int(match[1]), int(match[2])
    said = f"{hour:02d}:{minute:02d} UTC"
    if local:
        at = (now or datetime.now(UTC)).astimezone().replace(hour=hour, minute=minute,
                                                             second=0, microsecond=0)
        offset = at.strftime("%z")
        utc = at.astimezone(UTC)
        said = (f"{hour:02d}:{minute:02d} local time (UTC{offset[:3]}:{offset[3:]}) = "
                f"{utc.hour:02d}:{utc.minute:02d} UTC")
        hour, minute = utc.hour, utc.minute
    return f"0 {minute} {hour} * * *", said


def _daily_utc(cron: str | None) -> str | None:
    """``HH:MM`` UTC of a daily cron (``0 M H * * *``), else ``None``."""
    fields = (cron or "").split()
    if len(fields) == 6 and fields[3:] == ["*", "*", "*"] and all(
            f.isdigit() for f in fields[:3]):
        return f"{int(fields[2]):02d}:{int(fields[1]):02d}"
    return None


@command(schedule_app, "show")
def schedule_show(ctx: typer.Context, harbor_url: HarborUrlOption = None) -> None:
    """Print Harbor's scan-all schedule as JSON (null when there is none): its type, its cron
    (UTC) and, for a daily one, "daily_utc" (HH:MM UTC). On Harbor 1.6-1.7 this is the
    daily scan_all_policy of the system configuration.

    Example:  careen schedule show
    """
    observer = globals_of(ctx).observer()
    config = load(ctx, {"harbor.url": harbor_url}, observer)

    async def work(client: ScanControl) -> dict[str, Any] | None:
        current = await client.scan_all_schedule()
        if current is None:
            return None
        shown: dict[str, Any] = {"type": current.type, "cron": current.cron,
                                 "status": current.status}
        daily = _daily_utc(current.cron)
        if daily is not None:
            shown["daily_utc"] = daily
        return shown

    emit(json.dumps(_with_client(config, observer, work)))


@command(schedule_app, "scan-all")
def schedule_scan_all(
    ctx: typer.Context,
    daily: Annotated[str | None, typer.Option(
        "--daily", metavar="HH:MM", help="Scan everything every day at this local time "
        "(converted to UTC, which Harbor runs its schedule in).")] = None,
    utc: Annotated[str | None, typer.Option(
        "--utc", metavar="HH:MM", help="Scan everything every day at this UTC time.")] = None,
    cron: Annotated[str | None, typer.Option("--cron", help="Harbor cron: 6 fields, seconds "
                                             "first and 0, in UTC, e.g. '0 0 2 * * *'.")] = None,
    none: Annotated[bool, typer.Option("--none", help="Remove the schedule.")] = False,
    harbor_url: HarborUrlOption = None,
) -> None:
    """Set when Harbor scans every image. The old scheme scanned everything daily at 00:00
    and ran the rebuild job after it. --daily takes this machine's local time and says the
    UTC time it set (a local time that moves with daylight saving is not followed).

    Harbor 2.x and 1.8-1.10 keep a cron; Harbor 1.6-1.7 keep only a daily time (the
    system configuration's scan_all_policy), so there --cron must be a daily one.

    Examples:

        careen schedule scan-all --daily 00:00
        careen schedule scan-all --utc 16:00
        careen schedule scan-all --cron '0 30 1 * * *'
        careen schedule scan-all --none
    """
    if [daily is not None, utc is not None, cron is not None, none].count(True) != 1:
        raise UsageError("give exactly one of --daily HH:MM, --utc HH:MM, --cron EXPR or --none")
    said = None
    if none:
        kind, expression = "None", None
    elif daily is not None or utc is not None:
        expression, said = cron_for_daily(daily if daily is not None else str(utc),
                                          local=daily is not None,
                                          option="--daily" if daily is not None else "--utc")
        kind = "Daily" if expression == "0 0 0 * * *" else "Custom"
    else:
        kind, expression = "Custom", cron
    observer = globals_of(ctx).observer()
    config = load(ctx, {"harbor.url": harbor_url}, observer)

    async def work(client: ScanControl) -> None:
        await client.set_scan_all_schedule(kind, expression)

    _with_client(config, observer, work)
    if kind == "None":
        observer.info("scan-all schedule removed")
    elif said is not None:
        observer.info(f"scan-all schedule set: every day at {said} (cron '{expression}')")
    else:
        observer.info(f"scan-all schedule set: {kind} ({expression}, UTC)")
