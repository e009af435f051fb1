"""The loop's heartbeat links: one open transport per configured link (``supervisor.drivers.
links``), opened again when a reload changes the links. A beat goes out on every link; a frame
that is not a beat (history) on one UDP link that delivers, so that the serial line's 115200
baud stays free for beats. Received lines go to ``on_frame``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from supervisor.config import Link, UdpLink
from supervisor.drivers import links as linkdrv


class LinkSet:
    def __init__(self, on_frame: linkdrv.FrameHandler) -> None:
        self.on_frame = on_frame
        self.transports: dict[str, linkdrv.Transport] = {}

    def open(self, links: Iterable[Link]) -> None:
        for link in links:
            transport = linkdrv.make_transport(link, self.on_frame)
            self.transports[link.name] = transport
            transport.start()

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
    return set(linkdrv.own_addresses(peers)) if peers else set()
