"""`make bench`: every benchmark, one after the other; each prints its own measured figures.

The namespace benchmarks need root; run as a normal user only the core one is run.
``BASELINE=REV make bench`` also measures git revision REV in the idle benchmark, side by side.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BENCHES = [
    ("decision core", ["-m", "bench.core"], False),
    ("idle CPU and memory per node in namespaces (keepalive 100 ms and 50 ms)",
     ["-m", "bench.idle", *(["--baseline", os.environ["BASELINE"]]
                            if os.environ.get("BASELINE") else [])], True),
    ("the IPaddr monitor's netlink cost (CPU per status(), pyroute2's import)",
     ["-m", "bench.netlink"], True),
    ("failover in namespaces (keepalive 100 ms, deadtime 500 ms)",
     ["-m", "bench.failover", "--rounds", os.environ.get("ROUNDS", "20")], True),
    ("gratuitous ARP / unsolicited NA to the client's neighbour entry",
     ["-m", "bench.garp_neigh", "-n", os.environ.get("ROUNDS", "20")], True),
]


def main() -> int:
    failed = 0
    for title, args, root in BENCHES:
        print(f"\n=== {title} ===", flush=True)
        if root and os.geteuid() != 0:
            print("skipped: needs root (network namespaces)")
            continue
        rc = subprocess.run([sys.executable, *args], cwd=REPO, check=False).returncode
        if rc != 0:
            print(f"FAILED (exit status {rc})")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
