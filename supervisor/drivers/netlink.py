"""The rtnetlink requests of the IPaddr agent, through pyroute2: loaded lean, on first use,
on one socket; the address dumps (every monitor) read with the standard library.

Only a node that manages a floating address talks rtnetlink: the IPaddr agent reads the
links, routes and addresses at a start, the addresses of one interface at each monitor, and
adds or deletes its address. pyroute2 is imported at the first such request, so a standby
node (and ``twinbeat status``) never imports it.

**Lean.** pyroute2's package ``__init__`` imports the whole library (IPDB, NDB, nftables,
the CLI, ...: 368 modules and 25 MiB of RSS in a fresh interpreter, pyroute2 0.7.7),
whatever submodule one asks for. ``_lean_pyroute2`` registers the package without running
its ``__init__``; then only pyroute2's netlink socket (``pyroute2.netlink.nlsocket``) and
the three message classes we parse (links, addresses, routes) are imported: about 40
modules and 1 MiB in the supervisor (bench/netlink.py). If anything in the same process
later uses a top-level name (``from pyroute2 import IPRoute``), the package's ``__init__``
runs then, as a plain ``import pyroute2`` would have run it.

**One socket.** Opened at the first request and kept for the process's life; a lock
serialises the requests of the agents' threads. It joins no multicast group, so nothing
queues on it between requests. It sets NETLINK_GET_STRICT_CHK, so the kernel itself
filters an address dump by family and interface (Linux >= 4.20; an older kernel refuses the
option, the dump is then unfiltered and the reply is filtered here): the monitor parses only
the addresses of its own interface. A request that fails other than by the kernel's refusal
drops the socket; the next request opens a new one.

**The address dump without pyroute2.** An owner asks for its interface's addresses at
every monitor (every second in the test bed, ``monitor_interval``). Through pyroute2 one
such dump ran 1,494 Python lines (its request machinery, generic attribute decoding and
lookups: 84 us warm, about 0.07 % of a core a second cold, measured in a namespace beside an
idle asyncio loop). ``AddressDump`` sends the one RTM_GETADDR request and reads the
RTM_NEWADDR answers (struct ifaddrmsg and its attributes, linux/if_addr.h: a stable kernel
ABI) with the standard library's AF_NETLINK socket and ``struct``: 107 lines, 13 us warm.
pyroute2 still builds and parses everything else (links, routes, adding and deleting an
address). tests/test_netlink.py compares both kinds of answer with iproute2's ``ip -j``.

**A monitor without a dump while nothing changed.** ``AddressWatch`` joins the kernel's
multicast groups of address changes; the IPaddr monitor reads what they queued (one
non-blocking read, on the loop) and asks for a dump only when something changed since its
last one, so that an idle owner's monitor needs no dump and no hop to a worker thread.

A refusal of the kernel is an OSError with its errno and text ("File exists", "Cannot
assign requested address"), as ``ip`` prints it.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

RT_TABLE_MAIN = 254
RTN_UNICAST = 1

T = TypeVar("T")


def _lean_pyroute2() -> None:
    """Register the ``pyroute2`` package without running its ``__init__`` (see the module
    docstring). Nothing to do when pyroute2 is imported already."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        raise ImportError("pyroute2 is not installed (Debian: python3-pyroute2)")
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def whole_on_first_use(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")  # a submodule: just that one
        del package.__getattr__  # a top-level name: the whole library, as imported normally
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = whole_on_first_use  # type: ignore[method-assign]
    sys.modules["pyroute2"] = package


class _Pyroute2:
    """The pieces of pyroute2 in use, imported on first use."""

    def __init__(self) -> None:
        _lean_pyroute2()
        from pyroute2.netlink import (
            NETLINK_ROUTE,
            NLM_F_ACK,
            NLM_F_CREATE,
            NLM_F_DUMP,
            NLM_F_EXCL,
            NLM_F_REQUEST,
            NLMSG_ERROR,
        )
        from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError
        from pyroute2.netlink.nlsocket import Marshal, NetlinkSocket
        from pyroute2.netlink.rtnl import (
            RTM_DELADDR,
            RTM_GETADDR,
            RTM_GETLINK,
            RTM_GETROUTE,
            RTM_NEWADDR,
            RTM_NEWLINK,
            RTM_NEWROUTE,
        )
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        class RtnlMarshal(Marshal):  # type: ignore[misc]
            """Parses the three kinds of answer we ask for (pyroute2's MarshalRtnl knows
            every rtnetlink message and imports traffic control's 40 modules for it)."""

            msg_map = {RTM_NEWLINK: ifinfmsg, RTM_NEWADDR: ifaddrmsg, RTM_NEWROUTE: rtmsg}

        def socket(strict: bool) -> Any:
            sock = NetlinkSocket(NETLINK_ROUTE, strict_check=strict)
            sock.marshal = RtnlMarshal()
            return sock

        self.socket = socket
        self.ifaddrmsg, self.ifinfmsg, self.rtmsg = ifaddrmsg, ifinfmsg, rtmsg
        self.NetlinkError, self.NetlinkDumpInterrupted = NetlinkError, NetlinkDumpInterrupted
        self.dump = NLM_F_REQUEST | NLM_F_DUMP
        self.create = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
        self.change = NLM_F_REQUEST | NLM_F_ACK
        self.NLMSG_ERROR = NLMSG_ERROR
        self.RTM_GETLINK, self.RTM_GETADDR, self.RTM_GETROUTE = (RTM_GETLINK, RTM_GETADDR,
                                                                 RTM_GETROUTE)
        self.RTM_NEWADDR, self.RTM_DELADDR = RTM_NEWADDR, RTM_DELADDR


_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP, NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS = 1, 2, 3, 8
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_RTATTR = struct.Struct("=HH")  # length, type
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")
_RECV = 1 << 16

Address = tuple[int, str, int, str | None, int]


class _Interrupted(Exception):
    """The kernel's address table changed during the dump (NLM_F_DUMP_INTR)."""


class _KeptSocket:
    """A socket opened on first use and kept, behind a lock (the agents' threads share
    it); ``_drop`` closes it, the next request opens a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: Any = None

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


class AddressDump(_KeptSocket):
    """RTM_GETADDR dumps on the standard library's AF_NETLINK socket (see the module
    docstring), opened on first use and kept (thread-safe); a failure other than the
    kernel's refusal drops it, the next dump opens a new one."""

    def __init__(self) -> None:
        super().__init__()
        self._seq = 0

    def addresses(self, family: int, index: int = 0) -> list[Address]:
        with self._lock:
            for attempt in (1, 2):
                if self._sock is None:
                    self._sock = self._open()
                self._seq = self._seq % 0xFFFFFFFF + 1
                try:
                    return self._dump(self._sock, self._seq, family, index)
                except _Interrupted:
                    if attempt == 2:
                        raise OSError("rtnetlink dump interrupted twice by changes") from None
                except _Refused as exc:
                    raise OSError(exc.errno, os.strerror(exc.errno)) from None
                except BaseException:
                    self._drop()
                    raise
            raise AssertionError("unreachable")

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)
        try:
            sock.bind((0, 0))
            # the kernel filters the dump by family and interface (Linux >= 4.20; an
            # older one refuses the option: the answers are filtered below in any case)
            try:
                sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            except OSError:
                pass
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    def _dump(sock: socket.socket, seq: int, family: int, index: int) -> list[Address]:
        request = _IFADDRMSG.pack(family, 0, 0, 0, index)
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(request), _RTM_GETADDR,
                                 _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0) + request)
        result: list[Address] = []
        interrupted = False
        while True:
            data, _anc, flags, _addr = sock.recvmsg(_RECV)
            if flags & socket.MSG_TRUNC:
                raise OSError("rtnetlink answer truncated")
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, kind, mflags, mseq, _port = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size or off + length > len(data):
                    raise OSError(f"malformed rtnetlink message (length {length})")
                end = off + length
                if mseq == seq:  # (an answer to an earlier, failed request is skipped)
                    interrupted |= bool(mflags & NLM_F_DUMP_INTR)
                    # the end of the dump carries the dump's error code (an int, <= 0), as
                    # an error message carries the request's
                    code = (_I32.unpack_from(data, off + _NLMSGHDR.size)[0]
                            if kind in (_NLMSG_DONE, _NLMSG_ERROR)
                            and length >= _NLMSGHDR.size + _I32.size else 0)
                    if code < 0:
                        raise _Refused(-code)
                    if kind == _NLMSG_DONE:
                        if interrupted:
                            raise _Interrupted
                        return result
                    if kind == _NLMSG_ERROR:
                        return result
                    if kind == _RTM_NEWADDR:
                        entry = _address(data, off + _NLMSGHDR.size, end, family, index)
                        if entry is not None:
                            result.append(entry)
                off = (end + 3) & ~3


