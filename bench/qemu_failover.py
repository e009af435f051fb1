"""Power-loss failover in the QEMU pair, replicated against plain, in one run (root, image).

Two pairs booted one after the other (two VMs at a time on this machine): the plain pair
(floating address and the demo web page) and the replicated one (the same plus
drbddisk::r0 and /dev/drbd0 on /srv before the web page). In each: wait until node1 serves
and, for the replicated pair, the replicas are Connected UpToDate/UpToDate and /srv is
mounted; write a file on node1's /srv (fsync'ed: with protocol C it is on node2 too), pull
node1's power (SIGKILL to its QEMU), and measure, on the host's CLOCK_MONOTONIC, the kill ->
the observer's first HTTP answer from node2 (the web page starts after /srv is mounted, so
the answer means the data is served). Then node2's /srv must hold the file (sha256).

The figures and their ratio are printed; goal: replicated / plain <= 1.5. Before each kill,
each node's supervisor's PSS and RSS in the booted image are printed too.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "qemu-tests"))

from pair import MOUNT_POINT, Pair  # noqa: E402


def default_image() -> Path:
    with open(ROOT / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    return ROOT / "images" / f"twinbeat-{version}.raw"


def _in_sync(pair: Pair, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = [n.sh("drbdadm cstate r0; drbdadm dstate r0", check=False, timeout=120)[1]
                  .split() for n in pair.nodes]
        if all(s[:2] == ["Connected", "UpToDate/UpToDate"] for s in states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"DRBD not in sync within {timeout:.0f} s: {states}")
        time.sleep(2.0)


def supervisor_memory(pair: Pair) -> str:
    """Each node's supervisor's PSS and RSS in the booted image (the main process of
    twinbeat.service, /proc/PID/smaps_rollup): what the image's python3 and the libraries it
    shares with the rest of the system really cost, which the namespace bed (bench.idle,
    the host's or the image tree's interpreter) can only approximate."""
    figures = []
    for node in pair.nodes:
        out = node.sh("pid=$(systemctl show -p MainPID --value twinbeat) && "
                      "grep -E '^(Rss|Pss):' /proc/$pid/smaps_rollup", timeout=60)[1]
        kib = {f[0].rstrip(":"): int(f[1]) for f in (line.split() for line in out.splitlines())
               if len(f) >= 2 and f[1].isdigit()}
        if not {"Pss", "Rss"} <= kib.keys():
            raise RuntimeError(f"{node.name}: no Pss/Rss in the supervisor's smaps_rollup: "
                               f"{out!r}")
        figures.append(f"{node.name} PSS {kib['Pss'] / 1024:.1f} MiB, RSS {kib['Rss'] / 1024:.1f}"
                       " MiB")
    return "; ".join(figures)


def one(image: Path, replicate: bool) -> tuple[float, str, str]:
    """Boot a pair, fail node1 by power loss; (kill -> first HTTP answer from node2, note,
    each supervisor's memory before the kill)."""
    workdir = Path(tempfile.mkdtemp(prefix="tbqb-"))
    pair = Pair(image, workdir, replicate=replicate)
    try:
        pair.boot()
        pair.wait_formed("node1", timeout=600)
        note = ""
        if replicate:
            _in_sync(pair, 600)
            pair.wait_http("node1", timeout=120)
            out = pair.node1.sh(f"findmnt -n -o SOURCE {MOUNT_POINT}", check=False,
                                timeout=30)[1].strip()
            if out != "/dev/drbd0":
                raise RuntimeError(f"node1 serves but {MOUNT_POINT} is {out!r}")
            pair.node1.sh(f"dd if=/dev/urandom of={MOUNT_POINT}/bench.bin bs=1M count=4 "
                          "conv=fsync status=none", timeout=120)
            want = pair.node1.sh(f"sha256sum {MOUNT_POINT}/bench.bin", timeout=60)[1].split()[0]
        else:
            pair.wait_http("node1", timeout=120)
        time.sleep(3.0)  # a settled pair: every link up, no resync
        memory = supervisor_memory(pair)
        t_kill = pair.node1.power_off()
        t_http = pair.wait_http("node2", timeout=240)
        if replicate:
            got = pair.node2.sh(f"sha256sum {MOUNT_POINT}/bench.bin", check=False,
                                timeout=60)[1].split()
            if not got or got[0] != want:
                raise RuntimeError(f"node2 serves but its /srv lacks node1's write: {got}")
            journal = pair.node2.sh("journalctl -u twinbeat -o cat --no-pager | grep -E "
                                    "'dropping that connection|taking over group' | tail -n 3",
                                    check=False, timeout=60)[1]
            note = "; ".join(line[:110] for line in journal.splitlines() if line.strip())
        return t_http - t_kill, note, memory
    finally:
        pair.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, default=default_image())
    args = p.parse_args()
    if os.geteuid() != 0:
        print("the QEMU benchmark needs root (the observer's namespace)", file=sys.stderr)
        return 1
    if not args.image.exists():
        print(f"no image at {args.image}: run `make image`", file=sys.stderr)
        return 1
    plain, _, memory = one(args.image, replicate=False)
    print(f"plain pair: node1 powered off -> first HTTP answer from node2 {plain:.1f} s",
          flush=True)
    print(f"  the supervisors' memory in the booted image before it: {memory}", flush=True)
    repl, note, memory = one(args.image, replicate=True)
    print(f"replicated pair (DRBD, /srv): node1 powered off -> first HTTP answer from node2 "
          f"{repl:.1f} s, node1's fsync'ed write on node2's /srv", flush=True)
    print(f"  the supervisors' memory in the booted image before it: {memory}", flush=True)
    if note:
        print("  node2: " + re.sub(r"\s+", " ", note))
    print(f"ratio replicated / plain: {repl / plain:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
