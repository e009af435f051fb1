"""Heartbeat transports: a serial null-modem line and UDP sockets bound to an interface.

Each transport delivers received frame lines to ``on_frame(link_name, data, arrived)`` (or,
in a drain given ``into``, appends ``(link_name, data, arrived)`` to that list: what
LinkSet.collect reads at a quiet wake-up) and sends the frames it is given. ``arrived`` is
when the frame arrived, on the loop's clock (``time.monotonic``), when it is known and
differs from now: a UDP datagram read by a drain while the link is paused (the loop's quiet
mode) carries the kernel's receive timestamp (SO_TIMESTAMPNS), so that a beat that waited
in its socket for the loop's next wake-up is heard when it arrived, not when it was read;
None otherwise (read at arrival: now).

None ever blocks the event loop: a transport that cannot write drops the frame and counts it
(heartbeats are periodic; a late one is worth less than a live loop). A transport whose
device is missing (USB serial unplugged, NIC not there yet) retries in the
background; the core sees the link as down meanwhile.

About 590 lines on purpose: the two transports (about 220 lines each) and what they share
(the watched descriptor that quiet mode pauses, the delivery of a frame, the Transport
protocol); split in two, the shared part would need a third module that both import.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

import serial  # pyserial

from supervisor.config import SerialLink, UdpLink
from supervisor.core.codec import LineSplitter

log = logging.getLogger("twinbeat.links")

FrameHandler = Callable[[str, bytes, float | None], None]
#: a frame a paused link's drain took (``drain(into=...)``, see LinkSet.collect): its link, its
#: line, when it arrived (None: not known, it is heard when read)
Taken = tuple[str, bytes, float | None]
#: called with the link's name after a read callback of the loop delivered its frames (see
#: supervisor.linkset.LinkSet: the other links are then read at once, in the same iteration)
ReadDone = Callable[[str], None]


def _no_read_done(_link: str) -> None:
    pass


def deliver(on_frame: FrameHandler, link: str, line: bytes,
            arrived: float | None = None) -> bool:
    """Hand one frame to ``on_frame``; an exception is logged with the frame and swallowed, so
    the frames after it in the same read still arrive. False when it raised."""
    try:
        on_frame(link, line, arrived)
    except Exception:  # one bad frame must not cost the rest of the read, nor the reader
        log.exception("link %s: handling a frame failed; dropped (%d bytes: %s)",
                      link, len(line), line[:512].hex())
        return False
    return True
RETRY_SECONDS = 2.0
#: the most datagrams one drain() reads from a UDP link (a flood must not hold the loop)
DRAIN_MAX = 8
#: the largest UDP payload (IPv6's 65527 bytes, rounded up): the receive buffer's size
MAX_DATAGRAM = 65536
TX_BUFFER_LIMIT = 4096
#: SOL_SOCKET options the socket module does not name (Linux, asm-generic/socket.h; on
#: x86-64 and the other 64-bit ABIs the "old" value is the 64-bit struct timespec):
#: SO_TIMESTAMPNS asks the kernel for each datagram's receive time, handed to recvmsg as
#: an SCM_TIMESTAMPNS control message of the same number
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_TIMESTAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


class Transport(Protocol):
    name: str
    #: frames received that could not be handed on (counted, see deliver)
    rx_errors: int

    def start(self) -> None: ...

    def drain(self, *, one: bool = False, into: list[Taken] | None = None) -> int: ...

    def set_paused(self, paused: bool) -> None: ...

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def info(self) -> dict[str, Any]: ...


class _Watched:
    """A transport's file descriptor, watched by the loop (its reader ``_readable``) unless
    paused: the loop's quiet mode reads it with ``drain()`` at its own wake-ups instead."""

    paused: bool
    _loop: asyncio.AbstractEventLoop | None

    def _fileno(self) -> int | None:
        raise NotImplementedError

    def _readable(self) -> None:
        raise NotImplementedError

    def _watch(self) -> None:
        """The descriptor is open (again): watch it unless paused."""
        fd = self._fileno()
        if not self.paused and fd is not None and self._loop is not None:
            self._loop.add_reader(fd, self._readable)

    def set_paused(self, paused: bool) -> None:
        """Paused: the loop does not watch the descriptor; what arrives waits for drain()."""
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            self._pausing()
        fd = self._fileno()
        if fd is None or self._loop is None:
            return  # watched (or not) when it opens
        if paused:
            self._loop.remove_reader(fd)
        else:
            self._resuming()
            self._loop.add_reader(fd, self._readable)

    def _resuming(self) -> None:
        """Before the loop watches the descriptor again."""

    def _pausing(self) -> None:
        """When the loop stops watching the descriptor."""


