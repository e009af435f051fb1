"""Failover benchmark in the namespace test bed (needs root).

N times: freeze-and-kill the current owner (SIGSTOP, links down, serial silenced, SIGKILL),
then measure, on CLOCK_MONOTONIC (shared by every process of this host):

- kill -> the backup's takeover decision ("taking over group ..." in its status history),
- kill -> the floating address present on the backup (netlink, polled every 1 ms),
- kill -> the first answer from the backup to a client probing every 10 ms over UDP,
- takeover decision -> the client's neighbour entry for the floating address changing to
  the backup's MAC, without the client sending anything (gratuitous ARP).

Then restart the killed node (it becomes the backup: auto_failback off) and repeat. Also
the supervisor's RSS and PSS and its CPU use at idle. keepalive 100 ms, deadtime 500 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.netns import AUTHKEYS, Bed, bed, cluster_config

FLOAT = "192.168.85.3"
PORT = 7000
KEEPALIVE, DEADTIME = 0.1, 0.5


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(name: str, values: list[float], unit: str = "ms") -> str:
    scale = 1000 if unit == "ms" else 1
    v = [x * scale for x in values]
    return (f"{name:<46} n={len(v):<3} min {min(v):7.1f}  median {statistics.median(v):7.1f}  "
            f"p95 {percentile(v, 95):7.1f}  max {max(v):7.1f} {unit}")


def has_float(b: Bed, key: str) -> bool:
    return FLOAT in b.ip(b.ns[key], "-o", "addr", "show", "dev", "eth0")


def echo_server_script(node: str) -> str:
    # A UDP echo server bound to the floating address: answers with the node's name.
    return (
        "import socket,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_IP,15,1)\n"  # IP_FREEBIND: bind before the address exists
        f"s.bind(('{FLOAT}',{PORT}))\n"
        "while True:\n"
        "    d,a=s.recvfrom(100)\n"
        f"    s.sendto(b'{node}',a)\n"
    )


class Prober:
    """In the client namespace: a UDP probe every 10 ms; records when each node answers."""

    def __init__(self, b: Bed) -> None:
        code = (
            "import socket,time,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "s.settimeout(0.01)\n"
            "while True:\n"
            "    t=time.monotonic()\n"
            f"    s.sendto(b'p',('{FLOAT}',{PORT}))\n"
            "    try:\n"
            "        d,_=s.recvfrom(100)\n"
            "        print(f'{time.monotonic():.6f} {d.decode()}',flush=True)\n"
            "    except (TimeoutError, OSError):\n"
            "        pass\n"
            "    r=0.01-(time.monotonic()-t)\n"
            "    if r>0: time.sleep(r)\n"
        )
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", b.ns["cl"], sys.executable, "-u", "-c", code],
            stdout=subprocess.PIPE, text=True,
        )
        self.answers: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, node = line.split()
            with self._lock:
                self.answers.append((float(t), node))

    def first_answer_from(self, node: str, after: float) -> float | None:
        with self._lock:
            for t, n in self.answers:
                if t > after and n == node:
                    return t
        return None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def takeover_time(b: Bed, node: str, after: float) -> float | None:
    hist = b.nodes[node].status()["history"]
    for item in hist:
        if item["t"] > after and item["reason"].startswith("taking over group"):
            return float(item["t"])
    return None


def neigh_change_time(b: Bed, mac: str, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if b.neigh_mac("cl", FLOAT) == mac:
            return time.monotonic()
        time.sleep(0.002)
    return None


def rss_pss_kib(pid: int) -> tuple[int, int]:
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def cpu_ns(pid: int) -> int:
    """The CPU time of every thread of ``pid`` (the first field of each task's schedstat:
    nanoseconds on a CPU, as the scheduler counts them; /proc/PID/stat's utime and stime come
    in clock ticks, 10 ms: 0.05 % of a core over a 20 s sample, the size of the differences
    measured here). A thread that ended during the sample is not counted (the supervisor's
    worker threads stay)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return total


def cpu_seconds(pid: int) -> float:
    return cpu_ns(pid) / 1e9


def start_node(b: Bed, node: str) -> None:
    key = "n1" if node == "node1" else "n2"
    script = b.workdir / f"echo-{node}.py"
    script.write_text(echo_server_script(node))
    text = cluster_config(b, node, resources=[f"IPaddr::{FLOAT}/24/eth0"],
                          keepalive=f"{int(KEEPALIVE * 1000)}ms",
                          deadtime=f"{int(DEADTIME * 1000)}ms", failback=False, ping=False)
    b.start(node, b.write_config(node, text, AUTHKEYS))
    # The echo server belongs to the node (frozen and killed with it).
    echo = subprocess.Popen(["ip", "netns", "exec", b.ns[key], sys.executable, str(script)],
                            start_new_session=True)
    b.nodes[node].extra_pids.append(echo.pid)


