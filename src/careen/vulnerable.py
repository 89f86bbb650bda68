"""The seed's ``list-vulnerable-images``: every image's scan summary, judged by the policy.

Reads the inventory as a stream (nothing but the images someone must look at is kept), tells
the observer about each image as the seed's log did, and, for rules that need per-severity
fixable counts the overview lacks, fetches the vulnerability list of just those images.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from careen.events import NULL_OBSERVER, Observer
from careen.fileio import write_atomically
from careen.inventory import Image
from careen.policy import Judged, Policy, Selection, Verdict
from careen.registries.interface import ScanSource
from careen.vulnlist import VulnerableEntry, render_vulnerable_list, vulnerable_json

#: Vulnerability lists fetched at once when a rule needs fixable counts per severity.
DETAILS_CONCURRENCY = 8


async def find_vulnerable(
    source: ScanSource, policy: Policy, *, projects: Sequence[str] | None = None,
    observer: Observer = NULL_OBSERVER,
    on_image: Callable[[Image, Verdict], None] | None = None,
) -> Selection:
    """Judge every image ``source`` holds (all projects, or ``projects``). ``on_image`` sees
    every judged image, passing ones included (the selection keeps only the others)."""
    selection = Selection()
    judged = 0
    async for artifact in source.artifacts(list(projects) if projects else None):
        for image in artifact.images():
            observer.processing(image.reference.short)
            verdict = policy.evaluate(image)
            selection.add(image, verdict)
            if on_image is not None:
                on_image(image, verdict)
            judged += 1
        observer.progress("images", judged, None)
    if selection.needs_details:
        await _add_details(source, policy, selection, observer)
    _sort(selection)
    return selection


async def _add_details(source: ScanSource, policy: Policy, selection: Selection,
                       observer: Observer) -> None:
    waiting, selection.needs_details = selection.needs_details, []
    observer.info(f"fetching vulnerability lists of {len(waiting)} images for fixable counts")
    limit = asyncio.Semaphore(DETAILS_CONCURRENCY)

    async def enrich(image: Image) -> Image:
        async with limit:
            summary = await source.scan_summary_with_fixable(image.reference)
        return replace(image, scan=summary)

    for image in await asyncio.gather(*(enrich(image) for image, _ in waiting)):
        selection.add(image, policy.evaluate(image))


def _by_reference(item: Judged) -> str:
    return item[0].reference.short


def _sort(selection: Selection) -> None:
    """The crawl is concurrent; the lists people and diffs read are sorted, as the seed's were
    (``harbor list`` printed in name order)."""
    for items in (selection.selected, selection.not_scanned, selection.scan_failed,
                  selection.scan_in_progress, selection.ignored, selection.needs_details,
                  selection.untagged):
        items.sort(key=_by_reference)


def untagged_line(count: int) -> str:
    """The one line that counts the untagged artifacts breaking the policy (they are no
    images to rebuild and never lines of vulnerable.list)."""
    what = "untagged artifact breaks" if count == 1 else "untagged artifacts break"
    return (f"{count} {what} the policy; Harbor's tag retention or garbage collection "
            "removes them")


def vulnerable_list_text(selection: Selection) -> str:
    """vulnerable.list's text for the selected images, in the seed's format."""
    return render_vulnerable_list(
        VulnerableEntry.from_image(image) for image, _ in selection.selected)


def write_outputs(selection: Selection, policy: Policy, *, list_path: Path | None,
                  json_path: Path | None) -> None:
    """Write vulnerable.list (the seed's format) and its JSON form, each atomically: a
    killed run never leaves half a file in place of a good one."""
    if list_path is not None:
        write_atomically(list_path, vulnerable_list_text(selection))
    if json_path is not None:
        document = vulnerable_json(selection, policy)
        write_atomically(json_path, json.dumps(document, indent=2, sort_keys=False) + "\n")
