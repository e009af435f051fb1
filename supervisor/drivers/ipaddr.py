"""The IPaddr agent: a floating IPv4/IPv6 address with an alias label and announcements.

Choosing the interface and prefix (pure, ``select_route`` / ``plan_address``)
------------------------------------------------------------------------------
heartbeat's words: "the lowest cost route to the IP address to be taken over. In the case of a
tie, it chooses the first route found. For most configurations this means the default route will
be least preferred." Its later ``findif.c`` also required a longer (or equal) mask to replace the
current choice. We decide, in this order:

1. only routes of the main table, of type unicast, with an output interface, whose destination
   covers the address, are candidates;
2. the **most specific prefix wins**, then the lowest metric, then the first found.

Why the prefix before the metric: the kernel routes by longest prefix first and uses the metric
only between equal prefixes, so this is the interface through which the node itself would reach
that address, and the one whose subnet the address belongs to. With "metric first", a /16 via
eth1 at metric 0 would beat the connected /24 on eth0 at metric 100 (a common sight with DHCP
route metrics), and the address would land on the wrong wire. The default route, the least
specific route there is, is still the last choice, as heartbeat documents. Without an explicit
prefix, a choice that only the default route covers is refused (heartbeat: "Cannot use default
route w/o netmask").

Broadcast: given, else the highest address of the subnet (none for /31 and /32). Label: the
first free ``IFACE:N`` (IPv4 only; IPv6 has no labels), none when that name would exceed the
kernel's 15 characters.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from supervisor.drivers import arp
from supervisor.drivers.agent_base import AgentContext, AgentError
from supervisor.resource_spec import IPaddrSpec, default_broadcast

if TYPE_CHECKING:
    from supervisor.drivers.netlink import Rtnetlink

log = logging.getLogger("twinbeat.ipaddr")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFNAMSIZ = 16


@dataclass(frozen=True)
class Route:
    destination: IPNetwork
    interface: str
    metric: int = 0
    gateway: IPAddress | None = None

    @property
    def is_default(self) -> bool:
        return self.destination.prefixlen == 0


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    mac: str | None


@dataclass(frozen=True)
class AddressEntry:
    index: int
    interface: str
    address: IPAddress
    prefix: int
    label: str | None = None
    flags: int = 0


@dataclass(frozen=True)
class AddressPlan:
    interface: str
    prefix: int
    broadcast: ipaddress.IPv4Address | None
    label: str | None
    route: Route | None


def select_route(address: IPAddress, routes: Iterable[Route]) -> Route | None:
    """The route for a floating address: the most specific covering route, then the lowest
    metric, then the first found (see the module docstring). None when no route covers it."""
    best: Route | None = None
    for route in routes:
        if route.destination.version != address.version or address not in route.destination:
            continue
        if best is None or (
            route.destination.prefixlen,
            -route.metric,
        ) > (best.destination.prefixlen, -best.metric):
            best = route
    return best


def next_label(interface: str, labels_in_use: Iterable[str]) -> str | None:
    """The first free ``IFACE:N`` alias label, or None when it would not fit in IFNAMSIZ."""
    used = set(labels_in_use)
    n = 0
    while f"{interface}:{n}" in used:
        n += 1
    label = f"{interface}:{n}"
    return label if len(label) < IFNAMSIZ else None


def plan_address(
    spec: IPaddrSpec, routes: Sequence[Route], addresses: Sequence[AddressEntry]
) -> AddressPlan:
    """Where and how to add ``spec.address`` (pure). Raises AgentError with a reason."""
    addr = spec.address
    if spec.interface:
        candidates = [r for r in routes if r.interface == spec.interface]
    else:
        candidates = list(routes)
    route = select_route(addr, candidates)
    if spec.interface:
        interface = spec.interface
    elif route is None:
        raise AgentError(
            f"no route covers {addr}: give its interface and prefix (IPaddr::{addr}/CIDR/IFACE)"
        )
    else:
        interface = route.interface
    if spec.prefix is not None:
        prefix = spec.prefix
    elif route is not None and not route.is_default:
        prefix = route.destination.prefixlen
    elif route is not None:
        raise AgentError(
            f"only the default route covers {addr}: give a prefix (IPaddr::{addr}/CIDR)"
        )
    else:
        raise AgentError(
            f"no route on {interface} covers {addr}: give a prefix (IPaddr::{addr}/CIDR)"
        )
    broadcast: ipaddress.IPv4Address | None = None
    label: str | None = None
    if isinstance(addr, ipaddress.IPv4Address):
        if spec.broadcast is not None:
            broadcast = spec.broadcast
        elif prefix < 31:
            broadcast = default_broadcast(addr, prefix)
        label = next_label(
            interface, (a.label for a in addresses if a.interface == interface and a.label)
        )
    return AddressPlan(interface, prefix, broadcast, label, route)


def routes_from_ip_json(data: Sequence[Mapping[str, Any]], family: int) -> list[Route]:
    """Routes from ``ip -j route show table main`` (fixtures, diagnostics)."""
    routes: list[Route] = []
    for entry in data:
        if entry.get("type", "unicast") != "unicast" or "dev" not in entry:
            continue
        dst = entry["dst"]
        if dst == "default":
            dst = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
        net = ipaddress.ip_network(dst, strict=False)
        gateway = entry.get("gateway")
        routes.append(
            Route(
                net,
                entry["dev"],
                int(entry.get("metric", 0)),
                ipaddress.ip_address(gateway) if gateway else None,
            )
        )
    return routes


# --------------------------------------------------------------------------------------------
# Netlink (blocking; the agent calls these through asyncio.to_thread)


def _name(index: int, names: Mapping[int, str] | None) -> str:
    if names is not None:
        return names.get(index, str(index))
    try:
        return socket.if_indextoname(index)
    except OSError:  # gone since the dump
        return str(index)


class Netlink:
    """Thin, blocking rtnetlink calls on the process's one pyroute2 socket
    (``supervisor.drivers.netlink``: imported on the first call, thread-safe)."""

    def __init__(self, rtnl: Rtnetlink | None = None) -> None:
        self._rtnl = rtnl

    @property
    def rtnl(self) -> Rtnetlink:
        if self._rtnl is None:
            from supervisor.drivers.netlink import RTNL  # pyroute2 on first use only

            self._rtnl = RTNL
        return self._rtnl

    def links(self) -> list[Link]:
        return [Link(index, name, mac) for index, name, mac in self.rtnl.links()]

    def routes(self, family: int) -> list[Route]:
        names = {index: name for index, name, _mac in self.rtnl.links()}
        result: list[Route] = []
        default = "0.0.0.0" if family == socket.AF_INET else "::"
        for oif, dst, dst_len, gateway, prio in self.rtnl.routes(family):
            if oif not in names:
                continue
            result.append(
                Route(
                    ipaddress.ip_network(f"{dst or default}/{dst_len}", strict=False),
                    names[oif],
                    prio,
                    ipaddress.ip_address(gateway) if gateway else None,
                )
            )
        return result

    def addresses(self, family: int, index: int = 0) -> list[AddressEntry]:
        """The addresses of ``family``; of interface ``index`` only when it is not 0 (the
        kernel filters the dump; the interface's name then comes from its index alone)."""
        entries = self.rtnl.addresses(family, index)
        names = None
        if entries and not index:
            names = {i: name for i, name, _mac in self.rtnl.links()}
        return [
            AddressEntry(i, _name(i, names), ipaddress.ip_address(text), prefix, label, flags)
            for i, text, prefix, label, flags in entries
        ]

    def address_changes(self) -> int | None:
        """How many times the kernel's addresses changed (``AddressWatch.changes``: read on
        the caller's thread, without blocking), or None when that is not known: also when
        this was given a socket of its own (it may be another namespace's than the
        process's watch)."""
        from supervisor.drivers.netlink import ADDRESS_WATCH, RTNL

        if self._rtnl is not None and self._rtnl is not RTNL:
            return None
        return ADDRESS_WATCH.changes()

    def add(
        self,
        index: int,
        *,
        address: IPAddress,
        prefix: int,
        broadcast: ipaddress.IPv4Address | None,
        label: str | None,
        nodad: bool,
    ) -> None:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        self.rtnl.change_address(True, family, index, str(address), prefix,
                                 broadcast=None if broadcast is None else str(broadcast),
                                 label=label or None,
                                 flags=IFA_F_NODAD if nodad and address.version == 6 else 0)

    def delete(self, index: int, address: IPAddress, prefix: int) -> None:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        self.rtnl.change_address(False, family, index, str(address), prefix)


def _netlink_error(exc: Exception) -> str:
    # an OSError from the kernel carries (errno, text)
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[1], str):
        return args[1]
    return str(exc)


