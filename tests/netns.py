"""Network-namespace test bed: two nodes, a crossover cable, a public switch, a client.

    n1 (eth0 192.168.85.1, eth1 10.0.0.1) ──crossover veth── n2 (eth1 10.0.0.2, eth0 .2)
        │ eth0                                                 │ eth0
        └────────────── bridge "sw0" in namespace sw ──────────┘
                                 │
                         client (eth0 192.168.85.100)

A null-modem cable is a pair of ptys joined by a relay thread in the test process; the relay
can cut either direction (bytes are dropped, the ends stay open: silence, not a hang-up).
Everything is named after the test process's PID and removed on every exit path.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
#: run a supervisor the way twinbeat.service does: SCHED_RR 50, children reset on fork
REALTIME = ("chrt", "--rr", "--reset-on-fork", "50")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"tbprobe{os.getpid()}"
    ok = sh("ip", "netns", "add", name, check=False).returncode == 0
    if ok:
        sh("ip", "netns", "del", name, check=False)
    return ok


class NullModem:
    """Two ptys joined by a relay thread; ``cut(direction)`` drops bytes silently.

    ``inject`` writes lines of the test's own into a direction, ``inject_before_next`` puts
    them in the same write as the next bytes forwarded (one read on the other end). With
    ``watch(key, cluster)`` the relay counts, per direction, the frames it delivered that
    decode with the key (``genuine``): it splits exactly the bytes the far end reads.
    """

    def __init__(self) -> None:
        self.m1, s1 = pty.openpty()
        self.m2, s2 = pty.openpty()
        for fd in (self.m1, self.m2, s1, s2):
            tty.setraw(fd)
        self.path1 = os.ttyname(s1)
        self.path2 = os.ttyname(s2)
        # Keep our slave ends open so the masters never see a hang-up when a node exits.
        self._slaves = (s1, s2)
        self.forward = {"1to2": True, "2to1": True}
        self.bytes = {"1to2": 0, "2to1": 0}
        self.genuine = {"1to2": 0, "2to1": 0}
        self.recent: dict[str, list[bytes]] = {"1to2": [], "2to1": []}
        self._prefix = {"1to2": b"", "2to1": b""}
        self._splitters: dict[str, Any] = {}
        self._watch: tuple[bytes, str] | None = None
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def cut(self, direction: str | None = None) -> None:
        for d in self.forward:
            if direction in (None, d):
                self.forward[d] = False

    def heal(self) -> None:
        for d in self.forward:
            self.forward[d] = True

    def watch(self, key: bytes, cluster: str) -> None:
        from supervisor.core import codec

        with self._lock:
            self._watch = (key, cluster)
            self._splitters = {d: codec.LineSplitter() for d in self.forward}

    def inject(self, direction: str, data: bytes) -> None:
        with self._lock:
            self._write(direction, data)

    def inject_before_next(self, direction: str, data: bytes) -> None:
        with self._lock:
            self._prefix[direction] += data

    def _write(self, direction: str, data: bytes) -> None:
        """Write to the far end of ``direction`` (caller holds the lock)."""
        dest = self.m2 if direction == "1to2" else self.m1
        with suppress(OSError):
            os.write(dest, data)
        if self._watch is None:
            return
        from supervisor.core import codec

        key, cluster = self._watch
        for line in self._splitters[direction].feed(data):
            try:
                codec.decode(line, key, cluster)
            except codec.DecodeError:
                continue
            self.genuine[direction] += 1
            self.recent[direction] = [*self.recent[direction][-199:], line.strip() + b"\n"]

    def _run(self) -> None:
        # A cable does not wait for a busy CPU: the relay thread runs realtime when it can
        # (root), so a loaded test machine does not delay the serial frames of a supervisor
        # that itself runs realtime.
        with suppress(OSError, AttributeError):
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(60))
        pairs = {self.m1: (self.m2, "1to2"), self.m2: (self.m1, "2to1")}
        while not self._stop:
            ready, _, _ = select.select(list(pairs), [], [], 0.1)
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    continue
                _dest, direction = pairs[fd]
                if data and self.forward[direction]:
                    self.bytes[direction] += len(data)
                    with self._lock:
                        data, self._prefix[direction] = self._prefix[direction] + data, b""
                        self._write(direction, data)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        for fd in (self.m1, self.m2, *self._slaves):
            with suppress(OSError):
                os.close(fd)


@dataclass
class NodeProc:
    name: str
    netns: str
    state_dir: Path
    config: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_pids: list[int] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [PYTHON, "-m", "supervisor", "status", "--json", "--state-dir", str(self.state_dir)],
            capture_output=True, text=True, cwd=REPO, timeout=10, check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"status of {self.name} failed: {out.stderr.strip()}")
        return dict(json.loads(out.stdout))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "supervisor", *args, "--state-dir", str(self.state_dir)],
            capture_output=True, text=True, cwd=REPO, timeout=20, check=False,
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Bed:
    """The namespaces, cables and supervisors of one test."""

    def __init__(self, workdir: Path, repo: Path = REPO) -> None:
        self.tag = f"tb{os.getpid() % 100000}"
        self.workdir = workdir
        #: the checkout whose supervisor runs (a benchmark may run an older one)
        self.repo = repo
        self.ns = {k: f"{self.tag}{k}" for k in ("n1", "n2", "cl", "sw")}
        self.modem: NullModem | None = None
        self.nodes: dict[str, NodeProc] = {}
        self.mac: dict[str, str] = {}
        self._cleanups: list[Callable[[], None]] = []

    # -- topology --------------------------------------------------------------------------

    def build(self) -> None:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            self._cleanups.append(self._deleter(ns))
            self.ip(ns, "link", "set", "lo", "up")
        sw = self.ns["sw"]
        self.ip(sw, "link", "add", "sw0", "type", "bridge", "stp_state", "0",
                "forward_delay", "0")
        self.ip(sw, "link", "set", "sw0", "up")
        public = {"n1": "192.168.85.1/24", "n2": "192.168.85.2/24", "cl": "192.168.85.100/24"}
        for i, (key, addr) in enumerate(public.items()):
            a, b = f"{self.tag}p{i}a", f"{self.tag}p{i}b"
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            sh("ip", "link", "set", a, "netns", self.ns[key])
            sh("ip", "link", "set", b, "netns", sw)
            self.ip(self.ns[key], "link", "set", a, "name", "eth0")
            self.ip(self.ns[key], "addr", "add", addr, "dev", "eth0")
            self.ip(self.ns[key], "link", "set", "eth0", "up")
            self.ip(sw, "link", "set", b, "master", "sw0")
            self.ip(sw, "link", "set", b, "up")
        a, b = f"{self.tag}xa", f"{self.tag}xb"
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        for dev, key, addr in ((a, "n1", "10.0.0.1/24"), (b, "n2", "10.0.0.2/24")):
            sh("ip", "link", "set", dev, "netns", self.ns[key])
            self.ip(self.ns[key], "link", "set", dev, "name", "eth1")
            self.ip(self.ns[key], "addr", "add", addr, "dev", "eth1")
            self.ip(self.ns[key], "link", "set", "eth1", "up")
        for key in ("n1", "n2", "cl"):
            self.mac[key] = self.link_mac(key, "eth0")
        self.modem = NullModem()
        self._cleanups.append(self.modem.close)

    @staticmethod
    def _deleter(ns: str) -> Callable[[], None]:
        def delete() -> None:
            sh("ip", "netns", "del", ns, check=False)

        return delete

    def ip(self, ns: str, *args: str) -> str:
        return sh("ip", "-n", ns, *args).stdout

    def link_mac(self, key: str, dev: str) -> str:
        info = json.loads(self.ip(self.ns[key], "-j", "link", "show", dev))
        return str(info[0]["address"])

    def run_in(self, key: str, *argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns[key], *argv],
                              capture_output=True, text=True, check=False, **kw)

    def neigh_mac(self, key: str, address: str) -> str | None:
        out = self.ip(self.ns[key], "-j", "neigh", "show", address)
        entries = json.loads(out) if out.strip() else []
        for e in entries:
            if e.get("lladdr") and "FAILED" not in e.get("state", []):
                return str(e["lladdr"])
        return None

    # -- supervisors ---------------------------------------------------------------------------

    def write_config(self, node: str, text: str, authkeys: str) -> Path:
        d = self.workdir / node
        d.mkdir(parents=True, exist_ok=True)
        keys = d / "authkeys"
        keys.write_text(authkeys)
        keys.chmod(0o600)
        cfg = d / "cluster.toml"
        cfg.write_text(text)
        return cfg

    def start(self, node: str, config: Path, *extra: str,
              prefix: tuple[str, ...] = (), python: str = PYTHON) -> NodeProc:
        """Start ``twinbeat run`` for ``node``; ``prefix`` wraps it (e.g. REALTIME);
        ``python`` runs it (this venv's interpreter unless a bench asks for another)."""
        key = "n1" if node == "node1" else "n2"
        state_dir = self.workdir / node / "state"
        state_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / node / "supervisor.log"
        handle = self.nodes.get(node) or NodeProc(node, self.ns[key], state_dir, config, log_path)
        handle.config = config
        logf = open(log_path, "ab")  # noqa: SIM115 - closed when the process is reaped
        env = dict(os.environ, PYTHONPATH=str(self.repo), PYTHONUNBUFFERED="1")
        handle.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[key], *prefix, python, "-m", "supervisor", "run",
             "--config", str(config), "--node", node, "--state-dir", str(state_dir), *extra],
            stdout=logf, stderr=subprocess.STDOUT, cwd=self.repo, env=env,
            start_new_session=True,
        )
        logf.close()
        self.nodes[node] = handle
        return handle

    def pids_of(self, node: str) -> list[int]:
        """Every process of a node: all processes in its network namespace."""
        key = "n1" if node == "node1" else "n2"
        out = sh("ip", "netns", "pids", self.ns[key], check=False).stdout
        return [int(p) for p in out.split()]

    def freeze_and_kill(self, node: str) -> float:
        """A node dies: freeze it, take its links down, silence its serial end, then SIGKILL.

        Returns the monotonic time of the freeze (the moment it stopped sending).
        """
        key = "n1" if node == "node1" else "n2"
        pids = self.pids_of(node)
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        t = time.monotonic()
        for dev in ("eth0", "eth1"):
            self.ip(self.ns[key], "link", "set", dev, "down")
        assert self.modem is not None
        self.modem.cut("1to2" if node == "node1" else "2to1")
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        handle = self.nodes[node]
        if handle.proc is not None:
            handle.proc.wait(timeout=10)
        return t

    def revive_links(self, node: str) -> None:
        key = "n1" if node == "node1" else "n2"
        for dev in ("eth0", "eth1"):
            self.ip(self.ns[key], "link", "set", dev, "up")
        assert self.modem is not None
        self.modem.heal()

    def stop(self, node: str, timeout: float = 20.0) -> int | None:
        handle = self.nodes.get(node)
        if handle is None or handle.proc is None or handle.proc.poll() is not None:
            return None if handle is None or handle.proc is None else handle.proc.returncode
        handle.proc.send_signal(signal.SIGTERM)
        try:
            return handle.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_session(handle)
            return None

    def _kill_session(self, handle: NodeProc) -> None:
        if handle.proc is None:
            return
        for pid in self.pids_of(handle.name):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            handle.proc.wait(timeout=5)

    def close(self) -> None:
        for handle in self.nodes.values():
            if handle.proc is not None and handle.proc.poll() is None:
                self._kill_session(handle)
            for pid in handle.extra_pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for cleanup in reversed(self._cleanups):
            with suppress(Exception):
                cleanup()

    # -- waiting -------------------------------------------------------------------------------

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float,
                 interval: float = 0.05) -> float:
        t0 = time.monotonic()
        last_exc: Exception | None = None
        while time.monotonic() - t0 < timeout:
            try:
                if predicate():
                    return time.monotonic() - t0
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                last_exc = exc
            time.sleep(interval)
        logs = "\n".join(f"--- {n} ---\n{h.log()[-4000:]}" for n, h in self.nodes.items())
        raise AssertionError(f"timed out after {timeout} s waiting for {what} "
                             f"(last error: {last_exc})\n{logs}")


