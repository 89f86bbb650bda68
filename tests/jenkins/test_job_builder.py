"""The seed's freestyle job as Jenkins Job Builder YAML, turned into Jenkins' job XML offline
by ``jenkins-jobs test`` (jenkins-job-builder, in the test extra)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

JOB_YAML = Path(__file__).parents[2] / "ci" / "jenkins" / "careen-nightly.yaml"
BINDINGS = "buildWrappers/org.jenkinsci.plugins.credentialsbinding.impl.SecretBuildWrapper"


def jenkins_jobs() -> str:
    beside = Path(sys.executable).with_name("jenkins-jobs")
    found = str(beside) if beside.exists() else shutil.which("jenkins-jobs")
    assert found, "jenkins-jobs is missing: pip install -e '.[test]'"
    return found


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> ET.Element:
    out = tmp_path_factory.mktemp("jjb")
    done = subprocess.run([jenkins_jobs(), "--conf", "/dev/null", "test", str(JOB_YAML),
                           "-o", str(out)], capture_output=True, text=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["careen-nightly"]
    return ET.parse(out / "careen-nightly").getroot()  # noqa: S314 - our own output


def test_scm_checks_out_the_dockerfile_tree(job: ET.Element) -> None:
    scm = job.find("scm")
    assert scm is not None and scm.get("class") == "hudson.plugins.git.GitSCM"
    assert job.findtext("scm/userRemoteConfigs/hudson.plugins.git.UserRemoteConfig/url") == (
        "https://git.example.com/ops/dockerfiles.git")
    assert job.findtext("scm/branches/hudson.plugins.git.BranchSpec/name") == "*/master"


def test_nightly_timer_after_the_scan_all(job: ET.Element) -> None:
    assert job.findtext("triggers/hudson.triggers.TimerTrigger/spec") == "H 2 * * *"


def test_credentials_bound_to_the_seed_and_careen_variables(job: ET.Element) -> None:
    bindings = {
        binding.findtext("credentialsId"): (binding.findtext("usernameVariable"),
                                            binding.findtext("passwordVariable"))
        for binding in job.findall(f"{BINDINGS}/bindings/*")
    }
    assert bindings == {
        "careen-registry": ("registry_user", "registry_password"),
        "careen-harbor": ("CAREEN_HARBOR_USER", "CAREEN_HARBOR_PASSWORD"),
    }


def test_shell_step_runs_the_seed_scripts(job: ET.Element) -> None:
    shell = job.find("builders/hudson.tasks.Shell")
    assert shell is not None
    command = shell.findtext("command") or ""
    lines = [line.strip() for line in command.splitlines()]
    assert "export registry_server='registry.abc.com'" in lines
    assert "list-vulnerable-images --exit-zero -o vulnerable.list || exit $?" in lines
    assert lines[-1] == "update-images --reports-dir reports"
    assert "password" not in " ".join(line for line in lines if not line.startswith("#")
                                      ).replace("registry_password", "")
    assert shell.findtext("unstableReturn") == "1"


def test_publishes_junit_and_archives_the_list(job: ET.Element) -> None:
    assert job.findtext("publishers/hudson.tasks.junit.JUnitResultArchiver/testResults") == (
        "reports/*.xml")
    assert job.findtext("publishers/hudson.tasks.ArtifactArchiver/artifacts") == (
        "vulnerable.list, reports/**")
