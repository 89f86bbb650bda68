from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from careen.errors import InputFileError
from careen.reports import ReportContext, read_result
from careen.reports.json_report import JsonReport, render_json
from careen.results import RESULT_SCHEMA_VERSION, RunResult
from tests.reports.sample import sample_result

SCHEMA_PATH = Path(__file__).parents[2] / "docs" / "schemas" / "run-result.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def test_real_output_validates_against_the_schema(validator: jsonschema.Validator) -> None:
    text = JsonReport().render(sample_result(), ReportContext())
    document = json.loads(text)
    validator.validate(document)
    assert document["schema_version"] == RESULT_SCHEMA_VERSION
    assert document["counts"]["failed"] == 1


def test_an_empty_run_validates(validator: jsonschema.Validator) -> None:
    result = sample_result()
    empty = RunResult(result.run_id, result.started_at, result.finished_at, result.policy, ())
    validator.validate(empty.to_dict())


def test_the_schema_rejects_what_the_code_never_writes(validator: jsonschema.Validator) -> None:
    document = sample_result().to_dict()
    document["images"][0]["outcome"] = "exploded"
    assert not validator.is_valid(document)
    document = sample_result().to_dict()
    document["surprise"] = 1
    assert not validator.is_valid(document)


def test_the_schema_lists_every_field_the_code_writes() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    document = sample_result().to_dict()
    assert set(schema["required"]) == set(document)
    assert set(schema["$defs"]["image_result"]["required"]) == set(document["images"][0])


def test_reading_back_gives_the_same_result() -> None:
    result = sample_result()
    assert read_result(render_json(result)) == result


@pytest.mark.parametrize(("text", "expected"), [
    ("not json", "not JSON"),
    ("[]", "expected a JSON object"),
    ('{"schema_version": 99}', "schema version 99"),
    ('{"schema_version": 1, "run_id": "r"}', "missing field"),
])
def test_bad_input_is_named(text: str, expected: str) -> None:
    with pytest.raises(InputFileError, match=expected) as caught:
        read_result(text, source="shard-2.json")
    assert "shard-2.json" in str(caught.value)


def test_a_bad_image_reference_is_an_input_error() -> None:
    document = sample_result().to_dict()
    document["images"][0]["image"] = "Not A Reference"
    with pytest.raises(InputFileError, match="invalid image reference"):
        read_result(json.dumps(document))


def test_cve_lists_in_schema_version_2(validator: jsonschema.Validator) -> None:
    """Version 2 carries each image's CVEs: before, after, and fixed/remaining/new."""
    document = json.loads(render_json(sample_result()))
    validator.validate(document)
    jre = next(i for i in document["images"] if i["image"] == "library/jre:8u191")
    changes = jre["cve_changes"]
    assert [f["id"] for f in changes["fixed"]] == ["CVE-2017-15650"]
    assert [(f["id"], f["package"], f["version"], f["fix_version"])
            for f in changes["remaining"]] == [
        ("CVE-2016-9843", "zlib", "1.2.8-r2", None),
        ("CVE-2017-3735", "openssl", "1.0.2k-r0", "1.0.2m-r0")]
    assert len(changes["new"]) == 1 and changes["new"][0]["severity"] == "medium"
    assert changes["remaining"][0]["cvss"] == 9.8
    grafana = next(i for i in document["images"] if i["image"] == "apps/grafana:4.1.2")
    assert grafana["cves_after"] is None and grafana["cve_changes"] is None
    assert [f["id"] for f in grafana["cves_before"]] == ["CVE-2017-3735"]
    assert document["attention"][0]["kind"] == "unreadable_line"
    assert document["fleet"]["breaking"] == 6
    bad = json.loads(render_json(sample_result()))
    bad["images"][0]["cves_before"][0]["severity"] = "apocalyptic"
    assert not validator.is_valid(bad)


def test_a_version_1_document_still_reads() -> None:
    """Results stored by the Careen before issue 14 (schema 1) read with empty CVE lists."""
    document = sample_result().to_dict()
    document["schema_version"] = 1
    for key in ("attention", "fleet", "details_note"):
        del document[key]
    for image in document["images"]:
        for key in ("cves_before", "cves_after", "cve_changes"):
            del image[key]
    result = read_result(json.dumps(document))
    assert all(i.cves_before is None and i.cves_after is None for i in result.images)
    assert result.attention == ()
