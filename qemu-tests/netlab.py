"""The public LAN of a QEMU pair and the observer that sits on it.

A network namespace made by the harness (its name includes our PID) holds a Linux bridge, one
tap device per VM and the observer's address on the bridge (the nodes' gateway and ping
node). Both QEMU processes run inside the namespace (``ip netns exec``), so their tap devices
are there and their null-modem and crossover links use the namespace's own loopback.

The observer works from threads that entered the namespace (``setns`` changes the network
namespace of the calling thread only, so the rest of the harness stays where it is):

* ``http_get``: one HTTP request to the floating address, the answer names the node;
* ``ArpSampler``: an ARP request for the floating address every 50 ms, each from its own
  source MAC address, so every reply names the probe it answers even when it arrives late;
  a probe answered by two MAC addresses is a moment where both nodes claimed the address;
* ``ping``, ``neighbour``: the kernel's view from the observer's side.

Everything is removed by ``close()`` (also from an atexit hook): the namespace, and with it
the bridge and the taps.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import http.client
import ipaddress
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.drivers.arp import (
    ARPOP_REPLY,
    ARPOP_REQUEST,
    BROADCAST_MAC,
    ETH_P_ARP,
    ZERO_MAC,
    arp_frame,
    format_mac,
    parse_arp,
)

CLONE_NEWNET = 0x40000000
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
# Probes come from 02:74:62:00:HH:LL (locally administered; HHLL = the probe's number).
PROBE_MAC_PREFIX = bytes.fromhex("02746200")

T = TypeVar("T")

_open_labs: list[Lab] = []


def _close_all() -> None:
    for lab in list(_open_labs):
        lab.close()


atexit.register(_close_all)


class LabError(RuntimeError):
    pass


def sh(*argv: str, check: bool = True) -> str:
    r = subprocess.run(argv, check=False, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass
class Lab:
    """The namespace, its bridge, the taps and the observer address."""

    observer: ipaddress.IPv4Interface
    taps: tuple[str, ...] = ("tap1", "tap2")
    name: str = field(default_factory=lambda: f"tbq{os.getpid()}")
    bridge: str = "br0"
    _pool: ThreadPoolExecutor | None = None
    _closed: bool = False

    def __post_init__(self) -> None:
        _open_labs.append(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        if Path(f"/run/netns/{self.name}").exists():
            # A former run of this PID number that died without cleaning up: ours to reuse.
            sh("ip", "netns", "del", self.name, check=False)
        sh("ip", "netns", "add", self.name)
        ip = ("ip", "-n", self.name)
        sh(*ip, "link", "set", "lo", "up")
        sh(*ip, "link", "add", self.bridge, "type", "bridge", "stp_state", "0",
           "forward_delay", "0", "mcast_snooping", "0")
        for tap in self.taps:
            sh(*ip, "tuntap", "add", "dev", tap, "mode", "tap")
            sh(*ip, "link", "set", tap, "master", self.bridge)
            sh(*ip, "link", "set", tap, "up")
        sh(*ip, "addr", "add", str(self.observer), "dev", self.bridge)
        sh(*ip, "link", "set", self.bridge, "up")
        # The observer notices a moved address from gratuitous ARPs (arp_accept is not
        # needed to update an existing entry) and re-resolves a stale one quickly.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{self.name}-obs",
                                        initializer=_enter_netns, initargs=(self.name,))

    @property
    def wrapper(self) -> list[str]:
        """Command prefix that runs a program (QEMU) inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def run(self, func: Callable[[], T], timeout: float | None = None) -> T:
        """Call func on a thread inside the namespace and return its result."""
        if self._pool is None:
            raise LabError("the lab is closed")
        return self._pool.submit(func).result(timeout=timeout)

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        """A daemon thread that runs target inside the namespace (not started)."""

        def body() -> None:
            _enter_netns(self.name)
            target()

        return threading.Thread(target=body, name=name, daemon=True)

    def http_get(self, address: str, timeout: float = 2.0, *, port: int = 80,
                 path: str = "/") -> str | None:
        """The body of GET http://address:port/path seen from the observer, or None (no
        answer)."""

        def get() -> str | None:
            conn = http.client.HTTPConnection(address, port, timeout=timeout)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace")
                return body if resp.status == 200 else None
            except (OSError, http.client.HTTPException):
                return None
            finally:
                conn.close()

        return self.run(get, timeout=timeout + 10)

    def ping(self, address: str, timeout: float = 2.0) -> bool:
        r = subprocess.run([*self.wrapper, "ping", "-n", "-q", "-c", "1", "-W",
                            str(max(1, round(timeout))), address],
                           capture_output=True, text=True, check=False)
        return r.returncode == 0

    def neighbour(self, address: str) -> str | None:
        """The observer's neighbour entry for address: 'MAC STATE' or None."""
        out = sh("ip", "-n", self.name, "neigh", "show", address, check=False).strip()
        return out or None

    def tap_of(self, index: int) -> str:
        return self.taps[index]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        sh("ip", "netns", "del", self.name, check=False)
        if self in _open_labs:
            _open_labs.remove(self)


# --------------------------------------------------------------------------------------------
# ARP sampling


