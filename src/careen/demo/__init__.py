"""``careen demo``: the whole nightly job on one machine, against a lab and a simulated Harbor.

:func:`start_demo` sets everything up under one folder, :func:`load_demo` reads a running
demo back, :func:`stop_demo` stops it. The shipped fleet (``data/tree``), the distribution's OS
image in its two versions (``data/upstream``) and the advisories (``data/advisories.toml``)
are data files of this package.
"""

from careen.demo.environment import (
    EXPECTED,
    DemoExpectation,
    DemoSite,
    load_demo,
    start_demo,
    stop_demo,
)

__all__ = ["EXPECTED", "DemoExpectation", "DemoSite", "load_demo", "start_demo", "stop_demo"]
