"""The few rtnetlink requests the supervisor makes, on a plain netlink socket.

``twinbeat run`` lists the host's addresses at start, the IPaddr agent checks its address at
every monitor (every second by default) and adds or removes it at a takeover. Through pyroute2
the supervisor imported ~230 modules (10 MiB in each process) and each check cost ~2 ms of
CPU (a new IPRoute, a link dump, an address dump). These are one socket and one request each:
RTM_GETLINK, RTM_GETADDR and RTM_GETROUTE dumps, RTM_NEWADDR and RTM_DELADDR with an ACK
(rtnetlink(7); the structures of linux/rtnetlink.h, if_addr.h, if_link.h). An error of the
kernel is an OSError with its errno and text ("File exists", "Cannot assign requested
address"), as ``ip`` prints it.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_GETROUTE = 26
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_LABEL = 3
IFA_BROADCAST = 4
IFA_FLAGS = 8
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTATTR = struct.Struct("=HH")  # len, type
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope,
#                                       type, flags


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        attrs.setdefault(kind & 0x3FFF, data[offset + _RTATTR.size:offset + length])
        offset += _align(length)
    return attrs


def _attr(kind: int, value: bytes) -> bytes:
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def _dump(msg_type: int, payload: bytes, flags: int = NLM_F_DUMP) -> Iterator[tuple[int, bytes]]:
    """Send one request; yield (message type, message body) until NLMSG_DONE (a dump) or
    the ACK (a change); a kernel error raises OSError."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        seq = 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type,
                                NLM_F_REQUEST | flags, seq, 0)
        sock.sendall(header + payload)
        while True:
            data = sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _flags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    return
                body = data[offset + _NLMSGHDR.size:offset + length]
                offset += _align(length)
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return  # the ACK of a change
                yield kind, body


def links() -> list[tuple[int, str, str | None]]:
    """(index, name, MAC address) of every interface."""
    result = []
    for _kind, body in _dump(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
        _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(body)
        attrs = _attrs(body, _IFINFOMSG.size)
        name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")
        mac = attrs.get(IFLA_ADDRESS)
        result.append((index, name, ":".join(f"{b:02x}" for b in mac) if mac else None))
    return result


def addresses(family: int) -> list[tuple[int, str, int, str | None, int]]:
    """(interface index, address, prefix length, label, flags) of every address of
    ``family`` (AF_INET or AF_INET6)."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise OSError(errno.EAFNOSUPPORT, "only AF_INET and AF_INET6")
    result = []
    for _kind, body in _dump(RTM_GETADDR, _IFADDRMSG.pack(family, 0, 0, 0, 0)):
        fam, prefix, flags, _scope, index = _IFADDRMSG.unpack_from(body)
        if fam != family:
            continue
        attrs = _attrs(body, _IFADDRMSG.size)
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        if raw is None:
            continue
        label = attrs.get(IFA_LABEL)
        if IFA_FLAGS in attrs:
            flags = struct.unpack_from("=I", attrs[IFA_FLAGS])[0]
        result.append((index, socket.inet_ntop(fam, raw), prefix,
                       label.rstrip(b"\0").decode(errors="replace") if label else None, flags))
    return result


def routes(family: int) -> list[tuple[int, int, int, str, int, str | None, int]]:
    """(table, type, output interface index, destination, prefix length, gateway, priority)
    of every route of ``family``; destination "" is the default route."""
    result = []
    for _kind, body in _dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
        fam, dst_len, _src, _tos, table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(body)
        if fam != family:
            continue
        attrs = _attrs(body, _RTMSG.size)
        if RTA_TABLE in attrs:
            table = struct.unpack_from("=I", attrs[RTA_TABLE])[0]
        oif = struct.unpack_from("=i", attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
        dst = socket.inet_ntop(fam, attrs[RTA_DST]) if RTA_DST in attrs else ""
        gw = socket.inet_ntop(fam, attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
        prio = struct.unpack_from("=I", attrs[RTA_PRIORITY])[0] if RTA_PRIORITY in attrs else 0
        result.append((table, rtype, oif, dst, dst_len, gw, prio))
    return result


def change_address(add: bool, family: int, index: int, address: str, prefix: int, *,
                   broadcast: str | None = None, label: str | None = None,
                   flags: int = 0) -> None:
    """``ip address add|del ADDRESS/PREFIX dev INDEX [broadcast B] [label L]`` (add fails
    with EEXIST when the address is there already, del with EADDRNOTAVAIL when it is not)."""
    raw = socket.inet_pton(family, address)
    payload = _IFADDRMSG.pack(family, prefix, flags & 0xFF, 0, index)
    payload += _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
    if add:
        if broadcast is not None:
            payload += _attr(IFA_BROADCAST, socket.inet_pton(family, broadcast))
        if label:
            payload += _attr(IFA_LABEL, label.encode() + b"\0")
        if flags:
            payload += _attr(IFA_FLAGS, struct.pack("=I", flags))
    request = (RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL) if add else (RTM_DELADDR,
                                                                                  NLM_F_ACK)
    for _ in _dump(request[0], payload, request[1]):
        pass