@contextmanager
def bed(workdir: Path, repo: Path = REPO) -> Iterator[Bed]:
    b = Bed(workdir, repo)
    try:
        b.build()
        yield b
    finally:
        b.close()


def cluster_config(bed: Bed, node: str, *, resources: list[str], keepalive: str = "100ms",
                   deadtime: str = "500ms", failback: bool = True, extra_group: str = "",
                   ping: bool = True, watchdog: str = "off", ping_timeout: str = "2s",
                   monitor_interval: str = "1s") -> str:
    """The configuration of ``node`` in the test bed (both nodes get the same except peers)."""
    assert bed.modem is not None
    peer = "2" if node == "node1" else "1"
    device = bed.modem.path1 if node == "node1" else bed.modem.path2
    res = ", ".join(json.dumps(r) for r in resources)
    ping_line = (f'ping_nodes = ["192.168.85.100"]\nping_timeout = "{ping_timeout}"\n'
                 if ping else "")
    return f"""
[cluster]
name = "nstest"
authkeys = "authkeys"
auto_failback = {str(failback).lower()}
public_interface = "eth0"
{ping_line}
[timing]
keepalive = "{keepalive}"
deadtime = "{deadtime}"
initdead = "3s"

[watchdog]
mode = "{watchdog}"

[takeover]
garp_count = 3
garp_interval = "100ms"
garp_repeat_delay = "1s"

[[node]]
name = "node1"
address = "192.168.85.1"
crossover_address = "10.0.0.1"

[[node]]
name = "node2"
address = "192.168.85.2"
crossover_address = "10.0.0.2"

[[link]]
name = "serial"
type = "serial"
device = "{device}"
baud = 115200

[[link]]
name = "crossover"
type = "udp"
interface = "eth1"
peer = "10.0.0.{peer}"

[[link]]
name = "public"
type = "udp"
interface = "eth0"
peer = "192.168.85.{peer}"

[[group]]
name = "web"
preferred = "node1"
resources = [{res}]
monitor_interval = "{monitor_interval}"
{extra_group}
"""


AUTHKEYS = "auth 1\n1 sha256 namespace-test-secret-0123456789\n"
