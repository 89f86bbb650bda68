"""Run Groovy (Debian's ``groovy`` package) on a Jenkinsfile through ``pipeline_stub.groovy``.

Without ``groovy`` the tests install it (``apt-get install groovy``, as the lab's packages are);
where that cannot be done they skip with the reason, except in CI (``CI=true``), where they
fail."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import require_program

STUB = Path(__file__).with_name("pipeline_stub.groovy")


def groovy_environment() -> dict[str, str]:
    """Debian's groovy script wants JAVA_HOME (or /usr/lib/jvm/default-java); on a machine
    whose java is another JDK it is found from the ``java`` on PATH."""
    environment = dict(os.environ)
    home = environment.get("JAVA_HOME")
    if not (home and Path(home, "bin", "java").exists()) and \
            not Path("/usr/lib/jvm/default-java/bin/java").exists():
        java = shutil.which("java")
        if java is not None:
            environment["JAVA_HOME"] = str(Path(java).resolve().parent.parent)
    # A short-lived JVM: the quick compiler only and the simple collector start Groovy about
    # 0.8 s sooner; what the script does is the same.
    quick_start = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    environment["JAVA_OPTS"] = f"{environment.get('JAVA_OPTS', '')} {quick_start}".strip()
    return environment


def require_groovy() -> str:
    return require_program("groovy", "groovy")


def check_syntax(*jenkinsfiles: Path) -> dict[str, bool]:
    """Path -> whether Groovy parses it (one Groovy start for all)."""
    done = _groovy("parse", *map(str, jenkinsfiles))
    verdicts = {}
    for line in done.stdout.splitlines():
        if line.startswith(("SYNTAX OK ", "SYNTAX ERROR ")):
            ok, path = line.startswith("SYNTAX OK "), line.split(" ", 2)[2]
            verdicts[path] = ok
    assert set(verdicts) == set(map(str, jenkinsfiles)), done.stderr
    return verdicts


def run_pipeline(jenkinsfile: Path, statuses: Sequence[int]) -> dict[int, list[str]]:
    """Exit status of ``sh`` -> the lines the stubbed run printed (``STEP ...``, ``ERROR
    ...``, ``RESULT ...``), one Groovy start for all statuses."""
    done = _groovy("run", str(jenkinsfile), ",".join(map(str, statuses)))
    assert done.returncode == 0, done.stderr
    runs: dict[int, list[str]] = {}
    current: list[str] = []
    for line in done.stdout.splitlines():
        if line.startswith("RUN "):
            current = runs.setdefault(int(line.removeprefix("RUN ")), [])
        else:
            current.append(line)
    assert sorted(runs) == sorted(statuses), done.stdout
    return runs


def _groovy(*arguments: str) -> subprocess.CompletedProcess[str]:
    groovy = require_groovy()
    return subprocess.run([groovy, str(STUB), *arguments], capture_output=True, text=True,
                          env=groovy_environment(), timeout=300, check=False)


def steps(lines: Sequence[str]) -> list[str]:
    return [line.removeprefix("STEP ") for line in lines if line.startswith("STEP ")]


def result(lines: Sequence[str]) -> str:
    found = [line for line in lines if line.startswith("RESULT ")]
    assert len(found) == 1, lines
    return found[0].removeprefix("RESULT ")
