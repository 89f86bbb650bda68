"""A plan as a Jenkinsfile stage: one sequential stage per level, each level's images as
``parallel`` branches, each branch ``careen update --plan careen-plan.json --only IMAGE`` on
an agent.

Agents do not share Careen's state, so the plan travels as a file: the stage that plans runs
``careen plan -f json > careen-plan.json`` and ``stash name: 'careen-plan', includes:
'careen-plan.json'``; each branch checks the Dockerfile tree out, unstashes the plan and runs
its image of it (the plan keeps its id, so the branches' JSON results merge with ``careen
report --merge``).

Paste the text into the ``stages { }`` of a declarative Jenkinsfile (``careen export jenkins
--plan ID``). Levels run one after the other, so a child is built after its parents were
pushed; inside a level the images build at once on as many agents as the label offers.

A branch whose ``careen update`` exits 1 (the image still breaks the policy, or it failed)
marks the build UNSTABLE and lets the other branches go on; 2 and above (Careen could not run)
fails the branch. Everything written into the Groovy text is quoted twice: for the shell
(``shlex``) and as a single-quoted Groovy string (no ``$`` interpolation).
"""

from __future__ import annotations

import re
import shlex

from careen.errors import UsageError
from careen.plan import Plan

#: What ``careen update`` is called as on the agents.
DEFAULT_COMMAND = "careen"
#: The stash and file the plan travels in to the agents.
PLAN_STASH = "careen-plan"
PLAN_FILE = "careen-plan.json"
_PLAN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_INDENT = "    "


def groovy_string(text: str) -> str:
    """``text`` as a single-quoted Groovy string literal (no interpolation)."""
    if any(ord(c) < 0x20 and c not in "\t" for c in text):
        raise UsageError(f"{text!r} holds control characters; it cannot go into a Jenkinsfile")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def jenkins_stage(plan: Plan, *, plan_id: str, agent_label: str,
                  command: str = DEFAULT_COMMAND, stage_name: str = "Rebuild images") -> str:
    """The declarative ``stage`` for ``plan`` (stored as ``plan_id``); branches run on agents
    matching ``agent_label`` (a Jenkins label expression, ``docker && linux``)."""
    if not _PLAN_ID.match(plan_id):
        raise UsageError(f"plan id {plan_id!r} is not a Careen plan id",
                         hint="give the id 'careen plan' printed (careen history lists them)")
    if not agent_label.strip():
        raise UsageError("the agent label is empty",
                         hint="set the agent label (a Jenkins label expression) in the config")
    label = groovy_string(agent_label.strip())
    out = [f"stage({groovy_string(stage_name)}) {{"]
    levels = plan.levels
    if not levels:
        out += [f"{_INDENT}steps {{",
                f"{_INDENT * 2}echo {groovy_string(f'plan {plan_id}: nothing to rebuild')}",
                f"{_INDENT}}}", "}"]
        return "\n".join(out) + "\n"
    out.append(f"{_INDENT}stages {{")
    for level in levels:
        number = level[0].level
        out.append(f"{_INDENT * 2}stage({groovy_string(f'level {number}')}) {{")
        out.append(f"{_INDENT * 3}parallel {{")
        for step in level:
            image = step.image.short
            script = shlex.join([command, "update", "--plan", PLAN_FILE, "--only", image,
                                 "--reports-dir", f"reports/{_file_safe(image)}"])
            out += [
                f"{_INDENT * 4}stage({groovy_string(image)}) {{",
                f"{_INDENT * 5}agent {{ label {label} }}",
                f"{_INDENT * 5}steps {{",
                f"{_INDENT * 6}checkout scm",
                f"{_INDENT * 6}unstash {groovy_string(PLAN_STASH)}",
                f"{_INDENT * 6}script {{",
                f"{_INDENT * 7}def status = sh(script: {groovy_string(script)}, "
                "returnStatus: true)",
                f"{_INDENT * 7}if (status == 1) {{",
                f"{_INDENT * 8}unstable({groovy_string(f'{image}: still vulnerable or failed')})",
                f"{_INDENT * 7}}} else if (status != 0) {{",
                f"{_INDENT * 8}error({groovy_string(f'{image}: careen exited ')} + status)",
                f"{_INDENT * 7}}}",
                f"{_INDENT * 6}}}",
                f"{_INDENT * 6}stash(name: {groovy_string('result-' + _file_safe(image))}, "
                f"includes: {groovy_string('reports/' + _file_safe(image) + '/careen.json')}, "
                "allowEmpty: true)",
                f"{_INDENT * 5}}}",
                f"{_INDENT * 4}}}",
            ]
        out += [f"{_INDENT * 3}}}", f"{_INDENT * 2}}}"]
    out += [f"{_INDENT}}}", "}"]
    return "\n".join(out) + "\n"


def _file_safe(image: str) -> str:
    """An image name as one path segment / stash name (``library/jre:8`` -> ``library_jre_8``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", image)
