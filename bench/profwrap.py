"""Run ``python -m supervisor ...`` under cProfile switched by signals (bench.idleprof).

SIGUSR1 starts profiling the main thread, SIGUSR2 stops it and dumps the stats to the file
named by TWINBEAT_PROFILE_OUT. Invoked as ``python bench/profwrap.py PYTHON -m supervisor ...``
(the bed's ``prefix``), so the argument list after this script's name is the real command.
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
from types import FrameType

prof = cProfile.Profile()


def start(signum: int, frame: FrameType | None) -> None:
    prof.enable()


def stop(signum: int, frame: FrameType | None) -> None:
    prof.disable()
    prof.dump_stats(os.environ["TWINBEAT_PROFILE_OUT"])


def main() -> None:
    args = sys.argv[1:]
    assert args[1:3] == ["-m", "supervisor"], args
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["supervisor", *args[3:]]
    runpy.run_module("supervisor", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