#: the multicast groups of address changes (linux/rtnetlink.h: RTMGRP_IPV4_IFADDR,
#: RTMGRP_IPV6_IFADDR)
_RTMGRP_IFADDR = 0x10 | 0x100
#: the most reads of queued notifications one ``AddressWatch.changes`` makes
WATCH_READS = 64


class AddressWatch(_KeptSocket):
    """The kernel's notifications of address changes (RTM_NEWADDR and RTM_DELADDR, both
    families, every interface: a flag that changes, such as DAD's, is one too), counted.
    ``changes()`` reads what is queued (non-blocking) and returns how many reads brought
    news since the watch was made: an answer of an address dump taken after that count was
    read stays true while the count is the same (a change after the count was read, even
    during the dump, queues a notification and moves it). A lost notification (ENOBUFS: the
    socket's buffer overflowed) counts as a change; a watch that cannot open or fails
    answers None (ask the kernel every time) and opens again at the next call, counting
    that as a change. One call reads at most WATCH_READS (a flood of changes must not hold
    the loop: what it leaves moves the count at the next call). Locked: any thread may
    ask (the monitor asks on the loop's)."""

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    def changes(self) -> int | None:
        with self._lock:
            sock = self._sock
            if sock is None:
                try:
                    sock = self._sock = self._open()
                except OSError:
                    return None
                self._count += 1  # what was asked before the watch opened is not covered
            for _ in range(WATCH_READS):
                try:
                    data = sock.recv(_RECV, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    self._count += 1
                    if exc.errno == errno.ENOBUFS:
                        continue  # (notifications were lost: a change; the rest is readable)
                    self._drop()
                    return None
                if data:
                    self._count += 1
            return self._count

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)
        try:
            sock.bind((0, _RTMGRP_IFADDR))
        except BaseException:
            sock.close()
            raise
        return sock


