"""Run ``python -m supervisor ...`` under cProfile switched by signals (bench.idleprof).

SIGUSR1 starts profiling the main thread, SIGUSR2 stops it and dumps the stats to the file
named by TWINBEAT_PROFILE_OUT. With TWINBEAT_PROFILE_MODE=lines it counts instead the Python
lines the main thread runs, per function (a line tracer: slow, but the same count for the same
work, where CPU figures move with the machine), and dumps them as JSON
``{"lines": total, "functions": {"file:line function": count}, "gc": [per generation:
{"collections", "collected", "uncollectable"} in the run]}``. With
TWINBEAT_PROFILE_MODE=split it times (CPU time of the main thread) the parts of a wake-up
instead, by wrapping them: the loop's iteration, its wait, the quiet reading of the links,
the feed, the core's step, the sends; and the process's CPU time, wall time and the count
of each part: ``{"process": s, "wall": s, "parts": {name: [seconds, calls]}}``.

Invoked as ``python bench/profwrap.py PYTHON -m supervisor ...`` (the bed's ``prefix``), so
the argument list after this script's name is the real command.
"""

from __future__ import annotations

import cProfile
import gc
import importlib
import json
import os
import runpy
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any

prof = cProfile.Profile()
MODE = os.environ.get("TWINBEAT_PROFILE_MODE", "profile")
LINES = MODE == "lines"
SPLIT = MODE == "split"
#: by part: [CPU seconds, calls] since SIGUSR1 (split mode)
parts: dict[str, list[float]] = {}
split_from = [0.0, 0.0]  # (process CPU time, monotonic time) at SIGUSR1


def _timed(owner: Any, name: str, part: str) -> None:
    """Wrap ``owner.name`` to add its main-thread CPU time to ``parts[part]``."""
    inner: Callable[..., Any] = getattr(owner, name)
    clock = time.thread_time

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = clock()
        try:
            return inner(*args, **kwargs)
        finally:
            row = parts.setdefault(part, [0.0, 0])
            row[0] += clock() - t
            row[1] += 1

    setattr(owner, name, timed)


def _wrap_parts() -> None:
    import asyncio
    import selectors

    from supervisor import linkset, loop

    _timed(asyncio.base_events.BaseEventLoop, "_run_once", "loop iteration")
    _timed(selectors.EpollSelector, "select", "wait (epoll)")
    _timed(loop.Supervisor, "_tick", "wake-up (_tick)")
    _timed(linkset.LinkSet, "collect", "links read (collect)")
    _timed(loop.Supervisor, "_take_collected", "frames collected, stepped (_take_collected)")
    _timed(loop.Supervisor, "feed", "feed")
    _timed(loop, "step", "core step")
    _timed(linkset.LinkSet, "send", "beat sent (3 links)")
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[0] = time.thread_time()
            return
        row = parts.setdefault(f"gc generation {info['generation']}", [0.0, 0])
        row[0] += time.thread_time() - gc_started[0]
        row[1] += 1

    gc.callbacks.append(on_gc)
    # more parts, named in TWINBEAT_PROFILE_PARTS (bench.idleprof --parts): "module:attr" or
    # "module:Class.attr", separated by spaces
    for spec in os.environ.get("TWINBEAT_PROFILE_PARTS", "").split():
        module, _, path = spec.partition(":")
        owner: Any = importlib.import_module(module)
        *outer, name = path.split(".")
        for attr in outer:
            owner = getattr(owner, attr)
        _timed(owner, name, path)
counts: Counter[Any] = Counter()
gc_before: list[dict[str, int]] = []


def _trace(frame: FrameType, event: str, arg: object) -> Any:
    if event == "line":
        counts[frame.f_code] += 1
    return _trace


def start(signum: int, frame: FrameType | None) -> None:
    gc_before[:] = gc.get_stats()
    if SPLIT:
        parts.clear()
        split_from[:] = [time.process_time(), time.monotonic()]
        return
    if not LINES:
        prof.enable()
        return
    counts.clear()
    sys.settrace(_trace)
    while frame is not None:  # the frames running now count from here on too
        frame.f_trace = _trace
        frame = frame.f_back


def stop(signum: int, frame: FrameType | None) -> None:
    if SPLIT:
        with open(os.environ["TWINBEAT_PROFILE_OUT"], "w", encoding="utf-8") as f:
            json.dump({"process": time.process_time() - split_from[0],
                       "wall": time.monotonic() - split_from[1], "parts": parts}, f)
        return
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
    if SPLIT:
        _wrap_parts()
    runpy.run_module("supervisor", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