# --------------------------------------------------------------------------------------------
# The agent


def _present(held: list[AddressEntry]) -> bool:
    """Whether one of the entries holds the address (duplicate detection did not fail)."""
    return any(not a.flags & IFA_F_DADFAILED for a in held)


class IPaddrAgent:
    def __init__(
        self,
        spec: IPaddrSpec,
        ctx: AgentContext,
        netlink: Netlink | None = None,
        sender_factory: arp.SenderFactory = arp.PacketSocketSender,
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        self.netlink = netlink or Netlink()
        self._sender_factory = sender_factory
        self.announcer: arp.Announcer | None = None
        self.plan: AddressPlan | None = None
        #: the interface holding the address since start(): the monitor asks for its
        #: addresses only (None: every interface)
        self.index: int | None = None
        #: the monitor's last answer: (the count of address changes it was asked at, the
        #: interface asked, the entries held)
        self._last: tuple[int, int, list[AddressEntry]] | None = None

    @property
    def family(self) -> int:
        return socket.AF_INET if self.spec.address.version == 4 else socket.AF_INET6

    def describe(self) -> str:
        return f"IPaddr {self.spec.describe()}"

    async def _held(self, index: int = 0) -> list[AddressEntry]:
        addrs = await asyncio.to_thread(self.netlink.addresses, self.family, index)
        return [a for a in addrs if a.address == self.spec.address]

    def _kept(self, count: int | None) -> list[AddressEntry] | None:
        """The monitor's last answer, when it still holds at ``count`` (the address changes
        read now): no address of the kernel changed since it was asked; else None."""
        last = self._last
        if count is None or last is None or last[0] != count or last[1] != (self.index or 0):
            return None
        return last[2]

    async def _monitored(self) -> list[AddressEntry]:
        """The monitor's ``_held``: its last answer again while no address of the kernel
        changed since it was asked (``Netlink.address_changes``: no dump, no worker
        thread), else a dump."""
        index = self.index or 0
        count = self.netlink.address_changes()
        kept = self._kept(count)
        if kept is not None:
            return kept
        held = await self._held(index)
        self._last = None if count is None else (count, index, held)
        return held

    def known_status(self) -> bool | None:
        """What ``status()`` would answer, when that is known without asking the kernel (no
        address changed since the monitor's last answer), at once and on the caller's
        thread: the idle owner's check then costs no task, no timeout and no dump
        (ResourceRunner.known). None: ask, with ``status()``."""
        kept = self._kept(self.netlink.address_changes())
        return None if kept is None else _present(kept)

    async def _listed(self, *, monitor: bool) -> list[AddressEntry]:
        """``_monitored()`` (the monitor's) or ``_held()`` (every interface, asked again); a
        failure to ask is an AgentError."""
        try:
            return await (self._monitored() if monitor else self._held())
        except Exception as exc:
            raise AgentError(f"cannot list addresses: {_netlink_error(exc)}") from exc

    async def status(self) -> bool:
        return _present(await self._listed(monitor=True))

    async def start(self, *, check_duplicates: bool = False) -> None:
        addr = self.spec.address
        try:
            links = await asyncio.to_thread(self.netlink.links)
            routes = await asyncio.to_thread(self.netlink.routes, self.family)
            addrs = await asyncio.to_thread(self.netlink.addresses, self.family)
        except Exception as exc:
            raise AgentError(f"cannot read the routing table: {_netlink_error(exc)}") from exc
        held = [a for a in addrs if a.address == addr and not a.flags & IFA_F_DADFAILED]
        if held:
            # Already ours (a restart of the supervisor, or a repeated start): announce again.
            self.index = held[0].index
            link = next((lk for lk in links if lk.index == held[0].index), None)
            if link is not None:
                self._announce(link)
            return
        plan = plan_address(self.spec, routes, addrs)
        link = next((lk for lk in links if lk.name == plan.interface), None)
        if link is None:
            raise AgentError(f"interface {plan.interface} for {addr} does not exist")
        if link.mac is None:
            raise AgentError(f"interface {plan.interface} has no hardware address")
        dad = check_duplicates and self.ctx.takeover.dad
        if dad and isinstance(addr, ipaddress.IPv4Address):
            await self._probe(link, addr)
        try:
            await asyncio.to_thread(
                functools.partial(
                    self.netlink.add,
                    link.index,
                    address=addr,
                    prefix=plan.prefix,
                    broadcast=plan.broadcast,
                    label=plan.label,
                    nodad=not dad,
                )
            )
        except Exception as exc:
            raise AgentError(
                f"cannot add {addr}/{plan.prefix} to {plan.interface}: {_netlink_error(exc)}"
            ) from exc
        if dad and isinstance(addr, ipaddress.IPv6Address):
            await self._wait_dad6(link, plan)
        self.plan = plan
        self.index = link.index
        log.info(
            "added %s/%d on %s%s",
            addr,
            plan.prefix,
            plan.interface,
            f" as {plan.label}" if plan.label else "",
        )
        self._announce(link)

    async def _probe(self, link: Link, addr: ipaddress.IPv4Address) -> None:
        assert link.mac is not None
        try:
            other = await arp.probe_ipv4(
                link.name,
                arp.mac_bytes(link.mac),
                addr,
                probes=self.ctx.dad_probes,
                interval=self.ctx.dad_interval,
                wait=self.ctx.dad_wait,
            )
        except OSError as exc:
            raise AgentError(
                f"cannot probe for {addr} on {link.name}: {exc.strerror or exc}"
            ) from exc
        if other is not None:
            raise AgentError(
                f"{addr} is already in use by MAC {arp.format_mac(other)} on {link.name}"
            )

    async def _wait_dad6(self, link: Link, plan: AddressPlan) -> None:
        """The kernel runs IPv6 DAD (the address was added without NODAD); wait for it."""
        deadline = time.monotonic() + self.ctx.dad6_timeout
        while True:
            held = await self._held(link.index)
            flags = held[0].flags if held else 0
            if flags & IFA_F_DADFAILED or not held:
                await self._delete_all()
                raise AgentError(
                    f"{self.spec.address} is already in use on {link.name} "
                    "(IPv6 duplicate address detection failed)"
                )
            if not flags & IFA_F_TENTATIVE:
                return
            if time.monotonic() > deadline:
                await self._delete_all()
                raise AgentError(
                    f"IPv6 duplicate address detection for {self.spec.address} on {link.name} "
                    f"did not finish within {self.ctx.dad6_timeout:.0f} s (link down?)"
                )
            await asyncio.sleep(0.05)

    def _announce(self, link: Link) -> None:
        if self.announcer is not None and self.announcer.running:
            return
        assert link.mac is not None
        self.announcer = arp.Announcer(
            link.name,
            arp.mac_bytes(link.mac),
            self.spec.address,
            self.ctx.takeover,
            self._sender_factory,
        )
        self.announcer.start()

    async def _delete_all(self) -> None:
        for entry in await self._held():
            await asyncio.to_thread(
                self.netlink.delete, entry.index, entry.address, entry.prefix
            )
            log.info("removed %s/%d from %s", entry.address, entry.prefix, entry.interface)

    async def stop(self) -> None:
        if self.announcer is not None:
            await self.announcer.stop()
            self.announcer = None
        try:
            await self._delete_all()
        except Exception as exc:
            raise AgentError(
                f"cannot remove {self.spec.address}: {_netlink_error(exc)}"
            ) from exc
        self.index = None  # gone from every interface, not just the last one
        if _present(await self._listed(monitor=False)):  # not the monitor's last answer
            raise AgentError(f"{self.spec.address} is still present after removal")