class _Refused(Exception):
    def __init__(self, errno: int) -> None:
        super().__init__(errno)
        self.errno = errno


def _address(data: bytes, off: int, end: int, family: int, index: int) -> Address | None:
    """(index, address, prefix length, label, flags) of the RTM_NEWADDR message whose
    ifaddrmsg starts at ``off``, or None when it is not of ``family`` (and ``index``)."""
    fam, prefix, hflags, _scope, idx = _IFADDRMSG.unpack_from(data, off)
    if fam != family or (index and idx != index):
        return None
    attrs: dict[int, bytes] = {}
    pos = off + _IFADDRMSG.size
    while pos + _RTATTR.size <= end:
        alen, atype = _RTATTR.unpack_from(data, pos)
        if alen < _RTATTR.size:
            break
        attrs[atype & 0x3FFF] = data[pos + _RTATTR.size: pos + alen]  # (without NLA_F_*)
        pos += (alen + 3) & ~3
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if not raw:
        return None
    label = attrs.get(IFA_LABEL)
    flags = attrs.get(IFA_FLAGS)
    return (idx, socket.inet_ntop(fam, raw), prefix,
            None if label is None else label.split(b"\0", 1)[0].decode(errors="replace"),
            hflags if flags is None else _U32.unpack(flags[:4])[0])


