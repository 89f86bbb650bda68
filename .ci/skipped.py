"""Fail when a test of a JUnit XML report was skipped without being allowed to.

Usage: ``python3 .ci/skipped.py REPORT.xml`` with the allow-list on stdin, one entry a line:
a regular expression matched against the test's id (``path::name``), a tab, the reason.
Also fails a report that holds no test at all.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET


def test_id(case: ET.Element) -> str:
    classname = case.get("classname", "")
    module, _, klass = classname.partition(".Test")
    path = module.replace(".", "/") + ".py"
    name = case.get("name", "")
    return f"{path}::{'Test' + klass + '::' if klass else ''}{name}"


def main(report: str) -> int:
    allowed: list[tuple[re.Pattern[str], str]] = []
    for line in sys.stdin.read().splitlines():
        if line.strip():
            pattern, _, reason = line.partition("\t")
            if not reason.strip():
                print(f".ci/run: skip_allowed entry {pattern!r} gives no reason", file=sys.stderr)
                return 1
            allowed.append((re.compile(pattern), reason.strip()))
    cases = list(ET.parse(report).getroot().iter("testcase"))  # noqa: S314
    if not cases:
        print(f"{report}: no test ran", file=sys.stderr)
        return 1
    refused = []
    for case in cases:
        skipped = case.find("skipped")
        if skipped is None:
            continue
        ident = test_id(case)
        reasons = [reason for pattern, reason in allowed if pattern.search(ident)]
        if reasons:
            print(f"skipped (allowed: {reasons[0]}): {ident}")
        else:
            refused.append(f"{ident}: {skipped.get('message', '')}")
    if refused:
        print(f"{len(refused)} test(s) skipped outside .ci/run's allow-list:", file=sys.stderr)
        for line in refused:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{len(cases)} tests, none skipped outside the allow-list")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
