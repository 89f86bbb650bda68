"""Run Groovy (Debian's ``groovy`` package) on a Jenkinsfile through ``pipeline_stub.groovy``.

Without ``groovy`` the tests install it (``apt-get install groovy``, as the lab's packages are);
where that cannot be done they skip with the reason, except in CI (``CI=true``), where they
fail."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_program

STUB = Path(__file__).with_name("pipeline_stub.groovy")
STARTER_CONF = Path(__file__).with_name("groovy-starter.conf")


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
    environment["GROOVY_CONF"] = str(STARTER_CONF)  # Groovy alone, not all of its lib folder
    return environment


def require_groovy() -> str:
    return require_program("groovy", "groovy")


@dataclass(frozen=True)
class GroovyAnswers:
    """What one Groovy start gave back for each request."""

    #: Path -> whether Groovy parses it.
    syntax: dict[str, bool]
    #: Path -> exit status of ``sh`` -> the lines the stubbed run printed (``STEP ...``,
    #: ``ERROR ...``, ``RESULT ...``).
    runs: dict[str, dict[int, list[str]]]
    #: Path -> the exit statuses of ``sh`` its runs were asked for.
    asked: dict[str, list[int]]
    #: Groovy's messages (compilation errors, stack traces).
    stderr: str

    def runs_of(self, jenkinsfile: Path) -> dict[int, list[str]]:
        """The runs of ``jenkinsfile``: one for each status asked, none crashed (or the
        reason, with Groovy's messages)."""
        runs = self.runs.get(str(jenkinsfile), {})
        crashed = [line for lines in runs.values() for line in lines
                   if line.startswith("CRASH ")]
        assert sorted(runs) == sorted(self.asked[str(jenkinsfile)]) and not crashed, (
            f"{jenkinsfile}: ran {sorted(runs)} of {self.asked[str(jenkinsfile)]}, "
            f"crashed {crashed}\n{self.stderr}")
        return runs


def run_groovy(*, parse: Sequence[Path] = (),
               run: Mapping[Path, Sequence[int]] | None = None) -> GroovyAnswers:
    """Parse each of ``parse`` (syntax only) and run each Jenkinsfile of ``run`` once per
    exit status of ``sh``, all in one Groovy start (a JVM start costs most of a second of
    CPU; a run in a started one, hundredths). A request's failure is its own: see
    :meth:`GroovyAnswers.runs_of`."""
    asked = {str(path): list(statuses) for path, statuses in (run or {}).items()}
    arguments: list[str] = []
    for path in parse:
        arguments += ["parse", str(path)]
    for path, statuses in asked.items():
        arguments += ["run", path, ",".join(map(str, statuses))]
    done = _groovy(*arguments)
    assert done.returncode == 0, done.stderr
    answers = GroovyAnswers({}, {}, asked, done.stderr)
    current: list[str] = []
    for line in done.stdout.splitlines():
        if line.startswith(("SYNTAX OK ", "SYNTAX ERROR ")):
            answers.syntax[line.split(" ", 2)[2]] = line.startswith("SYNTAX OK ")
        elif line.startswith("RUN "):
            _, status, path = line.split(" ", 2)
            current = answers.runs.setdefault(path, {}).setdefault(int(status), [])
        else:
            current.append(line)
    assert set(answers.syntax) == set(map(str, parse)), done.stderr
    return answers


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