class SerialTransport(_Watched):
    """A serial port opened raw and non-blocking (pyserial does the termios set-up)."""

    def __init__(self, link: SerialLink, on_frame: FrameHandler,
                 read_done: ReadDone = _no_read_done) -> None:
        self.name = link.name
        self.link = link
        self.on_frame = on_frame
        self.read_done = read_done
        self.port: serial.Serial | None = None
        #: the open port's descriptor, read and written directly (pyserial's fileno() is a
        #: Python call that checks the port is open: twice a keepalive)
        self._fd = -1
        self.splitter = LineSplitter()
        self.tx = bytearray()
        self.error: str | None = None
        self.tx_dropped = 0
        self.rx_errors = 0
        self.reopens = 0
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self._need_newline = False
        self._writing = False  # a writer callback waits for the port to take the rest
        #: a drain took input since the reader last ran: the loop may call the reader for
        #: input that is gone (its readiness was polled before the drain)
        self._drained = False
        #: the loop the open port is registered with (asked once: on Python 3.11 each
        #: asyncio.get_running_loop() is a getpid() system call, and _flush runs every beat)
        self._loop: asyncio.AbstractEventLoop | None = None
        #: read only by drain() (the loop's quiet mode): no reader on the port
        self.paused = False

    def start(self) -> None:
        self._open()

    def _open(self) -> None:
        self._retry = None
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        try:
            port = serial.Serial(
                self.link.device, self.link.baud, timeout=0, write_timeout=0, exclusive=True
            )
            fd = port.fileno()
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        except (OSError, serial.SerialException) as exc:
            if self.error != str(exc):
                log.warning("serial link %s: cannot open %s: %s (retrying every %.0f s)",
                            self.name, self.link.device, exc, RETRY_SECONDS)
            self.error = str(exc)
            self._retry = loop.call_later(RETRY_SECONDS, self._open)
            return
        if self.error is not None:
            log.info("serial link %s: %s open again", self.name, self.link.device)
        self.error = None
        self.port = port
        self._fd = fd
        self._loop = loop
        self.splitter = LineSplitter()
        self._need_newline = True
        self._watch()

    def _fileno(self) -> int | None:
        return None if self.port is None else self.port.fileno()

    def _resuming(self) -> None:
        self._drained = True  # a drain may have emptied the port since it was last read

    def _fail(self, why: str) -> None:
        log.warning("serial link %s: %s; reopening %s", self.name, why, self.link.device)
        self.error = why
        self._teardown()
        self.reopens += 1
        if not self._closed:
            self._retry = asyncio.get_running_loop().call_later(RETRY_SECONDS, self._open)

    def _teardown(self) -> None:
        loop = asyncio.get_running_loop()
        if self.port is not None:
            fd = self.port.fileno()
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            self._writing = False
            try:
                self.port.close()
            except (OSError, serial.SerialException):
                pass
            self.port = None
            self._fd = -1
        self.tx.clear()

    def _readable(self) -> None:
        drained, self._drained = self._drained, False
        if self._read(drained=drained):
            self.read_done(self.name)

    def drain(self, *, one: bool = False, into: list[Taken] | None = None) -> int:
        """Read what the port holds now, if anything (non-blocking), without ``read_done``;
        the number of lines read (one read of the port: ``one`` changes nothing here), each
        delivered, or appended to ``into`` (a serial line has no arrival time: None).
        An empty read is no hang-up here: a raw tty with VMIN = VTIME = 0 (pyserial's
        timeout=0) answers a read without input with 0 bytes, not EAGAIN; the reader,
        which the loop calls only when the port is readable, tells a hang-up (but once
        right after a drain took the input it was called for)."""
        got = self._read(drain=True, into=into)
        if got:
            self._drained = True
        return got

    def _read(self, *, drain: bool = False, drained: bool = False,
              into: list[Taken] | None = None) -> int:
        """One read of the port; its complete lines delivered: how many (0: nothing read;
        1 for a read that completed no line).
        An empty read is a hang-up, but in a drain, or in the reader right after a drain took
        the input the loop saw (``drained``; a port that did hang up reads empty again on
        the next wake-up and is failed then)."""
        if self.port is None:
            return 0
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self._fail(f"read error: {exc.strerror}")
            return 0
        if not data:
            if not (drain or drained):
                self._fail("hang-up")
            return 0
        lines = self.splitter.feed(data)
        if into is not None:
            name = self.name
            for line in lines:
                into.append((name, line, None))
        else:
            for line in lines:
                if not deliver(self.on_frame, self.name, line):
                    self.rx_errors += 1
        return max(1, len(lines))

    def send(self, data: bytes) -> None:
        if self.port is None:
            return
        if not self.tx and not self._need_newline and len(data) <= TX_BUFFER_LIMIT:
            # the port took all before it (most often): the frame is written as it is, not
            # copied into the buffer first; what the port does not take waits there
            n = self._write(data)
            if n is not None and n < len(data):
                self.tx += data[n:]
                self._wait_writable()
            return
        if self._need_newline:
            # After (re)opening, end whatever half line the peer may have buffered.
            data = b"\n" + data
            self._need_newline = False
        if len(self.tx) + len(data) > TX_BUFFER_LIMIT:
            self.tx_dropped += 1
            self.tx.clear()
            data = b"\n" + data
        self.tx += data
        self._flush()

    def _write(self, data: bytes | bytearray) -> int | None:
        """One non-blocking write of ``data``: how many bytes the port took (None: it failed
        and the port was closed)."""
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno == errno.EIO:
                self._fail("write error (peer end closed?)")
            else:
                self._fail(f"write error: {exc.strerror}")
            return None

    def _flush(self) -> None:
        if self.port is None or not self.tx:
            return
        n = self._write(self.tx)
        if n is None:
            return
        del self.tx[:n]
        if self.tx:
            self._wait_writable()
        elif self._writing:  # (asyncio's remove_writer costs a lookup even when unset)
            (self._loop or asyncio.get_running_loop()).remove_writer(self._fd)
            self._writing = False

    def _wait_writable(self) -> None:
        """What the port did not take waits in ``tx`` for a writer callback."""
        if not self._writing:
            (self._loop or asyncio.get_running_loop()).add_writer(self._fd, self._writable)
            self._writing = True

    def _writable(self) -> None:
        self._flush()

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        self._teardown()

    def info(self) -> dict[str, Any]:
        return {
            "device": self.link.device,
            "baud": self.link.baud,
            "open": self.port is not None,
            "error": self.error,
            "tx_dropped": self.tx_dropped,
            "rx_resyncs": self.splitter.resyncs,
            "rx_errors": self.rx_errors,
            "reopens": self.reopens,
        }


