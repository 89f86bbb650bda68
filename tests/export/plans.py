"""A Dockerfile tree on disk and its plan: base -> jre -> tomcat, plus two independent
images; parents written the ways Dockerfiles write them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from careen.plan import Plan, PlanStep, StepReason
from careen.reference import ImageReference

DOCKERFILES = {
    "base/1.0": "FROM docker.io/library/debian:stretch\nRUN apt-get update\n",
    # The Harbor host as written in FROM.
    "jre/8u191": "FROM registry.abc.com/library/base:1.0\nRUN echo jre\n",
    # Built from an ARG default: the FROM text is known only after substitution.
    "tomcat/8.5": "ARG JRE=jre:8u191\nFROM library/${JRE} AS run\nCOPY --from=base:1.0 /x /x\n",
    "httpd/2.4": "FROM alpine:3.7\n",
    "nginx/latest": "FROM alpine\n",
}


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


def write_tree(root: Path) -> None:
    for folder, text in DOCKERFILES.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "Dockerfile").write_text(text)


def sample_plan(root: Path, plan_id: str | None = "plan-20171208-020001-beef") -> Plan:
    base, jre, tomcat = ref("library/base:1.0"), ref("library/jre:8u191"), ref(
        "library/tomcat:8.5")

    def step(image: ImageReference, level: int, parents: tuple[ImageReference, ...],
             folder: str) -> PlanStep:
        return PlanStep(image, level, StepReason.CASCADE if parents else StepReason.SELECTED,
                        "", parents, folder, f"{folder}/Dockerfile")

    return Plan(
        steps=(step(base, 0, (), "base/1.0"), step(ref("library/httpd:2.4"), 0, (), "httpd/2.4"),
               step(ref("library/nginx:latest"), 0, (), "nginx/latest"),
               step(jre, 1, (base,), "jre/8u191"), step(tomcat, 2, (jre, base), "tomcat/8.5")),
        skipped=(), tree_root=str(root), created_at=datetime(2017, 12, 8, tzinfo=UTC),
        id=plan_id,
    )
