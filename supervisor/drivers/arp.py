"""Gratuitous ARP, unsolicited neighbour advertisements and ARP duplicate probes.

Frames are built here (pure functions, tested byte for byte) and sent on an ``AF_PACKET`` raw
socket from the standard library. Why a raw socket and not ``arping``: a takeover sends two
bursts of two frames each, plus an optional refresh forever; forking a process per packet costs
milliseconds and can fail when the machine is short of memory, exactly when a takeover happens.
keepalived sends its gratuitous ARPs and NAs the same way (``vrrp_arp.c``, ``vrrp_ndisc.c``).

Frame forms (RFC 5227 and what Linux accepts as gratuitous, ``arp_is_garp()``):

* announcement request: op 1, sender = target = the address, target MAC zero;
* announcement reply:   op 2, sender = target = the address, target MAC = sender MAC
  (Linux treats a reply as gratuitous only when both MACs are equal; ``arping -A`` does this);
* probe (DAD):          op 1, sender address 0.0.0.0, target = the address;
* IPv6: an unsolicited neighbour advertisement (ICMPv6 136) from the address to ff02::1 with
  the override flag and the target link-layer address option, hop limit 255.

All Ethernet frames are padded to the 60-byte minimum.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from supervisor.config import TakeoverConfig

log = logging.getLogger("twinbeat.arp")

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ARPHRD_ETHER = 1
ICMPV6_NEIGHBOR_ADVERTISEMENT = 136
ND_OPT_TARGET_LINKADDR = 2
NA_FLAG_OVERRIDE = 0x20000000
PACKET_OUTGOING = 4
ETH_MIN_FRAME = 60

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"


def mac_bytes(mac: str) -> bytes:
    """``"02:00:5e:10:00:01"`` -> 6 bytes."""
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def format_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _pad(frame: bytes) -> bytes:
    return frame + b"\x00" * max(0, ETH_MIN_FRAME - len(frame))


def ethernet_header(dst: bytes, src: bytes, ethertype: int) -> bytes:
    return dst + src + struct.pack("!H", ethertype)


def arp_frame(
    op: int,
    *,
    src_mac: bytes,
    sender_ip: ipaddress.IPv4Address,
    target_mac: bytes,
    target_ip: ipaddress.IPv4Address,
    eth_dst: bytes = BROADCAST_MAC,
) -> bytes:
    payload = struct.pack(
        "!HHBBH6s4s6s4s",
        ARPHRD_ETHER,
        ETH_P_IP,
        6,
        4,
        op,
        src_mac,
        sender_ip.packed,
        target_mac,
        target_ip.packed,
    )
    return _pad(ethernet_header(eth_dst, src_mac, ETH_P_ARP) + payload)


def garp_request(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    return arp_frame(
        ARPOP_REQUEST, src_mac=mac, sender_ip=address, target_mac=ZERO_MAC, target_ip=address
    )


def garp_reply(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    return arp_frame(
        ARPOP_REPLY, src_mac=mac, sender_ip=address, target_mac=mac, target_ip=address
    )


def arp_probe(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    return arp_frame(
        ARPOP_REQUEST,
        src_mac=mac,
        sender_ip=ipaddress.IPv4Address(0),
        target_mac=ZERO_MAC,
        target_ip=address,
    )


@dataclass(frozen=True)
class ArpPacket:
    eth_src: bytes
    op: int
    sender_mac: bytes
    sender_ip: ipaddress.IPv4Address
    target_mac: bytes
    target_ip: ipaddress.IPv4Address


def parse_arp(frame: bytes) -> ArpPacket | None:
    """Decode an Ethernet/IPv4 ARP frame; None for anything else."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack(
        "!HHBBH6s4s6s4s", frame[14:42]
    )
    if htype != ARPHRD_ETHER or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return None
    return ArpPacket(
        frame[6:12],
        op,
        sha,
        ipaddress.IPv4Address(spa),
        tha,
        ipaddress.IPv4Address(tpa),
    )


def icmpv6_checksum(
    src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, payload: bytes
) -> int:
    """RFC 4443 checksum over the IPv6 pseudo-header and the ICMPv6 message."""
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(payload), socket.IPPROTO_ICMPV6)
    data = pseudo + payload
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unsolicited_na(mac: bytes, address: ipaddress.IPv6Address) -> bytes:
    """An unsolicited neighbour advertisement for ``address`` to all nodes (override set)."""
    option = struct.pack("!BB6s", ND_OPT_TARGET_LINKADDR, 1, mac)
    body = struct.pack("!I16s", NA_FLAG_OVERRIDE, address.packed) + option
    unchecked = struct.pack("!BBH", ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0) + body
    checksum = icmpv6_checksum(address, ALL_NODES, unchecked)
    icmp = struct.pack("!BBH", ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, checksum) + body
    ipv6 = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(icmp),
        socket.IPPROTO_ICMPV6,
        255,
        address.packed,
        ALL_NODES.packed,
    )
    return _pad(ethernet_header(ALL_NODES_MAC, mac, ETH_P_IPV6) + ipv6 + icmp)


def announcement_frames(mac: bytes, address: ipaddress.IPv4Address | ipaddress.IPv6Address
                        ) -> list[tuple[bytes, int]]:
    """One announcement round: (frame, ethertype) pairs."""
    if isinstance(address, ipaddress.IPv4Address):
        return [(garp_request(mac, address), ETH_P_ARP), (garp_reply(mac, address), ETH_P_ARP)]
    return [(unsolicited_na(mac, address), ETH_P_IPV6)]


