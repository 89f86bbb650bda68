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
