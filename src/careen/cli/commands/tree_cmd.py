"""``careen tree``: which folder builds which image, and in what order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from careen.attention import AttentionItem
from careen.cli.common import emit, load
from careen.cli.output import table_console
from careen.errors import ExitCode, UsageError
from careen.tree.discover import DockerfileTree, discover_configured
from careen.tree.graph import BuildGraph, tree_attention


def tree(
    ctx: typer.Context,
    root: Annotated[Path | None, typer.Option(
        "--root", "-r", help="The Dockerfile tree (default: \\[tree] root, or '.').")] = None,
    project: Annotated[str | None, typer.Option(
        "--project", help="Harbor project of app/version folders (default: \\[tree] project, "
        "'library').")] = None,
    layout: Annotated[str | None, typer.Option(
        "--layout", help="auto, app/version or project/app/version (default: \\[tree] layout, "
        "'auto').")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> int:
    """Show which Dockerfile folder builds which image, each image's parents, and the order
    a rebuild would follow.

    Folders are read as app/version/Dockerfile (the seed's mysql/5.7.18/Dockerfile, an image
    library/mysql:5.7.18) or project/app/version/Dockerfile; a folder named latest builds the
    tag latest. Each Dockerfile's FROM lines (with ARG defaults and build args) tell which
    images of the tree it is built on: parents are rebuilt before their children.

    Example:

        careen tree --root samples/tree
        careen tree --root . --format json > tree.json

    Nothing is mapped silently: a Dockerfile that builds no image (nested in another
    image's folder, deeper than the layout, a folder name that is not an image name) is
    listed as unmapped with why; a FROM naming an image of this tree's registry or project
    that no folder builds is a warning; so is a FROM cycle. Each is printed on stderr as
    "needs attention" with its fix, and the exit code is then 1. [[tree.rule]] entries and
    [tree.mapping] name folders off the layout.
    """
    if fmt not in ("table", "json"):
        raise typer.BadParameter("expected table or json", param_hint="--format")
    config = load(ctx, {"tree.root": root, "tree.project": project, "tree.layout": layout})
    found = discover_configured(config)
    graph = BuildGraph.from_tree(found)
    attention = tree_attention(found, graph)
    document = tree_document(found, graph, attention)
    if fmt == "json":
        emit(json.dumps(document, indent=2))
    else:
        _print_table(document)
    console = Console(stderr=True, highlight=False)
    for item in attention:
        console.print(item.line(), markup=False, soft_wrap=True)
    if not found.images and not attention:
        raise UsageError(f"no Dockerfile found under {config.tree.root}",
                         hint="point --root (or [tree] root) at the folder holding "
                         "app/version/Dockerfile")
    console.print(
        f"{document['summary']['dockerfiles']} Dockerfiles, {len(found.images)} images "
        f"({document['summary']['tags']} tags), {len(found.unmapped)} unmapped, "
        f"{document['summary']['warnings']} warnings", markup=False, soft_wrap=True,
    )
    return int(ExitCode.FAILED if attention else ExitCode.OK)


def tree_document(found: DockerfileTree, graph: BuildGraph,
                  attention: tuple[AttentionItem, ...]) -> dict[str, Any]:
    levels = graph.levels()
    level_of = {image: n for n, images in enumerate(levels) for image in images}
    images = []
    for reference, item in sorted(found.images.items(), key=lambda kv: kv[0].short):
        images.append({
            "image": reference.short,
            "tags": list(item.tags),
            "folder": _relative(item.folder, found.root),
            "dockerfile": _relative(item.dockerfile, found.root),
            "parents": [p.short for p in graph.parents(reference)],
            "external_parents": [str(p) for p in item.parents
                                 if found.resolve_parent(p) in (None, reference)],
            "upstream_wrapper": found.is_upstream_wrapper(reference),
            "children": [c.short for c in graph.children(reference)],
            "level": level_of.get(reference),
            "layout": item.source,
        })
    unmapped = [{"path": p.path.as_posix(), "reason": p.message} for p in found.unmapped]
    # tree_attention lists the tree's problems in order, then the cycles.
    problem_items = zip(found.problems, attention, strict=False)
    skip = {id(item) for problem, item in problem_items if problem.unmapped}
    warnings = [{"kind": item.kind.value, "subject": item.subject, "reason": item.reason}
                for item in attention if id(item) not in skip]
    return {
        "root": str(found.root),
        "images": images,
        "build_order": [[image.short for image in level] for level in levels],
        "unmapped": unmapped,
        "warnings": warnings,
        "summary": {"dockerfiles": len(images) + len(unmapped), "images": len(images),
                    "tags": sum(len(item.tags) for item in found.images.values()),
                    "unmapped": len(unmapped), "warnings": len(warnings)},
        "problems": [item.line() for item in attention],
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _print_table(document: dict[str, Any]) -> None:
    """The table people read, from the same document ``--format json`` prints."""
    console = table_console()
    table = Table(title=f"Dockerfile tree {document['root']}", title_justify="left")
    for column in ("image", "tags", "folder", "built FROM", "level"):
        table.add_column(column)
    for item in document["images"]:
        built_from = item["parents"] + [
            f"{e} ({'upstream' if item['upstream_wrapper'] else 'external'})"
            for e in item["external_parents"]]
        table.add_row(item["image"], ", ".join(item["tags"]), Text(item["folder"]),
                      Text(", ".join(built_from) or "-"),
                      "-" if item["level"] is None else str(item["level"]))
    console.print(table)
    console.print("Build order (parents first; images on one line can build at once):")
    for number, images in enumerate(document["build_order"]):
        console.print(f"  {number}: " + "  ".join(images), markup=False)
