"""What a person must look at after a run: the "needs attention" list.

Exit 0 means every image that broke the policy passes it now, or was never Careen's to fix.
Anything else a person has to act on is an :class:`AttentionItem`: it makes the command exit 1
(Jenkins UNSTABLE), it is named on stderr with its next step, and every report lists it first.

Each producer (the list reader, the tree, the planner, the executor, the verifier) adds items
of its own kind; the reports and the CLI only read them. A kind is one file's concern, so a new
kind is one enum member and the :data:`NEXT_STEPS` line that tells a person what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "NEXT_STEPS",
    "AttentionItem",
    "AttentionKind",
    "attention_from_dicts",
    "attention_to_dicts",
]


class AttentionKind(StrEnum):
    #: A listed or selected image whose Dockerfile folder the tree does not have.
    NO_FOLDER = "no_folder"
    #: A line of vulnerable.list that could not be read (the image on it was not rebuilt).
    UNREADABLE_LINE = "unreadable_line"
    #: Rebuilt and rescanned, and the counts did not go down.
    NOT_HELPED = "not_helped"
    #: Rebuilt and rescanned with fewer findings, but still breaks the policy.
    IMPROVED = "improved"
    #: Pushed, but Harbor's rescan gave no result before the deadline.
    UNSCANNED_AT_DEADLINE = "unscanned_at_deadline"
    #: Harbor has no usable scan of an image (never scanned, failed, unreadable summary).
    UNSCANNED = "unscanned"
    #: A tree image built FROM its own children: no order can build it.
    CYCLE = "cycle"
    #: A Dockerfile under the tree's root that is no image (nested, too deep, bad name).
    UNMAPPED_DOCKERFILE = "unmapped_dockerfile"
    #: A FROM naming an image of this tree's registry that no folder builds.
    MISSING_PARENT = "missing_parent"
    #: A tag last built from another folder: Careen refuses to overwrite it.
    PROVENANCE_REFUSED = "provenance_refused"
    #: The build or the push failed.
    BUILD_FAILED = "build_failed"
    #: Skipped because a parent it is built on failed.
    PARENT_FAILED = "parent_failed"
    #: Not rebuilt: its last rebuild did not help and none of its inputs changed since.
    HELD = "held"


#: The next step a person takes for each kind, printed after the item's own reason.
NEXT_STEPS: Mapping[AttentionKind, str] = {
    AttentionKind.NO_FOLDER: "add its folder to the tree, map it in [tree.mapping], or ignore "
                             "it in [policy] ignore",
    AttentionKind.UNREADABLE_LINE: "fix the line in vulnerable.list (or the tool that writes it)",
    AttentionKind.NOT_HELPED: "bump the base image or the pinned package in its Dockerfile",
    AttentionKind.IMPROVED: "bump the base image or the pinned package for what remains",
    AttentionKind.UNSCANNED_AT_DEADLINE: "check the scan in Harbor, or run 'careen scan IMAGE "
                                         "--wait'",
    AttentionKind.UNSCANNED: "ask Harbor to scan it: 'careen scan IMAGE --wait'",
    AttentionKind.CYCLE: "break the FROM cycle in the Dockerfiles",
    AttentionKind.UNMAPPED_DOCKERFILE: "map the folder with a [[tree.rule]] or [tree.mapping], "
                                       "or point --root at the images' top folder",
    AttentionKind.MISSING_PARENT: "add the parent's folder to the tree, or qualify the FROM "
                                  "with the upstream registry",
    AttentionKind.PROVENANCE_REFUSED: "check which folder owns the tag and fix [tree.mapping]",
    AttentionKind.BUILD_FAILED: "read the build log",
    AttentionKind.PARENT_FAILED: "fix the parent's build first",
    AttentionKind.HELD: "bump the base image or the package, or rebuild it anyway with "
                        "--rebuild IMAGE",
}


@dataclass(frozen=True, slots=True)
class AttentionItem:
    """One thing a person must look at. ``subject`` is the image (``library/nginx:1.25``), or
    what stands in for one when there is none: a folder, a list line (``vulnerable.list:7``)."""

    kind: AttentionKind
    subject: str
    reason: str
    #: More than the kind's standard next step, when the producer knows it.
    next_step: str = ""
    #: A path a person opens (a build log, a Dockerfile), when there is one.
    path: str | None = None

    @property
    def advice(self) -> str:
        """What to do: the producer's own advice, else the kind's standard next step."""
        return self.next_step or NEXT_STEPS[self.kind]

    def line(self) -> str:
        """One line for stderr: ``needs attention: SUBJECT: REASON; next: ADVICE``."""
        return f"needs attention: {self.subject}: {self.reason}; next: {self.advice}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "subject": self.subject, "reason": self.reason,
                "next_step": self.advice, "path": self.path}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttentionItem:
        kind = AttentionKind(str(data["kind"]))
        advice = str(data.get("next_step") or "")
        path = data.get("path")
        return cls(kind=kind, subject=str(data["subject"]), reason=str(data["reason"]),
                   next_step="" if advice == NEXT_STEPS[kind] else advice,
                   path=str(path) if path is not None else None)


def attention_to_dicts(items: Iterable[AttentionItem]) -> list[dict[str, Any]]:
    return [item.to_dict() for item in items]


def attention_from_dicts(data: Iterable[Mapping[str, Any]]) -> tuple[AttentionItem, ...]:
    return tuple(AttentionItem.from_dict(entry) for entry in data)
