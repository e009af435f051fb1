"""Carrier: reads the carrier of each UDP link's interface and of the public interface.

Posts LinkCarrier / PublicCarrier when one changes (the first reading counts as a change).
Under the real /sys the source watches the kernel's link notifications (rtnetlink's
RTMGRP_LINK, a socket on the loop: ``start``): the carriers are read the moment one changes,
and otherwise only every CARRIER_WATCHED in case a change went by unsaid. Without the watch
(a test's sysfs, a socket that cannot be opened or failed) they are read every CARRIER_POLL:
a few microseconds a reading, four times a second is enough to notice a pulled cable well
within any deadtime. The loop reads them (``poll``) on its own wake-ups, a beat's or a
frame's, when a reading is due before the next one (supervisor.loop), not on a timer of
their own (``interval`` says how often); an interface that carries a link and is the public
one too is read once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable, Mapping

from supervisor.core.events import Event, LinkCarrier, PublicCarrier
from supervisor.drivers.netif import open_link_watch, read_carrier

log = logging.getLogger("twinbeat")

CARRIER_POLL = 0.25
#: how often the carriers are read while the kernel's link notifications are watched
CARRIER_WATCHED = 10.0
#: the most notifications one wake-up reads (a flood must not hold the loop; the rest wake
#: it again)
WATCH_READS = 64


class CarrierSource:
    def __init__(self, post: Callable[[Event], object], sys_root: str = "/sys", *,
                 notified: bool | None = None) -> None:
        self.post = post
        self.sys_root = sys_root
        #: whether ``start`` watches the kernel's link notifications (None: under the real
        #: /sys only, a test's sysfs has none)
        self.notified = sys_root == "/sys" if notified is None else notified
        self._links: dict[str, str] = {}
        self._public: str | None = None
        self._seen: dict[str, bool | None] = {}
        self._public_up: bool | None = None
        #: the link notifications' socket, watched by the loop (None: read every CARRIER_POLL)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def interval(self) -> float:
        """How often the loop reads the carriers (seconds)."""
        return CARRIER_POLL if self._sock is None else CARRIER_WATCHED

    @property
    def watched(self) -> bool:
        """Whether a carrier's change is read the moment the kernel reports it."""
        return self._sock is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the kernel's link notifications on ``loop`` (when ``notified``). A socket
        that cannot be opened leaves the readings every CARRIER_POLL, said in the log."""
        if not self.notified or self._sock is not None:
            return
        try:
            sock = open_link_watch()
        except OSError as exc:
            log.warning("carriers: cannot watch the kernel's link notifications (%s); read "
                        "every %g s", exc, CARRIER_POLL)
            return
        loop.add_reader(sock.fileno(), self._notified)
        self._sock, self._loop = sock, loop

    def _notified(self) -> None:
        """The kernel reported link changes: read what it queued (without looking inside: a
        change is a change), then the carriers. Lost notifications (ENOBUFS) are a change
        too; another error ends the watch (readings every CARRIER_POLL from then on)."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(WATCH_READS):
            try:
                sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue
                log.warning("carriers: the link notifications failed (%s); read every %g s",
                            exc, CARRIER_POLL)
                self.close()
                break
        self.poll()

    def close(self) -> None:
        """Stop watching the link notifications."""
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()

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
