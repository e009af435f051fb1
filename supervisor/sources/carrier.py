"""Carrier: reads the carrier of each UDP link's interface and of the public interface.

Posts LinkCarrier / PublicCarrier when one changes (the first reading counts as a change).
Reading /sys/class/net/IF/carrier costs a few microseconds; four times a second
(CARRIER_POLL) is enough to notice a pulled cable well within any deadtime. The loop reads
them (``poll``) on its own wake-ups, a beat's or a frame's, when a reading is due before the
next one (supervisor.loop), not on a timer of their own; an interface that carries a link and
is the public one too is read once.

Not rtnetlink's link notifications (RTMGRP_LINK), tried on 2026-12-04 and reverted: on a
real NIC a carrier change is a non-urgent linkwatch event, which the kernel batches at most
once a second (net/core/link_watch.c; a veth's is urgent), so its notification comes up to a
second after sysfs shows the change. In the QEMU pair (one CI run each) the crossover cut was
seen on both nodes 2.3 s after the cut with the watch, 1.4 s with these readings, and the
links were up again 2.3 s against 0.9 s after reconnecting; the one pread a keepalive the
watch saved an idle node was within the idle benchmark's noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from supervisor.core.events import Event, LinkCarrier, PublicCarrier
from supervisor.drivers.netif import read_carrier

CARRIER_POLL = 0.25


class CarrierSource:
    def __init__(self, post: Callable[[Event], object], sys_root: str = "/sys") -> None:
        self.post = post
        self.sys_root = sys_root
        self._links: dict[str, str] = {}
        self._public: str | None = None
        self._seen: dict[str, bool | None] = {}
        self._public_up: bool | None = None

    def watch(self, links: Mapping[str, str], public: str | None) -> None:
        """Watch these links (name -> interface) and this public interface from now on;
        links seen before are reported again at their next reading."""
        self._links = dict(links)
        self._seen = {}
        self._public = public or None

    def poll(self) -> None:
        """Read every watched interface once and post what changed."""
        read: dict[str, bool | None] = {}
        for name, iface in self._links.items():
            up = read[iface] = read_carrier(iface, self.sys_root)
            if up is not None and up != self._seen.get(name):
                self._seen[name] = up
                self.post(LinkCarrier(name, up))
        if self._public:
            iface = self._public
            public = bool(read[iface] if iface in read else read_carrier(iface, self.sys_root))
            if public != self._public_up:
                self._public_up = public
                self.post(PublicCarrier(public))
