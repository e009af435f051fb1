"""Parse heartbeat-style resource specifications (pure: no I/O).

A resource group in ``haresources`` (and in our ``cluster.toml``) is an ordered list of
resources, each written as heartbeat writes it:

==========================================  ===============================================
``IPaddr::192.168.85.3``                    floating address; netmask/interface from routes
``IPaddr::192.168.85.3/27``                 ... with a prefix length
``IPaddr::192.168.85.3/27/eth0``            ... and an interface
``IPaddr::192.168.85.3/27/192.168.85.16``   ... and a broadcast address (3rd field an IP)
``IPaddr::192.168.85.3/27/eth0/192...16``   ... interface and broadcast
``192.168.85.3/27``                         the bare shorthand for ``IPaddr::...``
``IPaddr2::...``, ``IPv6addr::...``         accepted as synonyms of ``IPaddr``
``Filesystem::/dev/drbd0::/srv::ext4``      mount DEV on MOUNTPOINT with FSTYPE (options opt.)
``drbddisk::r0``                            promote/demote a DRBD resource
``httpd``                                   a systemd unit, or a script in resource.d/init.d
``maid::vacuum``                            a script called with arguments (``::`` separated)
``noop::label``                             does nothing (tests and demos)
==========================================  ===============================================
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from supervisor import names

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


_IPADDR_AGENTS = ("IPaddr", "IPaddr2", "IPv6addr")


class ResourceSpecError(ValueError):
    """A resource specification that cannot be parsed; the message says why."""


@dataclass(frozen=True)
class IPaddrSpec:
    address: IPAddress
    prefix: int | None = None
    interface: str | None = None
    broadcast: ipaddress.IPv4Address | None = None

    @property
    def kind(self) -> str:
        return "IPaddr"

    def describe(self) -> str:
        text = str(self.address)
        if self.prefix is not None:
            text += f"/{self.prefix}"
        if self.interface:
            text += f" on {self.interface}"
        return text


@dataclass(frozen=True)
class FilesystemSpec:
    device: str
    mountpoint: str
    fstype: str
    options: str | None = None

    @property
    def kind(self) -> str:
        return "Filesystem"

    def describe(self) -> str:
        return f"{self.device} on {self.mountpoint} ({self.fstype})"


@dataclass(frozen=True)
class DrbdSpec:
    resource: str

    @property
    def kind(self) -> str:
        return "drbddisk"

    def describe(self) -> str:
        return f"DRBD resource {self.resource}"


@dataclass(frozen=True)
class NoopSpec:
    label: str

    @property
    def kind(self) -> str:
        return "noop"

    def describe(self) -> str:
        return f"noop {self.label}"


@dataclass(frozen=True)
class ServiceSpec:
    """A systemd unit or a script (resolved at run time, as heartbeat resolves it)."""

    name: str
    args: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "service"

    def describe(self) -> str:
        return " ".join((self.name, *self.args))


ResourceSpec = IPaddrSpec | FilesystemSpec | DrbdSpec | NoopSpec | ServiceSpec


def _parse_ip(text: str, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ResourceSpecError(f"{what} {text!r} is not an IP address") from None


def _looks_like_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_ipaddr(arg: str) -> IPaddrSpec:
    """Parse ``ADDR[/CIDR[/IFACE|/BCAST[/BCAST]]]`` the way heartbeat's IPaddr reads it."""
    if not arg:
        raise ResourceSpecError("IPaddr needs an address, e.g. IPaddr::192.168.85.3/24")
    parts = arg.split("/")
    address = _parse_ip(parts[0], "floating address")
    max_prefix = 32 if address.version == 4 else 128
    prefix: int | None = None
    interface: str | None = None
    broadcast: ipaddress.IPv4Address | None = None
    if len(parts) > 4:
        raise ResourceSpecError(f"too many '/' fields in {arg!r} (ADDR/CIDR/IFACE/BROADCAST)")
    if len(parts) >= 2 and parts[1] != "":
        field = parts[1]
        if field.isdigit():
            prefix = int(field)
        elif address.version == 4 and _looks_like_ip(field):
            # heartbeat also accepts a dotted netmask here
            try:
                prefix = ipaddress.IPv4Network(f"0.0.0.0/{field}").prefixlen
            except ValueError:
                raise ResourceSpecError(f"netmask {field!r} is not contiguous") from None
        else:
            raise ResourceSpecError(f"prefix {field!r} is not a number (0-{max_prefix})")
        if not 0 < prefix <= max_prefix:
            raise ResourceSpecError(f"prefix /{prefix} is out of range (1-{max_prefix})")
    rest = parts[2:]
    if rest:
        third = rest[0]
        if _looks_like_ip(third):
            if len(rest) > 1:
                raise ResourceSpecError(
                    f"{arg!r}: after a broadcast address nothing may follow"
                )
            broadcast = _as_broadcast(third, address)
        elif third:
            if not names.is_interface(third):
                raise ResourceSpecError(f"interface name {third!r} is not valid")
            interface = third
        if len(rest) > 1 and rest[1]:
            broadcast = _as_broadcast(rest[1], address)
    return IPaddrSpec(address=address, prefix=prefix, interface=interface, broadcast=broadcast)


