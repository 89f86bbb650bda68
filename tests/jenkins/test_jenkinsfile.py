"""The nightly Jenkinsfile: Groovy syntax, and what it does for each exit code of careen,
run through stubs of the Jenkins steps (tests/jenkins/pipeline_stub.groovy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jenkins.groovy import GroovyAnswers, result, run_groovy, steps

JENKINSFILE = Path(__file__).parents[2] / "ci" / "jenkins" / "Jenkinsfile"
CAREEN_RUN = "sh script=careen run --reports-dir reports,returnStatus=true"


@pytest.fixture(scope="module")
def groovy(tmp_path_factory: pytest.TempPathFactory) -> tuple[GroovyAnswers, Path]:
    """The syntax check of the Jenkinsfile and of a broken copy, and its runs for each exit
    status of careen: one Groovy start for the module (a start costs seconds of CPU). The
    broken copy's path comes along."""
    broken = tmp_path_factory.mktemp("broken") / "Jenkinsfile"
    broken.write_text(JENKINSFILE.read_text().replace("steps {", "steps {{", 1))
    return run_groovy(parse=[JENKINSFILE, broken], run={JENKINSFILE: [0, 1, 2, 3, 4]}), broken


def test_syntax_and_the_check_catches_a_broken_file(
    groovy: tuple[GroovyAnswers, Path],
) -> None:
    answers, broken = groovy
    assert answers.syntax == {str(JENKINSFILE): True, str(broken): False}


@pytest.fixture(scope="module")
def runs(groovy: tuple[GroovyAnswers, Path]) -> dict[int, list[str]]:
    return groovy[0].runs_of(JENKINSFILE)


@pytest.fixture(scope="module")
def success(runs: dict[int, list[str]]) -> list[str]:
    assert result(runs[0]) == "SUCCESS"
    return steps(runs[0])


def test_nightly_after_harbors_scan_all(success: list[str]) -> None:
    assert "cron H 2 * * *" in success


def test_checkout_then_careen_run_inside_the_credentials(success: list[str]) -> None:
    assert success.index("checkout scm") < success.index(CAREEN_RUN)
    bindings = [line for line in success if line.startswith("usernamePassword ")]
    assert bindings == [
        "usernamePassword credentialsId=careen-harbor,usernameVariable=CAREEN_HARBOR_USER,"
        "passwordVariable=CAREEN_HARBOR_PASSWORD",
        "usernamePassword credentialsId=careen-registry,usernameVariable="
        "CAREEN_REGISTRY_USER,passwordVariable=CAREEN_REGISTRY_PASSWORD",
    ]
    assert success.index("withCredentials [step=usernamePassword;step=usernamePassword]") < (
        success.index(CAREEN_RUN))


def test_archives_and_publishes_junit(success: list[str]) -> None:
    assert ("archiveArtifacts artifacts=vulnerable.list, reports/**,allowEmptyArchive=true"
            in success)
    assert "junit testResults=reports/*.xml,allowEmptyResults=true" in success


def test_passwords_never_interpolated_by_groovy() -> None:
    text = JENKINSFILE.read_text()
    assert "${CAREEN_HARBOR_PASSWORD" not in text and "${env.CAREEN_" not in text


@pytest.mark.parametrize(("status", "expected"), [
    (0, "SUCCESS"), (1, "UNSTABLE"), (2, "FAILURE"), (3, "FAILURE"), (4, "FAILURE"),
])
def test_exit_codes(runs: dict[int, list[str]], status: int, expected: str) -> None:
    assert result(runs[status]) == expected
    assert ("unstable" in " ".join(steps(runs[status]))) == (expected == "UNSTABLE")


STATE = "careen-state/state.sqlite"


def test_the_state_goes_with_the_build_on_agents_that_do_not_survive_the_night(
    runs: dict[int, list[str]],
) -> None:
    """Issue 19: the state (the verdicts that hold images) is copied from the previous
    build's artifacts before ``careen run`` and archived after it, whatever the result."""
    text = JENKINSFILE.read_text()
    assert f"CAREEN_STATE_PATH = '{STATE}'" in text  # in the workspace, not JENKINS_HOME
    restore = ("copyArtifacts projectName=careen-nightly,selector=step=lastWithArtifacts,"
               f"filter={STATE},optional=true,fingerprintArtifacts=false")
    keep = f"archiveArtifacts artifacts={STATE},allowEmptyArchive=true"
    # (the stub ends a run at `error`, so post steps are seen for 0 and 1: SUCCESS and
    # UNSTABLE, which is also the result of a night that held images)
    for status in (0, 1):
        done = steps(runs[status])
        assert done.index("checkout scm") < done.index(restore) < done.index(CAREEN_RUN)
        assert done.index(CAREEN_RUN) < done.index(keep)
