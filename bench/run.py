"""`make bench`: every benchmark, one after the other; each prints its own measured figures.

The namespace benchmarks need root; run as a normal user only the core one is run.
``BASELINE=REV make bench`` also measures git revision REV in the idle benchmark, side by side
(IDLE_ROUNDS samples of each, 3 by default, alternating; the medians).
The 10-minute soak under load is `make soak` (bench/soak.py), not part of this run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BENCHES = [
    ("decision core", ["-m", "bench.core"], False),
    ("idle CPU and memory per node in namespaces (keepalive 100 ms and 50 ms), on this "
     "venv's python and on the image's own",
     ["-m", "bench.idle", "--python", "host,image", *(["--baseline", os.environ["BASELINE"],
                             "--rounds", os.environ.get("IDLE_ROUNDS", "3")]
                            if os.environ.get("BASELINE") else [])], True),
    ("the I/O floor of an idle node: the keepalive's reads and sends alone, in namespaces",
     ["-m", "bench.iofloor", "--rounds", os.environ.get("IDLE_ROUNDS", "3")], True),
    ("the IPaddr monitor's netlink cost (CPU per status(), pyroute2's import)",
     ["-m", "bench.netlink"], True),
    ("failover in namespaces (keepalive 100 ms, deadtime 500 ms)",
     ["-m", "bench.failover", "--rounds", os.environ.get("ROUNDS", "20")], True),
    ("failover to hook and to mail in namespaces (deadtime 1 s, mail_delay 2 s)",
     ["-m", "bench.notify", "--rounds", os.environ.get("NOTIFY_ROUNDS", "5")], True),
    ("gratuitous ARP / unsolicited NA to the client's neighbour entry",
     ["-m", "bench.garp_neigh", "-n", os.environ.get("ROUNDS", "20")], True),
    ("idle CPU and memory beside heartbeat 3.0.6 and keepalived 2.2.7 (one run)",
     ["-m", "bench.compare", "--idle", "--rounds", os.environ.get("IDLE_ROUNDS", "3")], True),
    ("client-seen failover beside heartbeat 3.0.6 and keepalived 2.2.7 (one run)",
     ["-m", "bench.compare", "--rounds", os.environ.get("COMPARE_ROUNDS", "10")], True),
    ("QEMU pair: power-loss failover, replicated against plain (the image, ~15 min)",
     ["-m", "bench.qemu_failover"], True),
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
