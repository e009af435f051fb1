"""Decision-core benchmark (no root): step cost, frame codec cost, simulated failovers/s.

    .venv/bin/python -m bench.core
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.core import codec
from supervisor.core.events import FrameReceived, Tick
from supervisor.core.states import Activity, Nego
from supervisor.core.step import step
from tests.sim import KEY, Sim, make_config


def per_call_us(fn: Callable[[], object], n: int) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def main() -> int:
    sim = Sim(make_config())
    sim.run(3.0)
    state = sim.nodes["node2"].state
    newest = state.peer_state.fresh.newest
    assert newest is not None
    beat = codec.Beat(  # node1's next beat: fresh, so the step takes it (not a "jump")
        "sim", "node1", newest[0], newest[1] + 1,
        links={"serial": True, "crossover": True, "public": True},
        groups={"web": codec.GroupView(Activity.RUNNING, Nego.NONE, 1 << 20 | 1)},
    )
    frame = codec.encode(beat, KEY)
    now = sim.now
    print("decision core (median of 5 runs, this machine, one core):")
    ev = FrameReceived("serial", frame)
    heard = step(state, ev, now).state  # the beat came in on the serial link
    again = FrameReceived("crossover", frame)  # the same beat on the next link
    rows = [
        ("step(Tick)", lambda: step(state, Tick(), now)),
        ("step(FrameReceived)", lambda: step(state, ev, now)),
        ("step(same beat, next link)", lambda: step(heard, again, now)),
        ("encode a frame", lambda: codec.encode(beat, KEY)),
        ("decode a frame", lambda: codec.decode(frame, KEY, "sim")),
    ]
    for name, fn in rows:
        print(f"  {name:<27} {per_call_us(fn, 5000):7.1f} us")
    print(f"  frame size                  {len(frame):7d} bytes")
    n = 100
    t = time.perf_counter()
    for seed in range(n):
        s = Sim(make_config(), seed=seed)
        s.run(2.0)
        s.kill("node1")
        s.run(1.0)
        assert s.owner() == "node2"
    dt = time.perf_counter() - t
    print(f"  simulated kill-and-takeover scenarios (3 s of cluster time each): "
          f"{n / dt:.0f} per second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
