"""``careen tree``: which folder builds which image, and in what order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from careen.cli.common import emit, load
from careen.cli.output import table_console
from careen.errors import ExitCode, UsageError
from careen.tree.discover import DockerfileTree, discover_tree
from careen.tree.graph import BuildGraph


def tree(
    ctx: typer.Context,
    root: Annotated[Path | None, typer.Option(
        "--root", "-r", help="The Dockerfile tree (default: \\[tree] root, or '.').")] = None,
    project: Annotated[str | None, typer.Option(
        "--project", help="Harbor project of app/version folders (default: \\[tree] project, "
        "'library').")] = None,
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

    Problems (a folder name that is not a valid image name, a FROM cycle, two folders for one
    image) are listed on stderr; the exit code is then 1.
    """
    if fmt not in ("table", "json"):
        raise typer.BadParameter("expected table or json", param_hint="--format")
    config = load(ctx, {"tree.root": root, "tree.project": project})
    found = discover_tree(
        config.tree.root, project=config.tree.project, registry=config.registry.server,
        mapping=config.tree.mapping, build_args=config.build.build_args,
        layout=config.tree.layout,
    )
    graph = BuildGraph.from_tree(found)
    problems = [str(p) for p in found.problems] + list(graph.problems)
    document = tree_document(found, graph, problems)
    if fmt == "json":
        emit(json.dumps(document, indent=2))
    else:
        _print_table(document)
    console = Console(stderr=True, highlight=False)
    for problem in problems:
        console.print(f"problem: {problem}", markup=False)
    if not found.images and not problems:
        raise UsageError(f"no Dockerfile found under {config.tree.root}",
                         hint="point --root (or [tree] root) at the folder holding "
                         "app/version/Dockerfile")
    return int(ExitCode.FAILED if problems else ExitCode.OK)


def tree_document(found: DockerfileTree, graph: BuildGraph,
                  problems: list[str]) -> dict[str, Any]:
    levels = graph.levels()
    level_of = {image: n for n, images in enumerate(levels) for image in images}
    images = []
    for reference, item in sorted(found.images.items(), key=lambda kv: kv[0].short):
        images.append({
            "image": reference.short,
            "folder": _relative(item.folder, found.root),
            "dockerfile": _relative(item.dockerfile, found.root),
            "parents": [p.short for p in graph.parents(reference)],
            "external_parents": [str(p) for p in item.parents
                                 if found.resolve_parent(p) is None],
            "children": [c.short for c in graph.children(reference)],
            "level": level_of.get(reference),
            "layout": item.source,
        })
    return {
        "root": str(found.root),
        "images": images,
        "build_order": [[image.short for image in level] for level in levels],
        "problems": problems,
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
    for column in ("image", "folder", "built FROM", "level"):
        table.add_column(column)
    for item in document["images"]:
        built_from = item["parents"] + [f"{e} (external)" for e in item["external_parents"]]
        table.add_row(item["image"], item["folder"], ", ".join(built_from) or "-",
                      "-" if item["level"] is None else str(item["level"]))
    console.print(table)
    console.print("Build order (parents first; images on one line can build at once):")
    for number, images in enumerate(document["build_order"]):
        console.print(f"  {number}: " + "  ".join(images), markup=False)
