"""Run ``python -m supervisor ...`` under cProfile switched by signals (bench.idleprof).

SIGUSR1 starts profiling the main thread, SIGUSR2 stops it and dumps the stats to the file
named by TWINBEAT_PROFILE_OUT. With TWINBEAT_PROFILE_MODE=lines it counts instead the Python
lines the main thread runs, per function (a line tracer: slow, but the same count for the same
work, where CPU figures move with the machine), and dumps them as JSON
``{"lines": total, "functions": {"file:line function": count}, "gc": [per generation:
{"collections", "collected", "uncollectable"} in the run]}``.

Invoked as ``python bench/profwrap.py PYTHON -m supervisor ...`` (the bed's ``prefix``), so
the argument list after this script's name is the real command.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import runpy
import signal
import sys
from collections import Counter
from types import FrameType
from typing import Any

prof = cProfile.Profile()
LINES = os.environ.get("TWINBEAT_PROFILE_MODE") == "lines"
counts: Counter[Any] = Counter()
gc_before: list[dict[str, int]] = []


def _trace(frame: FrameType, event: str, arg: object) -> Any:
    if event == "line":
        counts[frame.f_code] += 1
    return _trace


def start(signum: int, frame: FrameType | None) -> None:
    gc_before[:] = gc.get_stats()
    if not LINES:
        prof.enable()
        return
    counts.clear()
    sys.settrace(_trace)
    while frame is not None:  # the frames running now count from here on too
        frame.f_trace = _trace
        frame = frame.f_back


def stop(signum: int, frame: FrameType | None) -> None:
    if not LINES:
        prof.disable()
        prof.dump_stats(os.environ["TWINBEAT_PROFILE_OUT"])
        return
    sys.settrace(None)
    while frame is not None:
        frame.f_trace = None
        frame = frame.f_back
    funcs = {f"{c.co_filename}:{c.co_firstlineno} {c.co_name}": n for c, n in counts.items()}
    with open(os.environ["TWINBEAT_PROFILE_OUT"], "w", encoding="utf-8") as f:
        json.dump({"lines": sum(counts.values()), "functions": funcs,
                   "gc": [{k: after[k] - before[k] for k in after}
                          for before, after in zip(gc_before, gc.get_stats(), strict=True)]},
                  f)


def main() -> None:
    args = sys.argv[1:]
    assert args[1:3] == ["-m", "supervisor"], args
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["supervisor", *args[3:]]
    runpy.run_module("supervisor", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