def _as_broadcast(text: str, address: IPAddress) -> ipaddress.IPv4Address:
    bcast = _parse_ip(text, "broadcast address")
    if address.version != 4 or not isinstance(bcast, ipaddress.IPv4Address):
        raise ResourceSpecError("a broadcast address only applies to IPv4")
    return bcast


def default_broadcast(address: ipaddress.IPv4Address, prefix: int) -> ipaddress.IPv4Address:
    """The highest address of the subnet (heartbeat's default broadcast)."""
    return ipaddress.IPv4Network(f"{address}/{prefix}", strict=False).broadcast_address


def parse_resource(spec: str) -> ResourceSpec:
    """Parse one haresources token into a typed resource specification."""
    spec = spec.strip()
    if not spec:
        raise ResourceSpecError("empty resource")
    if any(c.isspace() for c in spec):
        raise ResourceSpecError(f"{spec!r} contains white space; list resources separately")
    if _looks_like_ip(spec.split("/")[0]):
        return parse_ipaddr(spec)  # the bare shorthand for IPaddr::...
    name, _, argtext = spec.partition("::")
    args = argtext.split("::") if argtext else []
    if name in _IPADDR_AGENTS:
        # the whole rest is the argument: an IPv6 address holds "::" itself
        if not argtext or (not _looks_like_ip(argtext.split("/")[0]) and "::" in argtext):
            raise ResourceSpecError(f"{name} takes one argument: {name}::ADDR[/CIDR[/IFACE]]")
        return parse_ipaddr(argtext)
    if name == "Filesystem":
        if len(args) not in (3, 4) or not all(args[:3]):
            raise ResourceSpecError(
                "Filesystem takes Filesystem::DEVICE::MOUNTPOINT::FSTYPE[::OPTIONS]"
            )
        if not args[1].startswith("/"):
            raise ResourceSpecError(f"mount point {args[1]!r} must be an absolute path")
        if names.mount_point(args[1]) is None:
            raise ResourceSpecError(f"{args[1]!r} cannot be a mount point (an absolute path "
                                    "such as \"/srv\")")
        return FilesystemSpec(args[0], args[1], args[2], args[3] if len(args) == 4 else None)
    if name == "drbddisk":
        if len(args) != 1 or not names.is_drbd_resource(args[0]):
            raise ResourceSpecError("drbddisk takes one resource name: drbddisk::r0")
        return DrbdSpec(args[0])
    if name == "noop":
        return NoopSpec(args[0] if args else "noop")
    if not names.is_service(name):
        raise ResourceSpecError(f"{name!r} is not a valid service or script name")
    if any(a == "" for a in args):
        raise ResourceSpecError(f"{spec!r} has an empty argument")
    return ServiceSpec(name, tuple(args))
