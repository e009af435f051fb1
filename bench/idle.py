"""Idle cost of the supervisor (needs root): CPU per node and memory, in the namespace bed.

Two real supervisors in network namespaces (tests/netns.py: serial null-modem, crossover and
public links, one group holding a floating address, monitored every second), formed and
settled, then sampled for ``--seconds`` (default 20) at each keepalive (100 ms with deadtime
500 ms, 50 ms with deadtime 250 ms): the CPU time each supervisor used (utime + stime from
/proc/PID/stat) over the wall time, in % of one core, and its PSS and RSS (smaps_rollup)
at the end of the sample.

``--baseline REV`` also runs the supervisor of git revision REV (``git archive`` into a
temporary directory, the same venv), one after the other in the same run, and prints both
side by side.

    sudo .venv/bin/python -m bench.idle [--seconds 20] [--baseline main]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.failover import cpu_seconds, rss_pss_kib
from tests.netns import AUTHKEYS, REPO, bed, cluster_config

FLOAT = "192.168.85.3"
SETTINGS = (("100ms", "500ms"), ("50ms", "250ms"))


@dataclass
class Sample:
    cpu_pct: list[float]  # per node
    pss_kib: list[int]
    rss_kib: list[int]


def measure(repo: Path, keepalive: str, deadtime: str, seconds: float) -> Sample:
    with tempfile.TemporaryDirectory() as tmp, bed(Path(tmp), repo) as b:
        for node in ("node1", "node2"):
            text = cluster_config(b, node, resources=[f"IPaddr::{FLOAT}/24/eth0"],
                                  keepalive=keepalive, deadtime=deadtime, failback=False,
                                  ping=False)
            b.start(node, b.write_config(node, text, AUTHKEYS))
        b.wait_for("node1 to own the group", lambda: FLOAT in b.ip(
            b.ns["n1"], "-o", "addr", "show", "dev", "eth0"), timeout=60)
        b.wait_for("all links up on both nodes", lambda: all(
            lk["state"] == "up" for n in ("node1", "node2")
            for lk in b.nodes[n].status()["links"]), timeout=20)
        time.sleep(3)  # let the start-up settle (GARP repeats, first monitors)
        pids = [b.nodes[n].proc.pid for n in ("node1", "node2")]  # type: ignore[union-attr]
        c0, t0 = [cpu_seconds(p) for p in pids], time.monotonic()
        time.sleep(seconds)
        c1, t1 = [cpu_seconds(p) for p in pids], time.monotonic()
        mem = [rss_pss_kib(p) for p in pids]
        for n in ("node1", "node2"):
            proc = b.nodes[n].proc
            assert proc is not None and proc.poll() is None, f"{n} exited during the sample"
        return Sample([(c1[i] - c0[i]) / (t1 - t0) * 100 for i in range(2)],
                      [m[1] for m in mem], [m[0] for m in mem])


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[tuple[Path, str]]:
    """The tree of ``rev`` in a temporary directory, and its commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="twinbeat-baseline-") as tmp:
        archive = subprocess.run(["git", "archive", commit], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp), commit


def row(label: str, s: Sample) -> str:
    cpu = " / ".join(f"{c:5.2f}" for c in s.cpu_pct)
    pss = " / ".join(f"{p / 1024:5.1f}" for p in s.pss_kib)
    rss = " / ".join(f"{r / 1024:5.1f}" for r in s.rss_kib)
    return f"  {label:<24} CPU % {cpu}   PSS MiB {pss}   RSS MiB {rss}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--baseline", metavar="REV", help="also measure this git revision")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("the idle benchmark needs root (network namespaces)", file=sys.stderr)
        return 1
    head = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()
    trees: list[tuple[str, Path]] = [(f"this tree ({head})", REPO)]
    with contextlib.ExitStack() as stack:
        if args.baseline:
            path, commit = stack.enter_context(checkout(args.baseline))
            trees.insert(0, (f"{args.baseline} ({commit})", path))
        results: dict[tuple[str, str], Sample] = {}
        for keepalive, deadtime in SETTINGS:
            for label, path in trees:
                print(f"measuring {label} at keepalive {keepalive} ...", file=sys.stderr,
                      flush=True)
                results[(keepalive, label)] = measure(path, keepalive, deadtime, args.seconds)
    load = os.getloadavg()
    print(f"idle supervisors in namespaces: 3 links, one group (floating address, monitor "
          f"1 s), {args.seconds:.0f} s sample per row; figures per node (node1 / node2), "
          f"CPU in % of one core; load average at the end {load[0]:.2f}")
    for keepalive, deadtime in SETTINGS:
        print(f"keepalive {keepalive}, deadtime {deadtime}:")
        for label, _path in trees:
            print(row(label, results[(keepalive, label)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
