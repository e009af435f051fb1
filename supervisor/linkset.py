"""The loop's heartbeat links: one open transport per configured link (``supervisor.drivers.
links``), opened again when a reload changes the links. A beat goes out on every link; a frame
that is not a beat (history) on one UDP link that delivers, so that the serial line's 115200
baud stays free for beats. Lines read at arrival go to ``on_frame``.

While the node is idle the links may be paused (``set_paused``: the loop watches none of
them) and read by ``collect`` at the loop's own wake-ups (supervisor.core.quiet), which
returns what it read, each line with when it arrived if the drain knows it (see
supervisor.drivers.links), for the loop to step.

When one link's read callback has delivered its frames, the other links are read at once
(non-blocking: what they hold now, the copies of the same beat most often) and ``on_batch``
is called, in the same iteration of the loop: the frames of one wake-up are stepped together
without a second loop iteration for it (``call_soon``: one more epoll_wait and the loop's
bookkeeping on every frame's wake-up, issue 12). ``reading`` is True from a read's first frame
to its ``on_batch``: frames handed to ``on_frame`` otherwise (tests) are the caller's to batch.
"""

from __future__ import annotations

import select
from collections.abc import Callable, Iterable

from supervisor.config import Link, UdpLink
from supervisor.drivers import links as linkdrv
from supervisor.drivers.netif import own_addresses


class LinkSet:
    def __init__(self, on_frame: linkdrv.FrameHandler,
                 on_batch: Callable[[], None] | None = None) -> None:
        self.on_frame = on_frame
        self.on_batch = on_batch
        self.transports: dict[str, linkdrv.Transport] = {}
        #: a transport's read is delivering its frames; on_batch follows in this iteration
        self.reading = False
        self._draining = False
        #: the links are paused (see set_paused); links opened later are opened paused
        self.paused = False
        #: (collect) the poll object of the sockets it asks, and their descriptors
        self._poller = select.poll()
        self._poll_fds: tuple[int, ...] = ()

    def open(self, links: Iterable[Link]) -> None:
        deliver = self._frame if self.on_batch is not None else self.on_frame
        for link in links:
            transport = linkdrv.make_transport(link, deliver, self._read_done)
            self.transports[link.name] = transport
            transport.set_paused(self.paused)
            transport.start()

    def _frame(self, link: str, data: bytes, arrived: float | None) -> None:
        self.reading = True
        self.on_frame(link, data, arrived)

    def _read_done(self, link: str) -> None:
        """After ``link``'s read callback delivered its frames: read the other links (what
        they hold now), then ``on_batch``."""
        if self._draining or self.on_batch is None:
            return  # (a drain's own reads)
        self._drain(but=link)

    def set_paused(self, paused: bool) -> None:
        """Paused: no link is watched by the loop; frames wait until ``collect``."""
        self.paused = paused
        for transport in self.transports.values():
            transport.set_paused(paused)

    def collect(self) -> tuple[list[linkdrv.Taken], int]:
        """Read what every link holds now (non-blocking): the frames read at a wake-up of the
        loop's own (quiet, see supervisor.core.quiet), in the order read, each (link, line,
        when it arrived or None), not handed to ``on_frame``: the caller steps them; and the
        most frames one link held.

        A UDP link is read once (``drain(one=True)``: its beat, most often all it holds),
        then one poll of the links that gave a datagram tells which hold more, read on; a
        read per link that fails with EAGAIN cost more. Measured on this project's machine
        (2 cores), two sockets read right after a 100 ms sleep: 62 us with the poll, 83 us
        with the reads that fail (the first exception of a wake-up is slow)."""
        frames: list[linkdrv.Taken] = []
        most = 0
        held = []
        for transport in self.transports.values():
            got = transport.drain(one=True, into=frames)
            most = max(most, got)
            if isinstance(transport, linkdrv.UdpTransport) and transport.holds_drain():
                held.append(transport)
        if held:
            more = self._more(held)
            for transport in held:
                got = transport.finish_drain(transport in more, into=frames)
                most = max(most, got)
        return frames, most

    def _drain(self, but: str) -> None:
        """Read every link but ``but`` (non-blocking), each frame handed to ``on_frame``,
        then ``on_batch``."""
        self._draining = True
        try:
            for name, transport in self.transports.items():
                if name != but:
                    transport.drain()
        finally:
            self._draining = False
            self.reading = False
        if self.on_batch is not None:
            self.on_batch()

    def _more(self, held: list[linkdrv.UdpTransport]) -> list[linkdrv.UdpTransport]:
        """Which of ``held`` hold more now: one poll(2) that waits for nothing (the poll
        object is kept while the sockets are the same ones)."""
        # (loops: each comprehension makes a function object, twice a keepalive)
        numbers = []
        for t in held:
            numbers.append(t.sock.fileno() if t.sock is not None else -1)
        fds = tuple(numbers)
        if fds != self._poll_fds:
            self._poller = select.poll()
            for fd in fds:
                if fd >= 0:
                    self._poller.register(fd, select.POLLIN)
            self._poll_fds = fds
        ready = dict(self._poller.poll(0))
        more = []
        for t, fd in zip(held, fds, strict=True):
            if fd in ready:
                more.append(t)
        return more

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()

    def reopen(self, links: Iterable[Link]) -> None:
        self.close()
        self.transports = {}
        self.open(links)

    def interfaces(self) -> dict[str, str]:
        """The UDP links' interfaces, by link (the carriers to watch)."""
        return {name: t.link.interface for name, t in self.transports.items()
                if isinstance(t, linkdrv.UdpTransport) and t.link.interface}

    def send(self, data: bytes) -> None:
        for transport in self.transports.values():
            transport.send(data)

    def send_aside(self, data: bytes, delivers: Callable[[str], bool]) -> None:
        """A frame that is not a beat (history): on one UDP link that ``delivers``, so that
        the serial line's 115200 baud stays free for beats; on every link when none does."""
        udp: list[linkdrv.Transport] = [t for name, t in self.transports.items()
               if isinstance(t, linkdrv.UdpTransport) and delivers(name)]
        for transport in udp[:1] or list(self.transports.values()):
            transport.send(data)


async def local_addresses(links: Iterable[Link]) -> set[object]:
    """The links' peers that are this host's own addresses (see without_links_to)."""
    peers = [lk.peer for lk in links if isinstance(lk, UdpLink) and lk.peer is not None]
    return set(own_addresses(peers)) if peers else set()
