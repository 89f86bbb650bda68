"""The build order of a tree's images: a parent is built before its children.

Edges go from a child to each parent the tree also builds (``FROM``, ``COPY --from``,
``RUN --mount=from=``; see :meth:`careen.tree.discover.DockerfileTree.resolve_parent`).

Cycles — ``a FROM b`` and ``b FROM a``, or a Dockerfile in ``app/1.0`` saying
``FROM library/app:1.0`` (a cycle of length 1) — cannot be built in any order. They do not
make the whole graph fail: :meth:`BuildGraph.cycles` lists them, :meth:`BuildGraph.blocked`
holds the images in a cycle and every image built on one of them, :meth:`BuildGraph.levels`
leaves those out and :attr:`BuildGraph.problems` says why, so that the rest of the fleet is
still patched. A caller that wants all or nothing calls :meth:`BuildGraph.check_acyclic`,
which raises :class:`CycleError`.

Everything is linear in images plus edges (Kahn's algorithm level by level; then, only over
the images it could not reach, Tarjan's strongly connected components to name the cycles),
iterative (no recursion limit on deep chains).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from functools import cached_property

from careen.attention import AttentionItem, AttentionKind
from careen.errors import UsageError
from careen.reference import ImageReference
from careen.tree.discover import DockerfileTree, image_key


class CycleError(UsageError):
    """Images build on each other in a cycle. ``cycle`` is in order: each image is built
    ``FROM`` the next one, and the last one ``FROM`` the first."""

    def __init__(self, cycle: tuple[ImageReference, ...]) -> None:
        path = " -> ".join(image.short for image in (*cycle, cycle[0]))
        what = "builds FROM itself" if len(cycle) == 1 else "build FROM each other in a cycle"
        super().__init__(
            f"{'image' if len(cycle) == 1 else 'images'} {what}: {path}",
            hint="fix the FROM lines of these Dockerfiles (a child must name its parent, "
            "not itself or one of its own children)",
        )
        self.cycle = cycle


def _order(image: ImageReference) -> tuple[str, str, str, str]:
    return image.repository, image.tag or "", image.registry or "", image.digest or ""


class BuildGraph:
    """Images and the tree parents each one is built on.

    Nodes are the keys of :attr:`DockerfileTree.images` (registry-less, tagged); the query
    methods accept a reference with a registry host too (``registry.abc.com/library/jre``).
    """

    def __init__(self, parents_of: Mapping[ImageReference, Iterable[ImageReference]]) -> None:
        """``parents_of`` maps each image to its parents; parents that are not keys (external
        images) are ignored."""
        self._parents: dict[ImageReference, tuple[ImageReference, ...]] = {}
        self._children: dict[ImageReference, list[ImageReference]] = {
            image: [] for image in parents_of
        }
        children = self._children
        for image, parents in parents_of.items():
            kept = tuple(dict.fromkeys([p for p in parents if p in children]))
            self._parents[image] = kept
            for parent in kept:
                children[parent].append(image)

    @classmethod
    def from_tree(cls, tree: DockerfileTree) -> BuildGraph:
        return cls({image: tree.tree_parents(image) for image in tree.images})

    # -- queries -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._parents)

    def __contains__(self, image: object) -> bool:
        return isinstance(image, ImageReference) and self._node(image) is not None

    @property
    def images(self) -> list[ImageReference]:
        return sorted(self._parents, key=_order)

    def parents(self, image: ImageReference) -> tuple[ImageReference, ...]:
        """The tree parents of ``image``, in Dockerfile order (empty for an unknown image)."""
        node = self._node(image)
        return () if node is None else self._parents[node]

    def children(self, image: ImageReference) -> tuple[ImageReference, ...]:
        """The images built directly on ``image``, sorted."""
        node = self._node(image)
        return () if node is None else tuple(sorted(self._children[node], key=_order))

    def ancestors(self, image: ImageReference) -> frozenset[ImageReference]:
        """Every tree image ``image`` is built on, directly or not."""
        return self._reach([image], self._parents)

    def descendants(
        self, images: ImageReference | Iterable[ImageReference]
    ) -> frozenset[ImageReference]:
        """Every image built, directly or not, on one of ``images`` — what must be rebuilt
        after them. A given image is in the result only if it is built on another one."""
        start = [images] if isinstance(images, ImageReference) else list(images)
        return self._reach(start, self._children)

    # -- order ---------------------------------------------------------------------------------

    def cycles(self) -> tuple[tuple[ImageReference, ...], ...]:
        """One cycle per knot of images that build on each other (see :class:`CycleError` for
        the order), sorted by first image."""
        return self._cycles

    def blocked(self) -> frozenset[ImageReference]:
        """Images that cannot be built: in a cycle, or built on an image in a cycle."""
        return self._blocked

    @property
    def problems(self) -> tuple[str, ...]:
        """One line per cycle, naming it and how many images it keeps from being built."""
        lines = []
        for cycle, knot in zip(self._cycles, self._knots, strict=True):
            error = CycleError(cycle)
            others = len(knot) - len(cycle)
            below = len(self._reach(knot, self._children) - knot)
            extra = f" (and {others} more images tangled with them)" if others else ""
            lines.append(
                f"{error.message}{extra}; left out of the build order with "
                f"{below} image{'' if below == 1 else 's'} built on them"
            )
        return tuple(lines)

    def check_acyclic(self) -> None:
        """Raise :class:`CycleError` for the first cycle, if any."""
        if self._cycles:
            raise CycleError(self._cycles[0])

    def levels(self) -> list[list[ImageReference]]:
        """The images by build level: level 0 has no tree parents, every parent is in an
        earlier level than its children; sorted within a level. Blocked images are left
        out (see :meth:`blocked`)."""
        return [list(level) for level in self._levels]

    def build_order(self, images: Iterable[ImageReference]) -> list[list[ImageReference]]:
        """:meth:`levels` restricted to ``images`` (empty levels dropped): the order to
        rebuild a selection, e.g. vulnerable images plus their :meth:`descendants`. Images
        unknown to the graph or :meth:`blocked` are not in the result."""
        wanted = {node for node in (self._node(image) for image in images) if node is not None}
        order = [[image for image in level if image in wanted] for level in self._levels]
        return [level for level in order if level]

    # -- internals -----------------------------------------------------------------------------

    def _node(self, image: ImageReference) -> ImageReference | None:
        if image in self._parents:
            return image
        key = image_key(image)
        return key if key is not None and key in self._parents else None

    def _reach(
        self, start: Iterable[ImageReference],
        edges: Mapping[ImageReference, Iterable[ImageReference]],
    ) -> frozenset[ImageReference]:
        seen: set[ImageReference] = set()
        queue = deque(node for node in (self._node(i) for i in start) if node is not None)
        while queue:
            for following in edges[queue.popleft()]:
                if following not in seen:
                    seen.add(following)
                    queue.append(following)
        return frozenset(seen)

    @cached_property
    def _knots(self) -> tuple[frozenset[ImageReference], ...]:
        """Strongly connected components that hold a cycle, sorted by their first image."""
        # A knot's images are all blocked, so only the blocked ones are searched: none in the
        # usual tree without cycles.
        knots = [
            frozenset(component) for component in self._components(self._blocked)
            if len(component) > 1 or component[0] in self._parents[component[0]]
        ]
        return tuple(sorted(knots, key=lambda knot: _order(min(knot, key=_order))))

    @cached_property
    def _cycles(self) -> tuple[tuple[ImageReference, ...], ...]:
        return tuple(self._cycle_in(knot) for knot in self._knots)

    @cached_property
    def _blocked(self) -> frozenset[ImageReference]:
        # Kahn's algorithm reaches exactly the images with no cycle at or above them: what it
        # never reaches is in a cycle or built on one.
        reached = {image for level in self._levels for image in level}
        if len(reached) == len(self._parents):
            return frozenset()
        return frozenset(image for image in self._parents if image not in reached)

    @cached_property
    def _levels(self) -> tuple[tuple[ImageReference, ...], ...]:
        """Kahn's algorithm over every image: one still waiting for a parent at the end is
        blocked (see :attr:`_blocked`), so it is in no level."""
        children = self._children
        waiting = {image: len(parents) for image, parents in self._parents.items()}
        current = sorted([image for image, count in waiting.items() if count == 0], key=_order)
        levels: list[tuple[ImageReference, ...]] = []
        while current:
            levels.append(tuple(current))
            following: list[ImageReference] = []
            for image in current:
                for child in children[image]:
                    count = waiting[child] - 1
                    waiting[child] = count
                    if count == 0:
                        following.append(child)
            current = sorted(following, key=_order)
        return tuple(levels)

    def _cycle_in(self, knot: frozenset[ImageReference]) -> tuple[ImageReference, ...]:
        """A shortest cycle through the knot's first image, following child -> parent."""
        start = min(knot, key=_order)
        came_from: dict[ImageReference, ImageReference] = {}
        queue = deque([start])
        while queue:
            image = queue.popleft()
            for parent in sorted(self._parents[image], key=_order):
                if parent == start:
                    path = [image]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return tuple(reversed(path))
                if parent in knot and parent not in came_from:
                    came_from[parent] = image
                    queue.append(parent)
        return (start,)  # not reached: every image of a knot lies on a cycle

    def _components(self, images: frozenset[ImageReference]) -> list[list[ImageReference]]:
        """Tarjan's strongly connected components of ``images`` (following only edges between
        them), without recursion."""
        index: dict[ImageReference, int] = {}
        low: dict[ImageReference, int] = {}
        on_stack: set[ImageReference] = set()
        stack: list[ImageReference] = []
        components: list[list[ImageReference]] = []
        counter = 0
        for root in images:
            if root in index:
                continue
            work: list[tuple[ImageReference, int]] = [(root, 0)]
            while work:
                node, position = work.pop()
                if position == 0:
                    index[node] = low[node] = counter
                    counter += 1
                    stack.append(node)
                    on_stack.add(node)
                parents = self._parents[node]
                if position < len(parents):
                    work.append((node, position + 1))
                    following = parents[position]
                    if following not in images:
                        continue
                    if following not in index:
                        work.append((following, 0))
                    elif following in on_stack:
                        low[node] = min(low[node], index[following])
                    continue
                if low[node] == index[node]:
                    component: list[ImageReference] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
                if work:
                    caller = work[-1][0]
                    low[caller] = min(low[caller], low[node])
        return components


def tree_attention(tree: DockerfileTree, graph: BuildGraph | None = None
                   ) -> tuple[AttentionItem, ...]:
    """What in the tree needs a person: every unmapped Dockerfile, every warning (a missing
    parent, an unreadable Dockerfile...) and every FROM cycle. Any item means exit 1."""
    graph = graph if graph is not None else BuildGraph.from_tree(tree)
    items = [
        AttentionItem(problem.kind, problem.path.as_posix() or ".", problem.message,
                      next_step=problem.advice, path=str(tree.root / problem.path))
        for problem in tree.problems
    ]
    for cycle, line in zip(graph.cycles(), graph.problems, strict=True):
        items.append(AttentionItem(AttentionKind.CYCLE, cycle[0].short, line))
    return tuple(items)
