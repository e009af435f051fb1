"""Soak (`make soak`, root): a twinbeat pair at keepalive 50 ms / deadtime 250 ms in the
namespace test bed for 10 minutes while stress-ng loads the whole machine (8 CPU, 4 I/O,
2 disk and 4 memory hogs). Nothing fails, so every takeover is a false failover. Printed:
false failovers (goal 0), samples (every 0.2 s) in which both nodes held the floating
address (goal 0), the worst gap between two frames on each link, the worst loop lag.

Separate from `make bench` because it takes 10 minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.loadbed import FLOAT, STRESS, Owners, has_float, stress
from tests.netns import AUTHKEYS, REALTIME, Bed, bed, cluster_config

MOVES = re.compile(r"(taking over group web|acquiring group web)")


def moves(b: Bed) -> int:
    return sum(len(MOVES.findall(b.nodes[n].log())) for n in ("node1", "node2"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--keepalive", default="50ms")
    p.add_argument("--deadtime", default="250ms")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("the soak needs root (network namespaces)", file=sys.stderr)
        return 1
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp, bed(Path(tmp)) as b:
        for node in ("node1", "node2"):
            text = cluster_config(b, node, resources=[f"IPaddr::{FLOAT}/24/eth0", "noop::app"],
                                  keepalive=args.keepalive, deadtime=args.deadtime,
                                  failback=False, ping_timeout="5s")
            b.start(node, b.write_config(node, text, AUTHKEYS), prefix=REALTIME)
        b.wait_for("node1 to own group web", lambda: has_float(b, "n1"), timeout=30)
        b.wait_for("every link up", lambda: all(
            lk["state"] == "up" for n in ("node1", "node2")
            for lk in b.nodes[n].status()["links"]), timeout=15)
        before = moves(b)
        t0 = time.monotonic()
        with stress(Path(tmp) / "stress", seconds + 5) as hog, Owners(b) as owners:
            while time.monotonic() - t0 < seconds:
                if hog.poll() is not None:
                    print("stress-ng ended early", file=sys.stderr)
                    return 1
                time.sleep(1.0)
        false = moves(b) - before
        worst = {n: {lk["name"]: lk.get("worst_gap_ms") for lk in b.nodes[n].status()["links"]}
                 for n in ("node1", "node2")}
        lag = {n: b.nodes[n].status()["loop"]["max_lag_ms"] for n in ("node1", "node2")}
        rt = b.nodes["node1"].status().get("realtime") or {}
    print()
    print(f"soak: {args.minutes:g} min under stress-ng {' '.join(STRESS)} on "
          f"{os.cpu_count()} CPUs, keepalive {args.keepalive}, deadtime {args.deadtime}, "
          f"scheduling {rt.get('policy')} {rt.get('priority')}, memory locked "
          f"{rt.get('memory_locked')}")
    print(f"false failovers: {false} (goal 0)")
    print(f"double-owner samples: {owners.double()} of {len(owners.samples)} (goal 0)")
    for node, links in worst.items():
        text = ", ".join(f"{k} {v:.0f} ms" if v is not None else f"{k} -"
                         for k, v in links.items())
        print(f"worst beat gap seen by {node}: {text}; worst loop lag {lag[node]:.0f} ms")
    return 0 if false == 0 and owners.double() == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
