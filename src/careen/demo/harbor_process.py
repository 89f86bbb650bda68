"""The demo's Harbor simulator as a process of its own, so ``careen demo --keep`` can leave it
running after the caller exits::

    python -m careen.demo.harbor_process SETTINGS.json

``SETTINGS.json`` is a :class:`careen.demo.simulator.SimulatorSettings`. Once the simulator
listens, the process writes the settings' ``ready_file`` (``{"url": ..., "pid": ...}``) and
serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from careen.demo.simulator import SimulatorSettings, build_server
from careen.fileio import write_atomically


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m careen.demo.harbor_process SETTINGS.json", file=sys.stderr)
        return 2
    settings = SimulatorSettings.read(Path(args[0]))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = build_server(settings).start()
    try:
        write_atomically(Path(settings.ready_file),
                         json.dumps({"url": server.url, "pid": os.getpid()}) + "\n")
        print(f"Harbor simulator serving on {server.url}", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
