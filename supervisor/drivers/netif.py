"""What the kernel says about this host's interfaces: their carrier (sysfs) and which
addresses are the host's own (no rtnetlink: pyroute2 stays unimported on a node that manages
no address)."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable

from supervisor.values import IPAddress

#: the carrier files kept open, by path (see read_carrier); at most CARRIER_FDS
_CARRIER_FDS: dict[str, int] = {}
#: the paths of an interface's sysfs directory and carrier file, by (sys root, interface):
#: joined once, not on every reading
_PATHS: dict[tuple[str, str], tuple[str, str]] = {}
CARRIER_FDS = 16


def read_carrier(interface: str, sys_root: str = "/sys", *,
                 keep_open: bool | None = None) -> bool | None:
    """The interface's carrier from sysfs: True, False, or None if it does not exist.

    The file is kept open and read again from its start (``pread``: one system call a
    reading instead of open, read and close; the loop reads 2 or 3 of them 4 to 8 times a
    second) when ``keep_open`` (by default under the real /sys: a sysfs file whose interface
    went away answers ENODEV, never stale bytes, and is opened by its path again; a regular
    file replaced by a rename would be read stale)."""
    if keep_open is None:
        keep_open = sys_root == "/sys"
    paths = _PATHS.get((sys_root, interface))
    if paths is None:
        if len(_PATHS) >= CARRIER_FDS:
            _PATHS.clear()
        base = os.path.join(sys_root, "class", "net", interface)
        paths = _PATHS[(sys_root, interface)] = (base, os.path.join(base, "carrier"))
    base, path = paths
    fd = _CARRIER_FDS.get(path) if keep_open else None
    if fd is not None:
        try:
            return os.pread(fd, 16, 0).strip() == b"1"
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # interface administratively down
                return False
            del _CARRIER_FDS[path]  # gone (ENODEV): by its path again
            os.close(fd)
    try:  # (os.open/os.read: no file object, no text decoding)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            up = os.read(fd, 16).strip() == b"1"
        except BaseException:
            os.close(fd)
            raise
        if keep_open:
            if len(_CARRIER_FDS) >= CARRIER_FDS:
                forget_carriers()
            _CARRIER_FDS[path] = fd
        else:
            os.close(fd)
        return up
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # interface administratively down
            return False
        return None if not os.path.exists(base) else False


def forget_carriers() -> None:
    """Close the carrier files read_carrier kept open."""
    for fd in _CARRIER_FDS.values():
        os.close(fd)
    _CARRIER_FDS.clear()


def own_addresses(candidates: Iterable[IPAddress], proc: str = "/proc") -> set[IPAddress]:
    """Which of ``candidates`` are this host's own addresses, without rtnetlink (pyroute2
    stays unimported on a node that manages no address).

    IPv6: /proc/net/if_inet6 lists every address of the host, tentative ones included.
    IPv4: a UDP socket connected to the address gets that address itself as its source only
    when the kernel routes it through its local table as one of its own (a subnet's
    broadcast, a multicast group or another host get another source, or no route).
    """
    mine: set[IPAddress] = set()
    wanted = set(candidates)
    if any(a.version == 6 for a in wanted):
        try:
            with open(f"{proc}/net/if_inet6") as f:
                v6 = {ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))
                      for line in f if line.strip()}
        except (OSError, ValueError, IndexError):
            v6 = set()
        mine |= wanted & v6
    for address in wanted:
        if address.version != 4 or address.is_multicast:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((str(address), 9))
            except OSError:  # no route, or a broadcast address: not ours
                continue
            if s.getsockname()[0] == str(address):
                mine.add(address)
    return mine
