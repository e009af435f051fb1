"""Benchmark: from a takeover (IPaddr start() on the new owner) to the client's neighbour entry
pointing at the new owner, without the client sending anything. Needs root.

Three namespaces on a bridge (n1, n2, client). The floating address moves n1 -> n2 -> n1 ...
N times. A watcher inside the client namespace listens to netlink neighbour events and stamps
each change with CLOCK_MONOTONIC (the same clock in every namespace); the owner's helper stamps
the moment the first announcement left. Prints min/median/p95/max for IPv4 (gratuitous ARP) and
IPv6 (unsolicited NA), and how long start() itself took.

    sudo .venv/bin/python -m bench.garp_neigh [-n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.netns_util import Lan, udp_probe  # noqa: E402

MAC1, MAC2, MACC = "02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:0c:01"

WATCHER = r"""
import json, sys, time
from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_NEIGH
with IPRoute() as ipr:
    ipr.bind(groups=RTMGRP_NEIGH)
    print("ready", flush=True)
    while True:
        for msg in ipr.get():
            if msg.get("event") != "RTM_NEWNEIGH":
                continue
            dst, ll = msg.get_attr("NDA_DST"), msg.get_attr("NDA_LLADDR")
            if dst and ll:
                print(json.dumps({"t": time.monotonic(), "dst": dst, "mac": ll}), flush=True)
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<44} n={len(ms):<3} min {min(ms):7.2f}  median {statistics.median(ms):7.2f}"
            f"  p95 {percentile(ms, 95):7.2f}  max {max(ms):7.2f} ms")


def run(floating: str, n: int, lan: Lan, *, n1: str, n2: str, cl: str) -> None:
    takeover = {"garp_count": 5, "garp_interval": 0.2, "garp_repeat_delay": 2.0}
    helpers = {MAC1: lan.helper(n1, takeover), MAC2: lan.helper(n2, takeover)}
    watcher = subprocess.Popen(["ip", "netns", "exec", cl, sys.executable, "-c", WATCHER],
                               stdout=subprocess.PIPE, text=True, env=dict(
                                   os.environ, PYTHONPATH=str(REPO)))
    assert watcher.stdout is not None
    try:
        assert watcher.stdout.readline().strip() == "ready"
        spec = f"IPaddr::{floating}"
        owner = MAC1
        assert helpers[owner].cmd(op="start", spec=spec)["ok"]
        assert udp_probe(cl, floating)
        to_entry: list[float] = []
        start_call: list[float] = []
        for _ in range(n):
            new = MAC2 if owner == MAC1 else MAC1
            assert helpers[owner].cmd(op="stop", spec=spec)["ok"]
            time.sleep(0.05)
            # drain watcher events caused by the stop (none expected)
            while select.select([watcher.stdout], [], [], 0)[0]:
                watcher.stdout.readline()
            t_call = time.monotonic()
            answer = helpers[new].cmd(op="start", spec=spec)
            assert answer["ok"], answer
            first = answer["result"]["first_sent_at"]
            start_call.append(answer["t"] - t_call)
            deadline = time.monotonic() + 3
            seen = None
            while time.monotonic() < deadline and seen is None:
                if not select.select([watcher.stdout], [], [], 0.5)[0]:
                    continue
                event = json.loads(watcher.stdout.readline())
                if event["dst"] == floating and event["mac"] == new:
                    seen = event["t"]
            if seen is None:
                raise SystemExit(f"client never saw {floating} move to {new}")
            to_entry.append(seen - first)
            owner = new
            time.sleep(0.1)
        family = "IPv6 NA" if ":" in floating else "IPv4 GARP"
        print(summary(f"{family}: first announcement -> client entry", to_entry))
        print(summary(f"{family}: IPaddr start() duration (helper RPC)", start_call))
    finally:
        watcher.kill()
        watcher.wait()
        for h in helpers.values():
            h.close()
        lan.helpers.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    with Lan("b") as lan:
        n1 = lan.node("n1", MAC1, "10.252.0.1/24", "fd00:252::1/64")
        n2 = lan.node("n2", MAC2, "10.252.0.2/24", "fd00:252::2/64")
        cl = lan.node("cl", MACC, "10.252.0.100/24", "fd00:252::100/64")
        run("10.252.0.50", args.n, lan, n1=n1, n2=n2, cl=cl)
        run("fd00:252::50", args.n, lan, n1=n1, n2=n2, cl=cl)


if __name__ == "__main__":
    main()
