"""Where an idle supervisor's Python time goes (needs root): cProfile in the namespace bed.

The bed of bench.idle (two supervisors, keepalive 100 ms, the group monitored every
``--monitor``), each run under bench/profwrap.py; after the start-up settled, both are
profiled for ``--seconds`` and the functions printed by cumulative and by own time.

With ``--split`` it times the parts of each wake-up instead (main-thread CPU per keepalive:
the loop's iteration, its wait, the links' reading, the core's step, the sends). With
``--lines`` it counts the Python lines each main thread runs instead and prints them per
keepalive, in all and for the ``--top`` functions: a count that is the same for the same work
(the CPU figures of bench.idle move by about 0.1 point between runs), to compare two trees
(``--tree``, run once per tree) or to find where a keepalive's lines go.

    sudo .venv/bin/python -m bench.idleprof [--seconds 20] [--top 40] [--lines | --split]
        [--monitor 1s] [--tree PATH]
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.values import parse_duration
from tests.netns import AUTHKEYS, PYTHON, REPO, bed, cluster_config

FLOAT = "192.168.85.3"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--keepalive", default="100ms")
    p.add_argument("--deadtime", default="500ms")
    p.add_argument("--monitor", default="1s", help="the group's monitor interval")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds to wait after node1 owns the group (start-up's GARP "
                        "repeats, first checks and history exchange over)")
    p.add_argument("--lines", action="store_true",
                   help="count the Python lines run per keepalive instead of profiling")
    p.add_argument("--split", action="store_true",
                   help="time the parts of a wake-up (CPU per keepalive) instead")
    p.add_argument("--parts", default="",
                   help="with --split, more parts to time: \"module:function\" or "
                        "\"module:Class.method\", separated by spaces (each timed call adds "
                        "about 5 us)")
    p.add_argument("--tree", type=Path, default=REPO,
                   help="the source tree whose supervisor runs (default: this one)")
    p.add_argument("--out", default="/tmp/twinbeat-idleprof")
    args = p.parse_args()
    try:
        keepalive = parse_duration(args.keepalive)
        parse_duration(args.monitor)
    except ValueError as exc:
        p.error(str(exc))
    tree = args.tree.resolve()
    if not (tree / "supervisor" / "__main__.py").is_file():
        p.error(f"--tree {tree}: no supervisor/__main__.py there")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wrap = str(REPO / "bench" / "profwrap.py")
    if args.lines and args.split:
        p.error("--lines or --split, not both")
    for spec in args.parts.split():  # checked here: a wrong name fails the nodes' start
        module, _, path = spec.partition(":")
        try:
            owner: object = importlib.import_module(module)
            for attr in path.split("."):
                owner = getattr(owner, attr)
        except (ImportError, AttributeError) as exc:
            p.error(f"--parts {spec}: {exc}")
    if args.lines or args.split:
        os.environ["TWINBEAT_PROFILE_MODE"] = "lines" if args.lines else "split"
        os.environ["TWINBEAT_PROFILE_PARTS"] = args.parts
    with tempfile.TemporaryDirectory() as tmp, bed(Path(tmp), tree) as b:
        for node in ("node1", "node2"):
            os.environ["TWINBEAT_PROFILE_OUT"] = str(out / f"{node}.prof")
            text = cluster_config(b, node, resources=[f"IPaddr::{FLOAT}/24/eth0"],
                                  keepalive=args.keepalive, deadtime=args.deadtime,
                                  failback=False, ping=False, monitor_interval=args.monitor)
            b.start(node, b.write_config(node, text, AUTHKEYS), prefix=(PYTHON, wrap))
        b.wait_for("node1 to own the group", lambda: FLOAT in b.ip(
            b.ns["n1"], "-o", "addr", "show", "dev", "eth0"), timeout=60)
        time.sleep(args.settle)
        pids = [b.nodes[n].proc.pid for n in ("node1", "node2")]  # type: ignore[union-attr]
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(args.seconds)
        for pid in pids:
            os.kill(pid, signal.SIGUSR2)
        time.sleep(1)
    if args.split:
        print(f"CPU per keepalive ({args.keepalive}, monitor {args.monitor}, main thread, "
              f"parts nested as listed), tree {tree}")
        for node in ("node1", "node2"):
            data = json.loads((out / f"{node}.prof").read_text(encoding="utf-8"))
            beats = data["wall"] / keepalive
            print(f"==== {node}: process {data['process'] / data['wall'] * 100:.2f} % of a "
                  f"core, {data['process'] / beats * 1e6:.0f} us a keepalive")
            for name, (seconds, calls) in sorted(data["parts"].items(), key=lambda kv: -kv[1][0]):
                print(f"{seconds / beats * 1e6:8.0f} us  {name} ({calls / beats:.2f} a keepalive)")
        return 0
    if args.lines:
        beats = args.seconds / keepalive
        print(f"Python lines per keepalive ({args.keepalive}, monitor {args.monitor}, "
              f"{args.seconds:g} s, main thread), tree {tree}")
        for node in ("node1", "node2"):
            data = json.loads((out / f"{node}.prof").read_text(encoding="utf-8"))
            gcs = ", ".join(f"gen{i} {g['collections']}" for i, g in enumerate(data["gc"]))
            print(f"==== {node}: {data['lines'] / beats:.0f} lines a keepalive "
                  f"(garbage collections in the {args.seconds:g} s: {gcs})")
            top = sorted(data["functions"].items(), key=lambda kv: -kv[1])[:args.top]
            for name, n in top:
                print(f"{n / beats:8.1f}  {name.replace(str(tree) + '/', '')}")
        return 0
    for node in ("node1", "node2"):
        for key in ("cumulative", "tottime"):
            buf = io.StringIO()
            st = pstats.Stats(str(out / f"{node}.prof"), stream=buf)
            st.sort_stats(key).print_stats(args.top)
            print(f"==== {node} by {key} over {args.seconds:g} s")
            print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
