from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from careen.reports import ReportContext
from careen.reports.junit import JunitReport, render_junit
from careen.results import FAILING_OUTCOMES, RunResult
from tests.reports.sample import PLANTED, sample_result

if TYPE_CHECKING:
    import xmlschema

XSD = Path(__file__).with_name("jenkins-junit.xsd")


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    # Imported here, not at the top: xmlschema (with elementpath) is about 0.2 s of imports,
    # which every pytest worker paid at collection, though only one runs these tests.
    import xmlschema

    return xmlschema.XMLSchema(XSD)


@pytest.fixture(scope="module")
def report() -> str:
    return JunitReport().render(sample_result(), ReportContext())


def cases(text: str) -> dict[str, ET.Element]:
    root = ET.fromstring(text)  # noqa: S314 - our own output
    return {f"{case.get('classname')}/{case.get('name')}": case for case in root.iter("testcase")}


def test_validates_against_the_jenkins_junit_schema(schema: xmlschema.XMLSchema,
                                                    report: str) -> None:
    schema.validate(report)


def test_the_schema_is_strict(schema: xmlschema.XMLSchema, report: str) -> None:
    broken = report.replace('classname="library"', "", 1)
    assert not schema.is_valid(broken)
    assert not schema.is_valid(report.replace("<skipped ", "<ignored ", 1)
                               .replace("</skipped>", "</ignored>"))


def test_one_testcase_per_image_named_project_and_repo_tag(report: str) -> None:
    found = cases(report)
    assert set(found) == {"library/base:1.0", "library/jre:8u191", "library/tomcat:8.5",
                          "library/httpd:2.4", "library/nginx:1.13", "apps/grafana:4.1.2"}
    assert found["library/base:1.0"].get("time") == "12.500"


def test_totals_on_the_suite(report: str) -> None:
    suite = ET.fromstring(report).find("testsuite")  # noqa: S314 - our own output
    assert suite is not None
    result = sample_result()
    failing = sum(1 for image in result.images if image.outcome in FAILING_OUTCOMES)
    assert suite.get("tests") == "6"
    assert suite.get("failures") == str(failing) == "4"
    assert suite.get("skipped") == "1"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["plan_id"] == "plan-20171208-020001-beef"


def test_failing_outcomes_fail_with_counts_and_reason(report: str) -> None:
    found = cases(report)
    jre = found["library/jre:8u191"].find("failure")
    assert jre is not None
    assert jre.get("type") == "not_helped"
    message = jre.get("message") or ""
    assert "before: critical 1, high 6, medium 3, low 0" in message
    assert "after: critical 1, high 6, medium 3, low 0" in message
    assert "child of library/base:1.0" in message
    assert f"rebuild did not help: CVE-2017-1 {PLANTED}" in message  # text, parsed back
    tomcat = found["library/tomcat:8.5"].find("failure")
    assert tomcat is not None and tomcat.get("type") == "failed"
    assert "build log: /logs/tomcat.log" in (tomcat.text or "")
    for passing in ("library/base:1.0",):
        assert found[passing].find("failure") is None
        assert found[passing].find("skipped") is None


def test_skipped_images_carry_the_reason(report: str) -> None:
    skipped = cases(report)["apps/grafana:4.1.2"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == f"no Dockerfile folder for it under /tree {PLANTED}"


def test_a_failure_names_the_remaining_cves(report: str) -> None:
    """jre did not help: its failure message names what it still carries, worst first
    (critical zlib with no fix, then the high openssl held at its old version), and the
    failure's text lists every remaining CVE with its severity."""
    failure = cases(report)["library/jre:8u191"].find("failure")
    assert failure is not None
    message = failure.get("message") or ""
    assert ("remaining CVEs: CVE-2016-9843 zlib 1.2.8-r2 (no fix), CVE-2017-3735 openssl "
            "1.0.2k-r0 -> 1.0.2m-r0") in message
    text = failure.text or ""
    assert "remaining CVEs (3):" in text and "[critical]" in text
    # The planted CVE comes out as text, control characters stripped.
    assert 'CVE-2017-<script>"q"</script>' in text and "\x07" not in text


def test_log_tail_in_system_out_without_terminal_escapes(report: str) -> None:
    found = cases(report)
    out = found["library/jre:8u191"].findtext("system-out")
    assert out == f"RUN apk upgrade\nwarning: {PLANTED}"
    tomcat_out = found["library/tomcat:8.5"].findtext("system-out")
    assert tomcat_out == f"ERROR: failed to solve: bad byte\n]]> {PLANTED}"


def test_log_tail_is_cut_to_the_asked_lines() -> None:
    text = render_junit(sample_result(), log_tail_lines=1)
    assert cases(text)["library/jre:8u191"].findtext("system-out") == f"warning: {PLANTED}"
    assert cases(render_junit(sample_result(), log_tail_lines=0))[
        "library/jre:8u191"].find("system-out") is None


def test_an_empty_run_is_a_valid_empty_suite(schema: xmlschema.XMLSchema) -> None:
    result = sample_result()
    empty = RunResult(result.run_id, result.started_at, result.finished_at, result.policy, ())
    text = render_junit(empty)
    schema.validate(text)
    assert cases(text) == {}
