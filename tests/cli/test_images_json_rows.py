"""``careen images --format json`` writes each row from the artifact directly
(:func:`json_rows`, :meth:`Artifact.image_names`): the lines must be exactly
``json.dumps(image_row(image))`` for each of the artifact's images, whatever the artifact."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from careen.cli.commands.harbor_cmd import image_row, json_rows
from careen.inventory import Artifact, Platform
from careen.scan import ScanStatus, ScanSummary, SeverityCounts

DIGEST = "sha256:" + "a" * 64
CHILD = "sha256:" + "b" * 64
SCANNED = ScanSummary(status=ScanStatus.SUCCESS, counts=SeverityCounts(critical=1, low=4),
                      fixable_total=2, scanner="Trivy v0.50.1",
                      scanned_at=datetime(2024, 1, 1, 0, 16, 57, tzinfo=UTC))

ARTIFACTS = {
    "tagged, scanned": Artifact("library/nginx", DIGEST, ("1.25", "latest"), SCANNED),
    "untagged": Artifact("library/nginx", DIGEST, (), SCANNED),
    "immutable tag": Artifact("team.a/app", DIGEST, ("1", "2"), SCANNED,
                              immutable_tags=("2",)),
    "not scanned": Artifact("p/a", DIGEST, ("x",), ScanSummary.not_scanned()),
    "running": Artifact("p/a", DIGEST, ("x",), ScanSummary(status=ScanStatus.RUNNING)),
    "unreadable counts": Artifact("p/a", DIGEST, ("x",),
                                  ScanSummary.unreadable("severity count 'High' is \"7\"")),
    "index": Artifact("p/multi", DIGEST, ("v1",), SCANNED, is_index=True,
                      platforms=(Platform("linux", "arm64", "v8"),), children=(CHILD,)),
    "scanner with non-ASCII text": Artifact(
        "p/a", DIGEST, ("x",), ScanSummary(status=ScanStatus.SUCCESS,
                                           counts=SeverityCounts(), scanner='Trïvy "1"\n')),
}


@pytest.mark.parametrize("artifact", ARTIFACTS.values(), ids=ARTIFACTS.keys())
def test_json_rows_are_image_row_as_json(artifact: Artifact) -> None:
    expected = [(image.reference.short, json.dumps(image_row(image)))
                for image in artifact.images()]
    assert list(json_rows(artifact)) == expected


@pytest.mark.parametrize("artifact", ARTIFACTS.values(), ids=ARTIFACTS.keys())
def test_image_names_are_the_images_short_references(artifact: Artifact) -> None:
    assert list(artifact.image_names()) == [(image.reference.short, image.immutable)
                                            for image in artifact.images()]