# --------------------------------------------------------------------------------------------
# Sending


class FrameSender(Protocol):
    def send(self, frame: bytes, ethertype: int) -> None: ...

    def close(self) -> None: ...


class PacketSocketSender:
    """Sends whole Ethernet frames on one interface (AF_PACKET, SOCK_RAW)."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self._sock.setblocking(False)

    def send(self, frame: bytes, ethertype: int) -> None:
        self._sock.sendto(frame, (self.ifname, ethertype))

    def close(self) -> None:
        self._sock.close()


SenderFactory = Callable[[str], FrameSender]


class Announcer:
    """Gratuitous ARP / unsolicited NA for one held address.

    ``start()`` sends the first round at once (synchronously) and leaves the rest to a task:
    the remainder of a burst of ``garp_count`` rounds at ``garp_interval``, a second burst after
    ``garp_repeat_delay`` (0 = none), then one round every ``garp_refresh`` (0 = never) until
    ``stop()``. A round is an ARP request and an ARP reply (IPv4) or one NA (IPv6). Send errors
    are logged and do not stop the announcer.
    """

    def __init__(
        self,
        ifname: str,
        mac: bytes,
        address: ipaddress.IPv4Address | ipaddress.IPv6Address,
        takeover: TakeoverConfig,
        sender_factory: SenderFactory = PacketSocketSender,
    ) -> None:
        self.ifname = ifname
        self.mac = mac
        self.address = address
        self.takeover = takeover
        self._factory = sender_factory
        self._sender: FrameSender | None = None
        self._task: asyncio.Task[None] | None = None
        self.rounds_sent = 0
        self.frames_sent = 0
        self.send_errors = 0
        self.first_sent_at: float | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def send_round(self) -> None:
        if self._sender is None:
            self._sender = self._factory(self.ifname)
        for frame, ethertype in announcement_frames(self.mac, self.address):
            try:
                self._sender.send(frame, ethertype)
                self.frames_sent += 1
            except OSError as exc:
                self.send_errors += 1
                log.warning(
                    "cannot announce %s on %s: %s", self.address, self.ifname, exc.strerror
                )
        self.rounds_sent += 1

    def start(self) -> None:
        """Send the first round now; schedule the rest. Needs a running event loop."""
        if self.running:
            return
        if self.takeover.garp_count <= 0 and self.takeover.garp_refresh <= 0:
            return
        try:
            if self.takeover.garp_count > 0:
                self.first_sent_at = time.monotonic()
                self.send_round()
        except OSError as exc:  # cannot even open the socket
            log.warning("cannot announce %s on %s: %s", self.address, self.ifname, exc)
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"announce {self.address}"
        )

    async def _run(self) -> None:
        t = self.takeover
        try:
            for _ in range(t.garp_count - 1):
                await asyncio.sleep(t.garp_interval)
                self.send_round()
            if t.garp_repeat_delay > 0 and t.garp_count > 0:
                await asyncio.sleep(t.garp_repeat_delay)
                for i in range(t.garp_count):
                    if i:
                        await asyncio.sleep(t.garp_interval)
                    self.send_round()
            while t.garp_refresh > 0:
                await asyncio.sleep(t.garp_refresh)
                self.send_round()
        finally:
            self._close_sender()

    def _close_sender(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(OSError):
                self._sender.close()
            self._sender = None

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._close_sender()


# --------------------------------------------------------------------------------------------
# Duplicate address detection (IPv4)


def conflicting_mac(
    packet: ArpPacket, address: ipaddress.IPv4Address, own_mac: bytes
) -> bytes | None:
    """The MAC of another host that claims ``address`` in this ARP packet, if any (RFC 5227:
    any ARP with the address as sender, or a probe for it from someone else)."""
    if packet.sender_mac == own_mac:
        return None
    if packet.sender_ip == address:
        return packet.sender_mac
    if (
        packet.op == ARPOP_REQUEST
        and packet.sender_ip == ipaddress.IPv4Address(0)
        and packet.target_ip == address
    ):
        return packet.sender_mac
    return None


async def probe_ipv4(
    ifname: str,
    mac: bytes,
    address: ipaddress.IPv4Address,
    *,
    probes: int = 3,
    interval: float = 0.2,
    wait: float = 0.6,
) -> bytes | None:
    """Send ARP probes for ``address`` on ``ifname``; return the MAC of a host that answers for
    it (or probes for it at the same time), or None when nobody does. Raises OSError when the
    interface cannot be used."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        sock.bind((ifname, ETH_P_ARP))
        sock.setblocking(False)
        frame = arp_probe(mac, address)
        start = loop.time()
        sends = [start + i * interval for i in range(max(1, probes))]
        deadline = sends[-1] + wait
        while True:
            now = loop.time()
            while sends and sends[0] <= now:
                sends.pop(0)
                sock.sendto(frame, (ifname, ETH_P_ARP))
            until = min(sends[0] if sends else deadline, deadline)
            if now >= deadline:
                return None
            try:
                data, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), until - now)
            except TimeoutError:
                continue
            if len(addr) > 2 and addr[2] == PACKET_OUTGOING:
                continue
            packet = parse_arp(data)
            if packet is None:
                continue
            other = conflicting_mac(packet, address, mac)
            if other is not None:
                return other
    finally:
        sock.close()
