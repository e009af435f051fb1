"""The supervisor's rtnetlink requests (pyroute2, and the standard library's socket for the
address dumps: supervisor.drivers.netlink) agree with iproute2's ``ip -j`` on this host;
pyroute2 is loaded lean and only on first use; one socket of each kind serves every request
(the address add/delete requests are exercised for real in tests/test_netns_ipaddr.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.drivers.ipaddr import Netlink
from supervisor.drivers.netlink import Rtnetlink

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def rtnl() -> Iterator[Rtnetlink]:
    r = Rtnetlink()
    yield r
    r.close()


def ip_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True)
    return list(json.loads(out.stdout))


def test_links_match_ip_link(rtnl: Rtnetlink) -> None:
    expected = {(int(str(e["ifindex"])), str(e["ifname"]), e.get("address"))
                for e in ip_json("link", "show")}
    got = set(rtnl.links())
    assert {(i, n) for i, n, _ in got} == {(i, n) for i, n, _ in expected}
    for index, _name, mac in got:
        want = next(m for i, _n, m in expected if i == index)
        if want not in (None, "00:00:00:00:00:00") or mac not in (None, "00:00:00:00:00:00"):
            assert mac == want


def _ip_addresses(flag: str, family: int, *dev: str) -> set[tuple[int, str, int, str | None]]:
    expected = set()
    for link in ip_json(flag, "addr", "show", *dev):
        for a in link.get("addr_info", []):  # type: ignore[attr-defined]
            expected.add((int(str(link["ifindex"])), a["local"], int(a["prefixlen"]),
                          a.get("label") if family == socket.AF_INET else None))
    return expected


@pytest.mark.parametrize(("family", "flag"), [(socket.AF_INET, "-4"), (socket.AF_INET6, "-6")])
def test_addresses_match_ip_addr(rtnl: Rtnetlink, family: int, flag: str) -> None:
    got = {(i, a, p, label) for i, a, p, label, _flags in rtnl.addresses(family)}
    assert got == _ip_addresses(flag, family)
    assert got, "this host has no address to compare (loopback is always there)"


#: the flags of an address (linux/if_addr.h) as ``ip -j`` shows them
IP_FLAGS = {"secondary": 0x01, "nodad": 0x02, "optimistic": 0x04, "dadfailed": 0x08,
            "deprecated": 0x20, "tentative": 0x40, "mngtmpaddr": 0x100,
            "noprefixroute": 0x200, "autojoin": 0x400, "stable-privacy": 0x800}
IFA_F_PERMANENT = 0x80


@pytest.mark.parametrize(("family", "flag"), [(socket.AF_INET, "-4"), (socket.AF_INET6, "-6")])
def test_address_flags_match_ip_addr(rtnl: Rtnetlink, family: int, flag: str) -> None:
    expected = {}
    for link in ip_json(flag, "addr", "show"):
        for a in link.get("addr_info", []):  # type: ignore[attr-defined]
            bits = sum(v for k, v in IP_FLAGS.items() if a.get(k)) | (
                0 if a.get("dynamic") else IFA_F_PERMANENT)
            if family == socket.AF_INET6 and a.get("temporary"):
                bits |= 0x01  # IFA_F_TEMPORARY is IFA_F_SECONDARY's bit
            expected[(int(str(link["ifindex"])), a["local"])] = bits
    mask = IFA_F_PERMANENT | sum(IP_FLAGS.values())
    got = {(i, a): flags & mask for i, a, _p, _label, flags in rtnl.addresses(family)}
    assert got == expected


def test_a_dump_the_kernel_refuses_is_an_oserror_and_the_socket_still_serves(
        rtnl: Rtnetlink) -> None:
    gone = max(i for i, _name in socket.if_nameindex()) + 1000
    try:
        got = rtnl.addresses(socket.AF_INET, gone)
    except OSError as exc:  # a kernel that checks the request strictly: no such device
        assert exc.errno == 19, exc  # ENODEV
    else:  # (an older one filters nothing: every address, none of that interface)
        assert all(i != gone for i, *_rest in got)
    assert rtnl.addresses(socket.AF_INET, socket.if_nametoindex("lo"))


def test_addresses_of_one_interface(rtnl: Rtnetlink) -> None:
    lo = socket.if_nametoindex("lo")
    got = {(i, a, p, label) for i, a, p, label, _flags in rtnl.addresses(socket.AF_INET, lo)}
    assert got == _ip_addresses("-4", socket.AF_INET, "dev", "lo")
    assert {i for i, *_rest in got} == {lo}
    entries = Netlink(rtnl).addresses(socket.AF_INET, lo)
    assert {(e.interface, str(e.address)) for e in entries} >= {("lo", "127.0.0.1")}


def test_main_table_routes_match_ip_route(rtnl: Rtnetlink) -> None:
    names = {index: name for index, name, _mac in rtnl.links()}
    expected = set()
    for r in ip_json("-4", "route", "show", "table", "main"):
        if r.get("type", "unicast") != "unicast" or "dev" not in r:
            continue
        dst = "0.0.0.0/0" if r["dst"] == "default" else str(r["dst"])
        if "/" not in dst:
            dst += "/32"
        expected.add((dst, r["dev"], r.get("gateway")))
    got = {(str(route.destination), route.interface,
            None if route.gateway is None else str(route.gateway))
           for route in Netlink(rtnl).routes(socket.AF_INET)}
    assert got == expected
    assert all(iface in names.values() for _d, iface, _g in got)


def test_a_kernel_refusal_is_an_oserror_with_its_text(rtnl: Rtnetlink) -> None:
    lo = socket.if_nametoindex("lo")
    with pytest.raises(OSError) as info:  # EPERM as a user, EADDRNOTAVAIL as root
        rtnl.change_address(False, socket.AF_INET, lo, "127.255.255.254", 32)
    assert info.value.args[1] in ("Operation not permitted", "Cannot assign requested address")
    assert rtnl.addresses(socket.AF_INET, lo)  # the socket still serves after a refusal


def _sockets() -> int:
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            fds += 1
    return fds


def test_one_socket_of_each_kind_serves_every_request(rtnl: Rtnetlink) -> None:
    rtnl.links()
    rtnl.addresses(socket.AF_INET, 1)
    opened = _sockets()
    for _ in range(20):
        rtnl.addresses(socket.AF_INET, 1)
        rtnl.links()
    assert _sockets() == opened
    rtnl.close()
    assert _sockets() == opened - 2  # pyroute2's and the address dumps'
    assert rtnl.links()  # opens a new one
    assert _sockets() == opened - 1
    assert rtnl.addresses(socket.AF_INET, 1)
    assert _sockets() == opened


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


@pytest.mark.slow  # a fresh interpreter that imports the supervisor and pyroute2
def test_pyroute2_is_imported_on_first_request_and_lean() -> None:
    out = _run(
        "import sys\n"
        "import supervisor.loop, supervisor.cli, supervisor.drivers.agents\n"
        "print('before', 'pyroute2' in sys.modules)\n"
        "from supervisor.drivers.netlink import RTNL\n"
        "print('import', 'pyroute2' in sys.modules)\n"
        "RTNL.links()\n"
        "print('used', 'pyroute2' in sys.modules, 'pyroute2.ndb' in sys.modules,"
        " 'pyroute2.iproute' in sys.modules)\n"
        "from pyroute2 import IPRoute\n"  # a later plain use still gets the whole library
        "with IPRoute() as ipr: print('whole', len(ipr.get_links()) == len(RTNL.links()),"
        " 'pyroute2.ndb' in sys.modules)\n"
    )
    assert out.splitlines() == ["before False", "import False", "used True False False",
                                "whole True True"]


def test_own_addresses_agree_with_ip_addr() -> None:
    """The start-up check for links whose peer is this host (without rtnetlink)."""
    import ipaddress

    from supervisor.drivers.netif import own_addresses

    host, others = set(), set()
    for link in ip_json("addr", "show"):
        for a in link.get("addr_info", []):  # type: ignore[attr-defined]
            host.add(ipaddress.ip_address(a["local"]))
            if a.get("broadcast"):
                others.add(ipaddress.ip_address(a["broadcast"]))
    others |= {ipaddress.ip_address(t) for t in
               ("127.0.0.5", "224.0.0.1", "255.255.255.255", "192.0.2.77", "2001:db8::77")}
    assert host, "this host has no address to compare (loopback is always there)"
    assert own_addresses(host | others) == host


def test_own_ipv6_addresses_include_tentative_ones(tmp_path: Path) -> None:
    import ipaddress

    from supervisor.drivers.netif import own_addresses

    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "if_inet6").write_text(
        "fd000251000000000000000000000050 03 40 00 40     eth0\n"  # tentative (0x40)
        "00000000000000000000000000000001 01 80 10 80       lo\n")
    wanted = {ipaddress.IPv6Address("fd00:251::50"), ipaddress.IPv6Address("fd00:251::51"),
              ipaddress.IPv6Address("::1")}
    assert own_addresses(wanted, proc=str(tmp_path)) == {
        ipaddress.IPv6Address("fd00:251::50"), ipaddress.IPv6Address("::1")}


class _Answers:
    """A netlink socket stand-in that answers every request with the given datagrams."""

    def __init__(self, *datagrams: bytes) -> None:
        self.datagrams = list(datagrams)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recvmsg(self, _size: int) -> tuple[bytes, list[object], int, object]:
        return self.datagrams.pop(0), [], 0, None


def _message(kind: int, seq: int, payload: bytes, flags: int = 0) -> bytes:
    import struct

    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 0) + payload


def test_a_dump_that_ends_with_an_error_code_is_an_oserror() -> None:
    import errno
    import struct

    from supervisor.drivers.netlink import AddressDump

    local = socket.inet_pton(socket.AF_INET, "10.1.2.3")
    addr = _message(20, 7, struct.pack("=BBBBI", socket.AF_INET, 24, 0x80, 0, 3)
                    + struct.pack("=HH", 8, 2) + local
                    + struct.pack("=HH", 8, 3) + b"ab\0\0")
    done_ok = _message(3, 7, struct.pack("=i", 0))
    sock = _Answers(addr + done_ok)
    got = AddressDump._dump(sock, 7, socket.AF_INET, 0)  # type: ignore[arg-type]
    assert got == [(3, "10.1.2.3", 24, "ab", 0x80)]
    assert len(sock.sent) == 1 and len(sock.sent[0]) == 24  # nlmsghdr + ifaddrmsg
    failed = _message(3, 7, struct.pack("=i", -errno.ENOBUFS))
    dump = AddressDump()
    dump._sock = _Answers(addr + failed)
    dump._seq = 6  # the next request is number 7
    with pytest.raises(OSError) as info:
        dump.addresses(socket.AF_INET)
    assert info.value.errno == errno.ENOBUFS
    assert dump._sock is not None  # a refusal keeps the socket


class _Notifications:
    """A netlink socket stand-in that hands out the given reads (bytes, or an OSError to
    raise), then has nothing (EAGAIN)."""

    def __init__(self, *reads: bytes | OSError) -> None:
        self.reads = list(reads)
        self.closed = False

    def recv(self, _size: int, _flags: int = 0) -> bytes:
        if not self.reads:
            raise BlockingIOError
        read = self.reads.pop(0)
        if isinstance(read, OSError):
            raise read
        return read

    def close(self) -> None:
        self.closed = True


def test_the_address_watch_counts_notifications_losses_and_failures(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read of a notification is a change, a lost one (ENOBUFS) too; nothing queued, the
    count stands; a socket that fails answers None, is closed, and the next call opens
    another (a change: what was cached meanwhile is not covered)."""
    import errno

    from supervisor.drivers.netlink import AddressWatch

    sockets = [_Notifications(b"new", OSError(errno.ENOBUFS, "lost"), b"del"),
               _Notifications(), _Notifications(OSError(errno.EBADF, "gone")),
               _Notifications()]
    opened = list(sockets)
    monkeypatch.setattr(AddressWatch, "_open", staticmethod(lambda: opened.pop(0)))
    watch = AddressWatch()
    first = watch.changes()
    assert first is not None
    assert sockets[0].reads == []  # every queued read taken at once
    assert watch.changes() == first  # nothing new
    sockets[0].reads.append(b"new")
    assert watch.changes() == first + 1
    sockets[0].reads.append(OSError(errno.EBADF, "gone"))
    assert watch.changes() is None and sockets[0].closed
    second = watch.changes()  # a new socket
    assert second is not None and second > first + 1
    assert watch.changes() == second
    watch.close()
    assert sockets[1].closed
    assert watch.changes() is None  # the third fails at once
    fourth = watch.changes()
    assert fourth is not None and fourth > second


def test_the_address_watch_reads_a_flood_in_bounded_steps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of notifications does not hold the caller (the loop): one call reads at most
    WATCH_READS, the next the rest; the count moved at once, so an answer cached before
    the flood is stale at the first call already."""
    from supervisor.drivers.netlink import WATCH_READS, AddressWatch

    flood = _Notifications(*([b"new"] * (WATCH_READS + 6)))
    monkeypatch.setattr(AddressWatch, "_open", staticmethod(lambda: flood))
    watch = AddressWatch()
    first = watch.changes()
    assert first == 1 + WATCH_READS and len(flood.reads) == 6
    assert watch.changes() == first + 6 and flood.reads == []
    assert watch.changes() == first + 6