class Rtnetlink(_KeptSocket):
    """One rtnetlink socket through pyroute2, opened on first use (thread-safe); the
    address dumps on one of their own (``AddressDump``)."""

    def __init__(self) -> None:
        super().__init__()
        self._pr: _Pyroute2 | None = None
        self._addresses = AddressDump()

    def _request(self, build: Callable[[_Pyroute2], tuple[Any, int, int]],
                 read: Callable[[_Pyroute2, Sequence[Any]], T]) -> T:
        with self._lock:
            if self._pr is None:
                self._pr = _Pyroute2()
            pr = self._pr
            for attempt in (1, 2):
                if self._sock is None:
                    self._sock = self._open(pr)
                msg, kind, flags = build(pr)
                try:
                    replies = self._sock.nlm_request(
                        msg, msg_type=kind, msg_flags=flags,
                        terminate=lambda m: m["header"]["type"] == pr.NLMSG_ERROR)
                    return read(pr, replies)
                except pr.NetlinkError as exc:
                    raise OSError(exc.code, exc.args[1]) from None
                except pr.NetlinkDumpInterrupted:
                    # the kernel's tables changed during the dump: it asks for a new one
                    if attempt == 2:
                        raise OSError("rtnetlink dump interrupted twice by changes") from None
                except BaseException:
                    self._drop()
                    raise
            raise AssertionError("unreachable")

    @staticmethod
    def _open(pr: _Pyroute2) -> Any:
        try:
            sock = pr.socket(True)
        except OSError:  # Linux < 4.20 has no NETLINK_GET_STRICT_CHK: dumps are unfiltered
            sock = pr.socket(False)
        try:
            sock.bind(groups=0)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        super().close()
        self._addresses.close()

    def links(self) -> list[tuple[int, str, str | None]]:
        """(index, name, MAC address) of every interface."""
        def build(pr: _Pyroute2) -> tuple[Any, int, int]:
            return pr.ifinfmsg(), pr.RTM_GETLINK, pr.dump

        def read(_pr: _Pyroute2, replies: Sequence[Any]) -> list[tuple[int, str, str | None]]:
            return [(m["index"], m.get_attr("IFLA_IFNAME"), m.get_attr("IFLA_ADDRESS"))
                    for m in replies]

        return self._request(build, read)

    def addresses(self, family: int, index: int = 0) -> list[Address]:
        """(interface index, address, prefix length, label, flags) of every address of
        ``family`` (AF_INET or AF_INET6), of interface ``index`` only when it is not 0."""
        return self._addresses.addresses(family, index)

    def routes(self, family: int) -> list[tuple[int, str, int, str | None, int]]:
        """(output interface index, destination, prefix length, gateway, priority) of the
        unicast routes of the main table of ``family``; destination "" is the default."""
        def build(pr: _Pyroute2) -> tuple[Any, int, int]:
            msg = pr.rtmsg()
            msg["family"] = family
            msg["table"] = RT_TABLE_MAIN
            msg["type"] = RTN_UNICAST
            return msg, pr.RTM_GETROUTE, pr.dump

        def read(_pr: _Pyroute2, replies: Sequence[Any]
                 ) -> list[tuple[int, str, int, str | None, int]]:
            result = []
            for m in replies:
                table = m.get_attr("RTA_TABLE") or m["table"]
                oif = m.get_attr("RTA_OIF")
                if (m["family"] != family or table != RT_TABLE_MAIN or m["type"] != RTN_UNICAST
                        or oif is None):
                    continue
                result.append((oif, m.get_attr("RTA_DST") or "", m["dst_len"],
                               m.get_attr("RTA_GATEWAY"), m.get_attr("RTA_PRIORITY") or 0))
            return result

        return self._request(build, read)

    def change_address(self, add: bool, family: int, index: int, address: str, prefix: int,
                       *, broadcast: str | None = None, label: str | None = None,
                       flags: int = 0) -> None:
        """``ip address add|del ADDRESS/PREFIX dev INDEX [broadcast B] [label L]`` (add fails
        with EEXIST when the address is there already, del with EADDRNOTAVAIL when it is
        not)."""
        def build(pr: _Pyroute2) -> tuple[Any, int, int]:
            msg = pr.ifaddrmsg()
            msg["family"] = family
            msg["prefixlen"] = prefix
            msg["index"] = index
            attrs: list[tuple[str, Any]] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
            if add and broadcast is not None:
                attrs.append(("IFA_BROADCAST", broadcast))
            if add and label:
                attrs.append(("IFA_LABEL", label))
            if add and flags:
                attrs.append(("IFA_FLAGS", flags))
            msg["attrs"] = attrs
            if add:
                return msg, pr.RTM_NEWADDR, pr.create
            return msg, pr.RTM_DELADDR, pr.change

        self._request(build, lambda _pr, _replies: None)


#: the process's one rtnetlink socket (opened by its first request)
RTNL = Rtnetlink()
#: the process's watch of address changes (opened by its first use: the IPaddr monitor's)
ADDRESS_WATCH = AddressWatch()
