"""``careen vulnerable`` (the seed's ``list-vulnerable-images``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from careen import assemble
from careen.cli.common import load, run_async
from careen.cli.context import globals_of
from careen.cli.output import ConsoleObserver
from careen.errors import ExitCode
from careen.policy import Policy, Selection
from careen.registries.harbor import open_harbor
from careen.vulnerable import find_vulnerable, untagged_line, vulnerable_list_text, write_outputs

ProjectOption = Annotated[
    list[str] | None,
    typer.Option("--project", "-p", metavar="PROJECT",
                 help="Only this Harbor project (repeatable). "
                 "Default: \\[harbor] projects, or all projects."),
]
HarborUrlOption = Annotated[
    str | None, typer.Option("--harbor-url", help="Harbor's URL (overrides \\[harbor] url).",
                             show_default=False),
]


def vulnerable(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write vulnerable.list ('-' for stdout). "
        "Default: \\[output] vulnerable_list.")] = None,
    json_file: Annotated[Path | None, typer.Option(
        "--json", help="Also write the JSON form (every count, the policy, each reason).")] = None,
    project: ProjectOption = None,
    rule: Annotated[str | None, typer.Option(
        "--rule", help="Policy rule (overrides \\[policy] rule), e.g. 'critical > 0 or high > 0'.",
    )] = None,
    fixable_only: Annotated[bool | None, typer.Option(
        "--fixable-only/--all-findings", help="Count only findings that have a fix.",
        show_default=False)] = None,
    harbor_url: HarborUrlOption = None,
    exit_zero: Annotated[bool, typer.Option(
        "--exit-zero", help="Exit 0 even when images break the policy (for pipelines where "
        "finding images is the normal case).")] = False,
) -> int:
    """List the images that break the policy, as the old list-vulnerable-images did.

    Reads every image's scan summary from Harbor (all pages at once, not one `harbor show`
    per image), applies the policy (default: critical > 0 or high > 0 or medium >= 3) and
    writes vulnerable.list in the seed's format, one line per image:

        5=6,   library/activemq:5.14.4

    Images Harbor never scanned, or failed to scan, are listed separately on stderr and in
    the JSON form, never called clean. Untagged artifacts (superseded digests Harbor keeps
    until tag retention or garbage collection) are no images to rebuild: never lines of the
    list, counted on one line, listed under "untagged" in the JSON form. Each image gets
    the seed's timestamped 'Processing IMAGE' line on stderr.

    Example (Jenkins shell step):

        export CAREEN_HARBOR_URL=https://harbor.example.com CAREEN_HARBOR_USER='robot$careen'
        careen vulnerable -o vulnerable.list --json vulnerable.json

    Exit code 1 when images break the policy (0 with --exit-zero; untagged artifacts never
    count), 3 when Harbor cannot be reached or answers a configured user as anonymous (its
    credentials were not accepted: nothing is judged, no list is written).
    """
    options = globals_of(ctx)
    observer = options.observer()
    config = load(ctx, {
        "harbor.url": harbor_url, "policy.rule": rule, "policy.fixable_only": fixable_only,
        "harbor.projects": project or None,
    }, observer)
    policy = assemble.policy(config)
    settings = assemble.harbor_settings(config)
    projects = list(config.harbor.projects) or None

    async def collect() -> Selection:
        client = await open_harbor(settings, observer=observer)
        try:
            return await find_vulnerable(client, policy, projects=projects, observer=observer)
        finally:
            await client.aclose()

    with observer:
        selection = run_async(collect())

    list_path = output if output is not None else config.output.vulnerable_list
    to_stdout = str(list_path) == "-"
    write_outputs(selection, policy, list_path=None if to_stdout else list_path,
                  json_path=json_file or config.output.json_file)
    if to_stdout:
        print(vulnerable_list_text(selection), end="")
    _summarise(selection, policy, observer, None if to_stdout else list_path)
    if selection.selected and not exit_zero:
        return int(ExitCode.FAILED)
    return int(ExitCode.OK)


def _summarise(selection: Selection, policy: Policy, observer: ConsoleObserver,
               list_path: Path | None) -> None:
    for title, items in (("never scanned", selection.not_scanned),
                         ("scan failed", selection.scan_failed),
                         ("scan still running", selection.scan_in_progress),
                         ("fixable counts unavailable", selection.needs_details)):
        if items:
            observer.warning(f"{len(items)} images {title}, not judged: "
                             + ", ".join(image.reference.short for image, _ in items[:10])
                             + (" ..." if len(items) > 10 else ""))
    if selection.untagged:
        observer.info(untagged_line(len(selection.untagged)))
    where = f"; written to {list_path}" if list_path is not None else ""
    observer.info(
        f"{selection.total} images judged by '{policy.rule}': {len(selection.selected)} break "
        f"the policy, {selection.passed_count} pass, {len(selection.ignored)} ignored{where}"
    )
