"""Where an idle supervisor's Python time goes (needs root): cProfile in the namespace bed.

The bed of bench.idle (two supervisors, keepalive 100 ms), each run under bench/profwrap.py;
after the start-up settled, both are profiled for ``--seconds`` and the functions printed by
cumulative and by own time, per second of wall time.

    sudo .venv/bin/python -m bench.idleprof [--seconds 20] [--top 40]
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netns import AUTHKEYS, PYTHON, REPO, bed, cluster_config

FLOAT = "192.168.85.3"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--keepalive", default="100ms")
    p.add_argument("--deadtime", default="500ms")
    p.add_argument("--out", default="/tmp/twinbeat-idleprof")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wrap = str(REPO / "bench" / "profwrap.py")
    with tempfile.TemporaryDirectory() as tmp, bed(Path(tmp), REPO) as b:
        for node in ("node1", "node2"):
            os.environ["TWINBEAT_PROFILE_OUT"] = str(out / f"{node}.prof")
            text = cluster_config(b, node, resources=[f"IPaddr::{FLOAT}/24/eth0"],
                                  keepalive=args.keepalive, deadtime=args.deadtime,
                                  failback=False, ping=False)
            b.start(node, b.write_config(node, text, AUTHKEYS), prefix=(PYTHON, wrap))
        b.wait_for("node1 to own the group", lambda: FLOAT in b.ip(
            b.ns["n1"], "-o", "addr", "show", "dev", "eth0"), timeout=60)
        time.sleep(4)
        pids = [b.nodes[n].proc.pid for n in ("node1", "node2")]  # type: ignore[union-attr]
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(args.seconds)
        for pid in pids:
            os.kill(pid, signal.SIGUSR2)
        time.sleep(1)
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