def run(rounds: int) -> dict[str, object]:
    results: dict[str, list[float]] = {"decision": [], "address": [], "client": [], "neigh": []}
    with tempfile.TemporaryDirectory() as tmp, bed(Path(tmp)) as b:
        start_node(b, "node1")
        start_node(b, "node2")
        b.wait_for("node1 to own the group", lambda: has_float(b, "n1"), timeout=30)
        b.wait_for("all links up", lambda: all(
            lk["state"] == "up" for lk in b.nodes["node2"].status()["links"]), timeout=10)
        # Idle figures first (steady state, nobody failing).
        time.sleep(2)
        pid1 = b.nodes["node1"].proc.pid  # type: ignore[union-attr]
        rss, pss = rss_pss_kib(pid1)
        c0, t0 = cpu_seconds(pid1), time.monotonic()
        time.sleep(10)
        idle_cpu = (cpu_seconds(pid1) - c0) / (time.monotonic() - t0) * 100
        prober = Prober(b)
        b.run_in("cl", "ping", "-c", "1", "-W", "1", FLOAT)
        owner, backup = "node1", "node2"
        try:
            for i in range(rounds):
                key_b = "n2" if backup == "node2" else "n1"
                mac_b = b.mac[key_b]
                def links_up(bk: str = backup) -> bool:
                    return all(lk["state"] == "up" for lk in b.nodes[bk].status()["links"])

                b.wait_for(f"{backup} to see {owner} on all links", links_up, timeout=20)
                time.sleep(0.3)
                t_kill = b.freeze_and_kill(owner)
                # the dead node's extra processes (echo server) went with its session? kill
                for pid in b.nodes[owner].extra_pids:
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
                b.nodes[owner].extra_pids.clear()
                t_addr = None
                while time.monotonic() - t_kill < 5:
                    if has_float(b, key_b):
                        t_addr = time.monotonic()
                        break
                    time.sleep(0.001)
                t_neigh = neigh_change_time(b, mac_b, 3.0)
                time.sleep(0.3)
                t_dec = takeover_time(b, backup, t_kill)
                t_cli = prober.first_answer_from(backup, t_kill)
                if None in (t_addr, t_dec, t_cli, t_neigh):
                    print(f"round {i}: incomplete measurement "
                          f"(decision {t_dec}, address {t_addr}, client {t_cli}, "
                          f"neighbour {t_neigh})", file=sys.stderr)
                else:
                    assert t_dec and t_addr and t_cli and t_neigh
                    results["decision"].append(t_dec - t_kill)
                    results["address"].append(t_addr - t_kill)
                    results["client"].append(t_cli - t_kill)
                    results["neigh"].append(max(0.0, t_neigh - t_dec))
                print(f"round {i + 1}/{rounds}: {owner} killed, {backup} took over "
                      f"{(t_dec or 0) - t_kill:.3f} s after the kill", file=sys.stderr)
                b.revive_links(owner)
                start_node(b, owner)
                owner, backup = backup, owner
        finally:
            prober.close()
    decision = results["decision"]
    print()
    print(f"failover benchmark: keepalive {KEEPALIVE * 1000:.0f} ms, deadtime "
          f"{DEADTIME * 1000:.0f} ms, {rounds} kills of the owner (freeze, links down, SIGKILL)")
    print(summary("kill -> backup's takeover decision", decision))
    print(summary("kill -> floating address on the backup", results["address"]))
    print(summary("kill -> first client answer from the backup", results["client"]))
    print(summary("takeover -> client's neighbour entry follows", results["neigh"]))
    med = statistics.median(decision)
    print(f"median decision / deadtime: {med / DEADTIME:.3f} "
          f"(the last heartbeat came 0-{KEEPALIVE * 1000:.0f} ms before the kill)")
    print(f"supervisor memory: RSS {rss / 1024:.1f} MiB, PSS {pss / 1024:.1f} MiB; "
          f"idle CPU {idle_cpu:.2f} % (10 s, one core = 100 %)")
    return {"results": results, "rss_kib": rss, "pss_kib": pss, "idle_cpu_pct": idle_cpu}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--json", type=Path, help="also write the raw figures here")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("the failover benchmark needs root (network namespaces)", file=sys.stderr)
        return 1
    out = run(args.rounds)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(10)
    sys.exit(main())