class UdpTransport(_Watched):
    """A UDP socket bound to one interface (SO_BINDTODEVICE) and the heartbeat port.

    Unicast sends to ``peer``; without a peer, to the limited broadcast address (which the
    device binding sends out of this interface only); a multicast peer group is joined.
    """

    def __init__(self, link: UdpLink, on_frame: FrameHandler,
                 read_done: ReadDone = _no_read_done) -> None:
        self.name = link.name
        self.link = link
        self.on_frame = on_frame
        self.read_done = read_done
        #: the bound, non-blocking socket (None until bound; the loop reads it unless paused)
        self.sock: socket.socket | None = None
        self.paused = False
        #: (paused) the monotonic time after which what the socket holds arrived: the start
        #: of the last drain that emptied it, or the pause
        self._read_since = 0.0
        #: a drain with ``one`` stopped after its datagram: when it began (finish_drain)
        self._held: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.error: str | None = None
        self.send_errors = 0
        self.rx_errors = 0
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        peer = link.peer
        self.family = socket.AF_INET6 if peer is not None and peer.version == 6 else socket.AF_INET
        if peer is None:
            self.dest: tuple[str, int] = ("255.255.255.255", link.port)
        else:
            self.dest = (str(peer), link.port)

    def start(self) -> None:
        asyncio.get_running_loop().create_task(self._open())

    def _make_socket(self) -> socket.socket:
        link = self.link
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.interface.encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 6)
            # (the only control message asked for: the paused drain reads the first one)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            peer = link.peer
            if peer is None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            elif peer.is_multicast:
                ifindex = socket.if_nametoindex(link.interface)
                if peer.version == 4:
                    mreqn = struct.pack("4s4si", peer.packed, b"\0" * 4, ifindex)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, link.ttl)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
                else:
                    mreq = peer.packed + struct.pack("@I", ifindex)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, link.ttl)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            sock.bind(("::" if self.family == socket.AF_INET6 else "0.0.0.0", link.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def _open(self) -> None:
        self._retry = None
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        try:
            sock = self._make_socket()
        except OSError as exc:
            why = "no such interface" if exc.errno == errno.ENODEV else str(exc)
            if self.error != why:
                log.warning("udp link %s: cannot bind to %s port %d: %s (retrying)",
                            self.name, self.link.interface, self.link.port, why)
            self.error = why
            self._retry = loop.call_later(
                RETRY_SECONDS, lambda: loop.create_task(self._open())
            )
            return
        if self.error is not None:
            log.info("udp link %s: bound to %s again", self.name, self.link.interface)
        self.error = None
        self.sock = sock
        self._read_since = time.monotonic()
        self._loop = loop
        self._watch()

    def _fileno(self) -> int | None:
        return None if self.sock is None else self.sock.fileno()

    def _readable(self) -> None:
        if self.drain():
            self.read_done(self.name)

    def drain(self, *, one: bool = False, into: list[Taken] | None = None) -> int:
        """Read the datagrams the socket holds now (non-blocking; at most DRAIN_MAX: a flood
        must not hold the loop), each delivered, or appended to ``into`` (while paused, see
        LinkSet.collect), without ``read_done``; how many. An error
        the socket reports (an ICMP error of an earlier send) is counted with the send
        errors. With ``one``, while paused: the first datagram only, if there is one, and
        ``finish_drain`` must follow (the caller asked every link at once whether it holds
        more, with one poll, instead of a read that fails with EAGAIN on each)."""
        sock = self.sock
        if sock is None:
            return 0
        if self.paused:
            return self._drain_waited(sock, one=one, into=into)
        got = 0
        for _ in range(DRAIN_MAX):
            try:
                data = sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.send_errors += 1
                break
            got += 1
            if into is not None:
                into.append((self.name, data, None))
            elif not deliver(self.on_frame, self.name, data):
                self.rx_errors += 1
        return got

    def _pausing(self) -> None:
        self._read_since = time.monotonic()

    def holds_drain(self) -> bool:
        """A drain with ``one`` stopped after its datagram: ``finish_drain`` must follow."""
        return self._held is not None

    def finish_drain(self, more: bool, into: list[Taken] | None = None) -> int:
        """End the drain that stopped after one datagram: read on if the socket holds
        ``more`` (as the drain would have gone on), else it was emptied by it. How many
        datagrams that drain read in all."""
        held, self._held = self._held, None
        if held is None:
            return 0
        if more and self.sock is not None and self.paused:
            return self._drain_waited(self.sock, start=1, read_at=held, into=into)
        self._read_since = held  # what the socket holds next arrived after that drain
        return 1

    def _drain_waited(self, sock: socket.socket, *, one: bool = False, start: int = 0,
                      read_at: float | None = None, into: list[Taken] | None = None) -> int:
        """``drain`` while paused: the datagrams may have waited in the socket since the
        loop's last wake-up, each is delivered (or appended to ``into``) with when it
        arrived: the kernel's receive time (CLOCK_REALTIME) moved onto the monotonic clock
        by the two clocks' difference now. A receive time that cannot be true, before the
        last drain that emptied the socket (or the pause) or after this read, means the wall
        clock was stepped in between (an NTP step, a resumed VM): that datagram is heard at
        the read, as without a timestamp. The last datagram a drain may read (DRAIN_MAX: a
        loop that stalled may have left more behind it) is heard at the read too."""
        self._held = None  # (one left by a collect that an exception cut short is stale)
        if read_at is None:
            read_at = time.monotonic()
        since, offset = self._read_since, None
        last = DRAIN_MAX - 1
        for n in range(start, DRAIN_MAX):
            try:
                data, ancillary, _flags, _addr = sock.recvmsg(MAX_DATAGRAM, _TIMESTAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                self._read_since = read_at  # what the socket holds next arrived after this
                return n
            except OSError:
                self.send_errors += 1
                return n
            arrived: float | None = None
            if n == last:
                arrived = time.monotonic()
            elif ancillary:
                _level, kind, value = ancillary[0]  # (the only kind asked for)
                if kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    if offset is None:
                        offset = time.monotonic() - time.time_ns() / 1e9
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    at = sec + nsec / 1e9 + offset
                    if at > read_at:  # (it may have come while the ones before were handled)
                        read_at = time.monotonic()
                    arrived = at if since <= at <= read_at else read_at
            if into is not None:
                into.append((self.name, data, arrived))
            elif not deliver(self.on_frame, self.name, data, arrived):
                self.rx_errors += 1
            if one:  # (n == 0) whether more waits: finish_drain
                self._held = read_at
                return 1
        return DRAIN_MAX

    def send(self, data: bytes) -> None:
        """One datagram, now; a full socket buffer drops it (counted): a late beat is worth
        less than a loop that waits."""
        if self.sock is None:
            return
        try:
            self.sock.sendto(data, self.dest)
        except OSError:
            self.send_errors += 1

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        sock, self.sock = self.sock, None
        if sock is not None:
            if not self.paused and self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()

    def info(self) -> dict[str, Any]:
        return {
            "interface": self.link.interface,
            "destination": f"{self.dest[0]}:{self.dest[1]}",
            "bound": self.sock is not None,
            "error": self.error,
            "send_errors": self.send_errors,
            "rx_errors": self.rx_errors,
        }


def make_transport(link: SerialLink | UdpLink, on_frame: FrameHandler,
                   read_done: ReadDone = _no_read_done) -> Transport:
    if isinstance(link, SerialLink):
        return SerialTransport(link, on_frame, read_done)
    return UdpTransport(link, on_frame, read_done)
