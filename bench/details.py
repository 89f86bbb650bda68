"""Vulnerability details at a plan's scale (issue 14): reading them, and the reports made of them.

    python -m bench.details                  # 400 plan images x 40 findings, jobs 1 8 16
    python -m bench.details --images 50      # a quick look

- **Reading**: :func:`careen.details.read_details` over HTTP against the in-process Harbor
  simulator (``GET …/additions/vulnerabilities`` per image, NOTES §6.6) at each concurrency:
  wall time and images per second. What matters is that the night's extra step stays a small
  part of it (a rebuild takes seconds per image).
- **Reports**: a result of that many images, each with its lists before and after, rendered
  in each format: time and size (the HTML and JSON carry every CVE).

Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from bench.venv import parse_in_user_install
from careen.details import Finding, read_details
from careen.reference import ImageReference
from careen.registries.harbor_v2 import HarborV2Client
from careen.registries.http import HarborSettings
from careen.reports import REPORT_FORMATS, ReportContext
from careen.results import ImageResult, Outcome, RunResult
from careen.scan import Severity
from careen.sim.harbor import Fleet, SimOptions, SimulatorServer


def fleet(images: int, findings: int) -> Fleet:
    per = {"high": findings // 4, "medium": findings // 2,
           "low": findings - findings // 4 - findings // 2, "fixable": findings // 2}
    return Fleet.from_dict({"harbor_version": "2.14.0", "users": {"admin": "Harbor12345"},
                            "projects": [{"name": "library", "repositories": [
                                {"name": f"app{n}", "artifacts": [{"tags": ["1"],
                                                                   "scan": per}]}
                                for n in range(images)]}]})


async def read_all(url: str, images: list[ImageReference], jobs: int) -> tuple[float, int]:
    settings = HarborSettings(url=url, user="admin", password=SecretStr("Harbor12345"),
                              concurrency=max(jobs, 1))
    async with HarborV2Client(settings) as harbor:
        started = time.perf_counter()
        found = await read_details(harbor, images, what="plan images", concurrency=jobs)
        wall = time.perf_counter() - started
    return wall, sum(len(f or ()) for f in found.values())


def result_of(images: int, findings: int) -> RunResult:
    started = datetime(2026, 12, 2, 2, tzinfo=UTC)

    def finding(n: int, image: int) -> Finding:
        return Finding(f"CVE-2026-{10000 + n}", f"pkg{n % 37}", f"1.{n}.0",
                       (Severity.HIGH, Severity.MEDIUM, Severity.LOW)[n % 3],
                       f"1.{n}.1" if n % 2 else None, cvss=7.5,
                       links=(f"https://avd.aquasec.com/nvd/cve-2026-{10000 + n}",),
                       description=f"image {image}: a flaw in pkg{n % 37}")

    results = tuple(
        ImageResult(ImageReference(f"library/app{i}", "1"), Outcome.IMPROVED, "high 1 > 0",
                    "fewer findings", level=0,
                    cves_before=tuple(finding(n, i) for n in range(findings)),
                    cves_after=tuple(finding(n, i) for n in range(0, findings, 2)))
        for i in range(images))
    return RunResult("run-bench", started, started + timedelta(minutes=30), "high > 0",
                     results, judged=images * 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.details")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--findings", type=int, default=40)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 8, 16])
    args = parse_in_user_install(parser, argv, "bench.details")
    if isinstance(args, int):
        return args
    images = [ImageReference(f"library/app{n}", "1") for n in range(args.images)]
    print(f"reading the details of {args.images} images x {args.findings} findings "
          "(in-process Harbor simulator)")
    with SimulatorServer(fleet(args.images, args.findings), SimOptions()) as server:
        for jobs in args.jobs:
            wall, found = asyncio.run(read_all(server.url, images, jobs))
            print(f"  concurrency {jobs:>3}: {wall:6.2f} s, {args.images / wall:7.1f} "
                  f"images/s, {found} findings")
    result = result_of(args.images, args.findings)
    print(f"rendering a {args.images}-image result with its CVE lists")
    for name, report in REPORT_FORMATS.items():
        started = time.perf_counter()
        text = report.render(result, ReportContext())
        wall = time.perf_counter() - started
        print(f"  {name:<9} {wall:6.2f} s, {len(text.encode()) / 1e6:6.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
