"""Network namespaces for tests: a bridge in its own namespace and nodes joined by veth.

Names include the test process's PID so parallel runs do not collide; everything is removed
on exit (helpers killed by PID, then the namespaces deleted, which removes their links).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
HELPER = Path(__file__).resolve().parent / "netns_agent_helper.py"


def sh(*argv: str, check: bool = True) -> str:
    r = subprocess.run(argv, check=False, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


class Helper:
    """An agent helper process running inside one namespace."""

    def __init__(self, netns: str, takeover: dict[str, Any] | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), TB_TAKEOVER=json.dumps(takeover or {}))
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, str(HELPER)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )

    def cmd(self, timeout: float = 15.0, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"helper did not answer {command} within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"helper exited ({self.proc.poll()}) on {command}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.cmd(op="quit", timeout=5)
                self.proc.wait(5)
            except (OSError, TimeoutError, RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class Lan:
    """A bridge (namespace ``sw``) with nodes attached; each node has ``eth0``."""

    def __init__(self, tag: str = "") -> None:
        self.prefix = f"tb{os.getpid()}{tag}"
        self.namespaces: list[str] = []
        self.helpers: list[Helper] = []
        self.macs: dict[str, str] = {}
        try:
            self.sw = self._netns("sw")
            sh("ip", "-n", self.sw, "link", "add", "br0", "type", "bridge", "stp_state", "0",
               "forward_delay", "0", "mcast_snooping", "0")
            sh("ip", "-n", self.sw, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _netns(self, name: str) -> str:
        full = f"{self.prefix}{name}"
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def node(self, name: str, mac: str, v4: str, v6: str) -> str:
        ns = self._netns(name)
        port = f"p{len(self.namespaces)}"
        sh("ip", "link", "add", "eth0", "netns", ns, "address", mac, "type", "veth",
           "peer", "name", port, "netns", self.sw)
        sh("ip", "-n", self.sw, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", v4, "dev", "eth0")
        sh("ip", "-n", ns, "-6", "addr", "add", v6, "dev", "eth0", "nodad")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        self.macs[ns] = mac
        return ns

    def helper(self, ns: str, takeover: dict[str, Any] | None = None) -> Helper:
        h = Helper(ns, takeover)
        self.helpers.append(h)
        return h

    def close(self) -> None:
        for h in self.helpers:
            h.close()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_PROBE = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[2]))
s.connect((sys.argv[1], 9))
s.send(b"twinbeat probe")
try:
    s.recv(100)
except ConnectionRefusedError:
    sys.exit(0)  # ICMP port unreachable: the host that holds the address answered
except TimeoutError:
    sys.exit(1)
sys.exit(0)
"""


def udp_probe(ns: str, address: str, timeout: float = 2.0) -> bool:
    """Send one UDP datagram from ``ns`` to ``address`` (the discard port) and report whether
    a host answered (ICMP port unreachable). Resolves the neighbour entry on the way, like one
    ping, without needing ping installed."""
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", _PROBE, address,
                        str(timeout)], check=False, capture_output=True, text=True)
    return r.returncode == 0


def neighbour_mac(ns: str, address: str) -> str | None:
    entries = json.loads(sh("ip", "-n", ns, "-j", "neigh", "show", "to", address) or "[]")
    for e in entries:
        if e.get("dst") == address and "lladdr" in e:
            return str(e["lladdr"])
    return None


def addresses(ns: str) -> list[dict[str, Any]]:
    """addr_info entries on eth0 (with "local", "prefixlen", "label", "broadcast")."""
    data = json.loads(sh("ip", "-n", ns, "-j", "addr", "show", "dev", "eth0"))
    return [info for link in data for info in link.get("addr_info", [])]


def wait_for(predicate: Any, timeout: float, interval: float = 0.01) -> float | None:
    """Seconds until predicate() was true, or None on timeout."""
    t0 = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(interval)
