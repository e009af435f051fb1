"""Cost of the IPaddr agent's netlink use (needs root): the monitor's CPU time and the import.

In a network namespace made here (lo and three veth interfaces with IPv4 and IPv6
addresses, like a node's public, crossover and spare NICs; the floating address on the
first), a fresh interpreter:

- imports the supervisor's loop (what every node imports) and reports its modules and RSS;
- starts the IPaddr agent on the floating address (it is there already: start() only finds
  it; the announcements are stopped before measuring) and reports the modules, pyroute2's
  among them, and RSS the first netlink requests added;
- calls the agent's status() (the monitor, as the loop calls it) ``--calls`` times and
  reports the CPU time per call (time.process_time, every thread of the process): while no
  address changes, the monitor's last answer after one non-blocking read of the kernel's
  address notifications (since 9233cac; before it, a dump each time);
- and as many address dumps of the monitor's interface (through asyncio.to_thread, what a
  check costs after an address changed, and every check before 9233cac).

``--tree PATH`` measures the supervisor of another checkout (e.g. ``git archive REV``
unpacked) with the same interpreter, for a before/after comparison.

    sudo .venv/bin/python -m bench.netlink [--calls 1000] [--tree PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLOAT = "192.168.85.3"
NICS = (("eth0", "192.168.85.1/24", "fd00:85::1/64"),
        ("eth1", "10.0.0.1/24", "fd00:10::1/64"),
        ("eth2", "172.16.5.1/24", "fd00:172::1/64"))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def inside(tree: Path, calls: int) -> dict[str, object]:
    """Runs in the namespace, in a fresh interpreter."""
    import time

    sys.path.insert(0, str(tree))
    m0, r0 = len(sys.modules), rss_kib()
    import asyncio

    import supervisor.loop  # noqa: F401  (what every node imports)
    from supervisor.config import TakeoverConfig
    from supervisor.drivers.agent_base import AgentContext
    from supervisor.drivers.ipaddr import IPaddrAgent
    from supervisor.resource_spec import IPaddrSpec, parse_resource

    m1, r1 = len(sys.modules), rss_kib()
    pyroute2_at_import = sum(1 for m in sys.modules if m.split(".")[0] == "pyroute2")
    spec = parse_resource(f"IPaddr::{FLOAT}/24/eth0")
    assert isinstance(spec, IPaddrSpec)

    async def run() -> dict[str, object]:
        agent = IPaddrAgent(spec, AgentContext(takeover=TakeoverConfig(garp_count=1)))
        await agent.start()
        if agent.announcer is not None:
            await agent.announcer.stop()
        m2, r2 = len(sys.modules), rss_kib()
        assert await agent.status(), "the floating address is not seen"
        for _ in range(20):  # warm up the thread pool and caches
            await agent.status()
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(calls):
            await agent.status()
        c1, t1 = time.process_time(), time.perf_counter()
        for _ in range(calls):
            await agent._held(agent.index or 0)
        c2 = time.process_time()
        return {
            "import_modules": m1 - m0, "import_rss_kib": r1 - r0,
            "pyroute2_modules_at_import": pyroute2_at_import,
            "first_use_modules": m2 - m1, "first_use_rss_kib": r2 - r1,
            "pyroute2_modules": sum(1 for m in sys.modules if m.split(".")[0] == "pyroute2"),
            "rss_kib": rss_kib(),
            "cpu_ms_per_call": (c1 - c0) / calls * 1000,
            "wall_ms_per_call": (t1 - t0) / calls * 1000,
            "dump_cpu_ms_per_call": (c2 - c1) / calls * 1000,
        }

    return asyncio.run(run())


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--tree", type=Path, default=REPO, help="checkout to measure")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inside:
        print(json.dumps(inside(args.tree.resolve(), args.calls)))
        return 0
    if os.geteuid() != 0:
        print("the netlink benchmark needs root (a network namespace)", file=sys.stderr)
        return 1
    ns = f"tb-bench-nl-{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        for name, v4, v6 in NICS:
            sh("ip", "-n", ns, "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
            sh("ip", "-n", ns, "link", "set", f"{name}p", "up")
            sh("ip", "-n", ns, "addr", "add", v4, "dev", name)
            sh("ip", "-n", ns, "addr", "add", v6, "dev", name, "nodad")
            sh("ip", "-n", ns, "link", "set", name, "up")
        sh("ip", "-n", ns, "addr", "add", f"{FLOAT}/24", "dev", "eth0", "label", "eth0:0")
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "bench.netlink", "--inside",
             "--calls", str(args.calls), "--tree", str(args.tree)],
            cwd=REPO, check=True, capture_output=True, text=True, timeout=600).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    r = json.loads(out.splitlines()[-1])
    print(f"IPaddr monitor in a namespace (lo + 3 interfaces, IPv4 and IPv6), tree {args.tree}:")
    print(f"  import of the loop:   +{r['import_modules']} modules, "
          f"+{r['import_rss_kib'] / 1024:.1f} MiB RSS "
          f"(pyroute2 modules among them: {r['pyroute2_modules_at_import']})")
    print(f"  first agent start:    +{r['first_use_modules']} modules, "
          f"+{r['first_use_rss_kib'] / 1024:.1f} MiB RSS "
          f"(pyroute2 modules now: {r['pyroute2_modules']}); process RSS "
          f"{r['rss_kib'] / 1024:.1f} MiB")
    print(f"  status() x {args.calls}:      {r['cpu_ms_per_call']:.3f} ms CPU per call, "
          f"{r['wall_ms_per_call']:.3f} ms wall per call")
    print(f"  dump x {args.calls}:          {r['dump_cpu_ms_per_call']:.3f} ms CPU per call "
          "(through a worker thread)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