@dataclass(frozen=True)
class Reply:
    probe: int
    mac: str
    t: float  # time.monotonic() on the host


@dataclass(frozen=True)
class Announcement:
    mac: str
    t: float


class ArpSampler:
    """Ask "who has ADDRESS" every `interval` from the observer; record who answers.

    Each probe has its own source MAC (the probe number in its last two bytes); a guest
    replies to that MAC, so a late reply still names its probe. The bridge is put in
    promiscuous mode while sampling so that those replies reach our packet socket.
    """

    def __init__(self, lab: Lab, address: str, sender_ip: str, interval: float = 0.05) -> None:
        self.lab = lab
        self.address = ipaddress.IPv4Address(address)
        self.sender_ip = ipaddress.IPv4Address(sender_ip)
        self.interval = interval
        self.sent: dict[int, float] = {}
        self.replies: list[Reply] = []
        self.announcements: list[Announcement] = []
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._error: BaseException | None = None

    def __enter__(self) -> ArpSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        def open_socket() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            s.bind((self.lab.bridge, 0))
            ifindex = socket.if_nametoindex(self.lab.bridge)
            mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            s.settimeout(0.2)
            return s

        self._sock = self.lab.run(open_socket, timeout=10)
        self._threads = [self.lab.thread(self._send_loop, "arp-send"),
                         self.lab.thread(self._recv_loop, "arp-recv")]
        for t in self._threads:
            t.start()

    def _send_loop(self) -> None:
        assert self._sock is not None
        seq = 0
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                seq = (seq + 1) & 0xFFFF
                mac = PROBE_MAC_PREFIX + struct.pack("!H", seq)
                frame = arp_frame(ARPOP_REQUEST, src_mac=mac, sender_ip=self.sender_ip,
                                  target_mac=ZERO_MAC, target_ip=self.address,
                                  eth_dst=BROADCAST_MAC)
                with self._lock:
                    self.sent[seq] = time.monotonic()
                self._sock.send(frame)
                next_at += self.interval
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as e:  # reported by stop()
            self._error = e

    def _recv_loop(self) -> None:
        assert self._sock is not None
        try:
            while not self._stop.is_set():
                try:
                    frame = self._sock.recv(2048)
                except TimeoutError:
                    continue
                now = time.monotonic()
                pkt = parse_arp(frame)
                if pkt is None or pkt.sender_ip != self.address:
                    continue
                mac = format_mac(pkt.sender_mac)
                if pkt.op == ARPOP_REPLY and pkt.target_mac[:4] == PROBE_MAC_PREFIX:
                    probe = struct.unpack("!H", pkt.target_mac[4:6])[0]
                    with self._lock:
                        self.replies.append(Reply(probe, mac, now))
                elif pkt.target_ip == self.address:
                    # gratuitous ARP (request or reply announcing the address)
                    with self._lock:
                        self.announcements.append(Announcement(mac, now))
        except BaseException as e:  # reported by stop()
            self._error = e

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._error is not None:
            raise LabError(f"ARP sampler failed: {self._error!r}")

    # -- reading the samples ---------------------------------------------------------------

    def snapshot(self) -> tuple[dict[int, float], list[Reply]]:
        with self._lock:
            return dict(self.sent), list(self.replies)

    def answers_by_probe(self) -> dict[int, set[str]]:
        out: dict[int, set[str]] = {}
        for r in self.snapshot()[1]:
            out.setdefault(r.probe, set()).add(r.mac)
        return out

    def double_answers(self) -> list[tuple[int, set[str]]]:
        """Probes answered by more than one MAC address (both nodes claimed the address)."""
        return sorted((p, macs) for p, macs in self.answers_by_probe().items() if len(macs) > 1)

    def first_reply_from(self, mac: str, after: float = 0.0) -> float | None:
        times = [r.t for r in self.snapshot()[1] if r.mac == mac and r.t >= after]
        return min(times) if times else None

    def timeline(self, names: dict[str, str]) -> list[tuple[str, int]]:
        """Who answered, probe after probe, as runs: [("node1", 120), ("nobody", 40), ...];
        a probe answered by both reads "node1+node2"."""
        sent, replies = self.snapshot()
        by_probe: dict[int, set[str]] = {}
        for r in replies:
            by_probe.setdefault(r.probe, set()).add(names.get(r.mac, r.mac))
        runs: list[tuple[str, int]] = []
        for probe in sorted(sent, key=lambda p: sent[p]):
            who = "+".join(sorted(by_probe.get(probe, ()))) or "nobody"
            if runs and runs[-1][0] == who:
                runs[-1] = (who, runs[-1][1] + 1)
            else:
                runs.append((who, 1))
        return runs

    def summary(self, names: dict[str, str]) -> str:
        """e.g. 'ARP: node1 x120, nobody x40, node2 x250 (410 probes, 0 answered by both)'."""
        runs = self.timeline(names)
        text = [f"{who} x{n}" for who, n in runs]
        if len(text) > 9:
            text = [*text[:4], f"... {len(text) - 8} more runs ...", *text[-4:]]
        both = len(self.double_answers())
        return (f"ARP: {', '.join(text) or 'no probes'} ({sum(n for _, n in runs)} probes, "
                f"{both} answered by both)")
