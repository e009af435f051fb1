"""Load for the beat-path tests and the soak benchmark: stress-ng on the whole machine, and a
sampler of which nodes hold the floating address (a double owner is a sample where both do).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.netns import Bed

FLOAT = "192.168.85.3"
#: the issue's load: 8 CPU hogs, 4 I/O (sync) hogs, 2 disk writers, 4 memory hogs
STRESS = ("--cpu", "8", "--io", "4", "--hdd", "2", "--hdd-bytes", "128M", "--vm", "4",
          "--vm-bytes", "256M")


@contextmanager
def stress(tmp: Path, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    """stress-ng on the whole machine (the root namespace), killed on every exit path."""
    tmp.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["stress-ng", *STRESS, "--temp-path", str(tmp), "--timeout", f"{int(seconds)}s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(2.0)
        assert proc.poll() is None, f"stress-ng exited at once ({proc.returncode})"
        yield proc
    finally:
        # TERM first: stress-ng stops and reaps its workers (a KILL leaves them to init)
        with suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# A real-time process of the supervisors' priority that only sleeps 5 ms at a time and
# notes how much later than asked it woke up: the machine's own stalls (this host is itself
# a virtual machine: its vCPUs can be held by the hypervisor, for every process at once),
# which no beat path can beat. It prints its worst lateness (ms) and when (CLOCK_MONOTONIC,
# the supervisors' and the tests' clock) on SIGTERM.
CANARY = r'''
import json, signal, sys, time
worst, at, stop = 0.0, 0.0, False
def done(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, done)
while not stop:
    t = time.monotonic()
    time.sleep(0.005)
    late = time.monotonic() - t - 0.005
    if late > worst:
        worst, at = late, t
print(json.dumps({"worst_ms": worst * 1000, "at": at}), flush=True)
'''


class Canary:
    """The CANARY process (real time, as the supervisors run in these tests), for a load
    window: ``worst_ms`` is the longest the machine kept a real-time process from running."""

    def __init__(self, prefix: tuple[str, ...]) -> None:
        self.prefix = prefix
        self.worst_ms = 0.0
        self.at = 0.0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Canary:
        self._proc = subprocess.Popen([*self.prefix, sys.executable, "-c", CANARY],
                                      stdout=subprocess.PIPE, text=True)
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the canary runs inside its with block"
        return self._proc.pid

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        with suppress(ProcessLookupError):
            self._proc.terminate()
        try:
            out, _ = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate(timeout=10)
        if self._proc.returncode == 0 and out.strip():
            got = json.loads(out.strip().splitlines()[-1])
            self.worst_ms, self.at = float(got["worst_ms"]), float(got["at"])
        elif exc[0] is None:
            raise AssertionError(f"the stall canary failed (exit {self._proc.returncode})")


def has_float(b: Bed, key: str) -> bool:
    return FLOAT in b.ip(b.ns[key], "-o", "addr", "show", "dev", "eth0")


class Owners:
    """Samples which nodes hold the floating address, every 0.2 s, in a thread."""

    def __init__(self, b: Bed) -> None:
        self.b = b
        self.samples: list[tuple[float, bool, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(subprocess.CalledProcessError):
                self.samples.append((time.monotonic(), has_float(self.b, "n1"),
                                     has_float(self.b, "n2")))
            self._stop.wait(0.2)

    def __enter__(self) -> Owners:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def double(self) -> int:
        return sum(1 for _t, a, b in self.samples if a and b)

    def on(self, key: str) -> int:
        return sum(1 for _t, a, b in self.samples if (a if key == "n1" else b))


# A ping node that answers in user space, so that the answers to one node can be delayed or
# dropped: the host kernel here has no netem (CONFIG_NET_SCH_NETEM is not set), and netem
# on a node's own interface would delay its heartbeats too. The client namespace's kernel is
# told not to answer echo requests; this responder reads them from a raw socket and answers
# after the delay that ``policy.json`` gives for the sender's address ("drop" = never).
PING_NODE = r'''
import json, os, select, socket, struct, sys, time, heapq
policy_path = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
pending = []
policy, mtime = {}, 0.0
while True:
    try:
        m = os.stat(policy_path).st_mtime
        if m != mtime:
            with open(policy_path) as f: policy = json.load(f)
            mtime = m
    except (OSError, ValueError):
        pass
    now = time.monotonic()
    while pending and pending[0][0] <= now:
        _, _, pkt, addr = heapq.heappop(pending)
        s.sendto(pkt, (addr, 0))
    wait = max(0.0, min(0.05, pending[0][0] - now)) if pending else 0.05
    r, _, _ = select.select([s], [], [], wait)
    if not r: continue
    data, (addr, _) = s.recvfrom(65535)
    ihl = (data[0] & 0x0F) * 4
    icmp = data[ihl:]
    if len(icmp) < 8 or icmp[0] != 8: continue
    rule = policy.get(addr, 0.0)
    if rule == "drop": continue
    body = b"\0\0\0\0" + icmp[4:]
    body = bytes([0]) + body[1:]
    reply = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    heapq.heappush(pending, (time.monotonic() + float(rule), id(reply), reply, addr))
'''


class PingNode:
    """The client namespace answers pings through PING_NODE; ``set(address, 2.0)`` delays
    the answers to ``address`` by 2 s, ``set(address, "drop")`` drops them."""

    def __init__(self, b: Bed, key: str = "cl") -> None:
        self.b = b
        self.key = key
        self.policy_path = b.workdir / f"ping-policy-{key}.json"
        self.policy: dict[str, float | str] = {}
        self._write()
        r = b.run_in(key, "sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=1")
        assert r.returncode == 0, r.stderr
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", b.ns[key], "python3", "-c", PING_NODE,
             str(self.policy_path)], start_new_session=True)

    def _write(self) -> None:
        tmp = self.policy_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.policy))
        os.replace(tmp, self.policy_path)
        time.sleep(0.05)  # a new mtime the responder can see

    def set(self, address: str, rule: float | str) -> None:
        self.policy[address] = rule
        self._write()

    def close(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.b.run_in(self.key, "sysctl", "-q", "-w", "net.ipv4.icmp_echo_ignore_all=0")

    def __enter__(self) -> PingNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
