"""The loop's links (supervisor.linkset): a beat goes out on every link; a frame that is not
a beat (history) on one UDP link that delivers, so the serial line stays free for beats, and on
every link when none delivers. Transports are built but never started (no socket, no port)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import SerialLink, UdpLink
from supervisor.drivers.links import SerialTransport, Transport, UdpTransport
from supervisor.drivers.netif import read_carrier
from supervisor.linkset import LinkSet


def linkset(monkeypatch: pytest.MonkeyPatch) -> tuple[LinkSet, list[tuple[str, bytes]]]:
    sent: list[tuple[str, bytes]] = []
    links = LinkSet(lambda _link, _data, _arrived: None)
    transports: list[Transport] = [
        SerialTransport(SerialLink("ser", "/dev/ttyS0"), links.on_frame),
        UdpTransport(UdpLink("lan", "eth0"), links.on_frame),
        UdpTransport(UdpLink("dmz", "eth1"), links.on_frame),
    ]
    for t in transports:
        monkeypatch.setattr(t, "send", lambda data, name=t.name: sent.append((name, data)))
        links.transports[t.name] = t
    return links, sent


def _free_udp_ports(n: int) -> list[int]:
    """``n`` UDP ports on 127.0.0.1 that were free a moment ago."""
    import socket

    ports = []
    for _ in range(n):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    return ports


async def _open_on_lo(links: LinkSet, ports: list[int]) -> None:
    """Open UDP links "a" and "b" on lo, one per port, and wait (at most 1 s) until both
    sockets are bound."""
    import asyncio
    from ipaddress import ip_address

    links.open([UdpLink(name, "lo", ip_address("127.0.0.1"), port)
                for name, port in zip("ab", ports, strict=True)])
    for _ in range(100):
        if all(isinstance(t, UdpTransport) and t.sock is not None
               for t in links.transports.values()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the links did not bind: {[t.info() for t in links.transports.values()]}")


def test_a_beat_goes_out_on_every_link(monkeypatch: pytest.MonkeyPatch) -> None:
    links, sent = linkset(monkeypatch)
    links.send(b"beat")
    assert sent == [("ser", b"beat"), ("lan", b"beat"), ("dmz", b"beat")]


@pytest.mark.parametrize(("delivering", "expected"), [
    ({"dmz"}, ["dmz"]),                  # the one UDP link that delivers
    ({"lan", "dmz"}, ["lan"]),           # one of them, not both
    ({"ser", "dmz"}, ["dmz"]),           # never the serial line while a UDP link delivers
    ({"ser"}, ["ser", "lan", "dmz"]),    # no UDP link delivers: every link
    (set(), ["ser", "lan", "dmz"]),
])
def test_a_history_frame_goes_out_on_one_udp_link_that_delivers(
        monkeypatch: pytest.MonkeyPatch, delivering: set[str], expected: list[str]) -> None:
    links, sent = linkset(monkeypatch)
    links.send_aside(b"history", lambda name: name in delivering)
    assert sent == [(name, b"history") for name in expected]


def test_the_carriers_to_watch_are_the_udp_links_interfaces(
        monkeypatch: pytest.MonkeyPatch) -> None:
    links, _sent = linkset(monkeypatch)
    assert links.interfaces() == {"lan": "eth0", "dmz": "eth1"}


def test_read_carrier_reads_sysfs_carrier(tmp_path: Path) -> None:
    """1 is a carrier, 0 none; an interface without a carrier file (down) has none; an
    interface that does not exist is None."""
    for name, text in (("up0", "1\n"), ("down0", "0\n")):
        (tmp_path / "class" / "net" / name).mkdir(parents=True)
        (tmp_path / "class" / "net" / name / "carrier").write_text(text)
    (tmp_path / "class" / "net" / "nofile0").mkdir(parents=True)
    assert read_carrier("up0", str(tmp_path)) is True
    assert read_carrier("down0", str(tmp_path)) is False
    assert read_carrier("nofile0", str(tmp_path)) is False
    assert read_carrier("gone0", str(tmp_path)) is None


async def _bound(t: UdpTransport) -> UdpTransport:
    """``t`` started, once its socket is bound (on lo: at once)."""
    import asyncio

    t.start()
    for _ in range(100):
        if t.sock is not None:
            break
        await asyncio.sleep(0.01)
    assert t.sock is not None, t.error
    return t


def test_a_udp_link_reads_datagrams_up_to_the_largest_whole(tmp_path: Path) -> None:
    """A UDP link reads into MAX_DATAGRAM (not asyncio's 256 KiB, an mmap per frame): a
    frame and the largest UDP payload both arrive whole, in order (on lo, a port of the
    test's own; binding to a device needs root, as the supervisor and the tests have)."""
    import asyncio
    import socket
    from ipaddress import ip_address

    from supervisor.drivers.links import MAX_DATAGRAM

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    got: list[bytes] = []

    async def scenario() -> UdpTransport:
        t = await _bound(UdpTransport(UdpLink("lo", "lo", ip_address("127.0.0.1"), port),
                                      lambda _link, data, _at: got.append(data)))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"TB1:frame\n", ("127.0.0.1", port))
            s.sendto(b"x" * 65507, ("127.0.0.1", port))
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        t.close()
        return t

    t = asyncio.run(scenario())
    assert got == [b"TB1:frame\n", b"x" * 65507]
    assert MAX_DATAGRAM >= 65527 and t.sock is None


def test_a_paused_links_datagram_is_delivered_with_when_it_arrived() -> None:
    """While the link is paused (the loop's quiet mode) a datagram waits in its socket for
    the loop's next wake-up; the drain hands it over with when it arrived (the kernel's
    receive timestamp on the monotonic clock), not when it was read: 80 ms after it was
    sent here. Read at arrival (not paused), no arrival is given (it is now)."""
    import asyncio
    import socket
    import time
    from ipaddress import ip_address

    port = _free_udp_ports(1)[0]
    got: list[tuple[bytes, float | None]] = []

    async def scenario() -> tuple[float, float, float]:
        t = UdpTransport(UdpLink("lo", "lo", ip_address("127.0.0.1"), port),
                         lambda _link, data, at: got.append((data, at)))
        t.set_paused(True)
        await _bound(t)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            before = time.monotonic()
            s.sendto(b"TB1:waited\n", ("127.0.0.1", port))
            sent = time.monotonic()
            await asyncio.sleep(0.08)
            assert got == []  # paused: nothing read it
            read = time.monotonic()
            assert t.drain() == 1
            t.set_paused(False)
            s.sendto(b"TB1:at arrival\n", ("127.0.0.1", port))
            for _ in range(100):
                if len(got) == 2:
                    break
                await asyncio.sleep(0.01)
        t.close()
        return before, sent, read

    before, sent, read = asyncio.run(scenario())
    assert [data for data, _ in got] == [b"TB1:waited\n", b"TB1:at arrival\n"]
    arrived = got[0][1]
    assert arrived is not None
    # the receive time lies between the send and its return (the clocks' difference is
    # read once a drain: allow a millisecond for it), well before the read
    assert before - 0.001 <= arrived <= sent + 0.001, (before, arrived, sent)
    assert read - arrived >= 0.07
    assert got[1][1] is None


def test_a_paused_link_that_holds_more_than_a_drain_hears_the_last_one_read_at_the_read() -> None:
    """More datagrams than one drain reads (DRAIN_MAX: a loop that stalled): the oldest are
    read with their arrivals, the last one a drain may read is heard at the read (newer ones
    may wait behind it), and the next drain reads the rest."""
    import socket
    import time
    from ipaddress import ip_address

    from supervisor.drivers.links import DRAIN_MAX

    port = _free_udp_ports(1)[0]
    got: list[tuple[bytes, float | None]] = []
    t = UdpTransport(UdpLink("lo", "lo", ip_address("127.0.0.1"), port),
                     lambda _link, data, at: got.append((data, at)))
    t.paused = True
    t.sock = t._make_socket()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n in range(DRAIN_MAX + 2):
                s.sendto(b"TB1:%d\n" % n, ("127.0.0.1", port))
            sent = time.monotonic()
        time.sleep(0.05)
        assert t.drain() == DRAIN_MAX
        read = time.monotonic()
        assert t.drain() == 2
    finally:
        t.sock.close()
    assert [data for data, _ in got] == [b"TB1:%d\n" % n for n in range(DRAIN_MAX + 2)]
    times = [at for _, at in got]
    assert all(at is not None and at <= sent for at in times[:DRAIN_MAX - 1]), times
    last = times[DRAIN_MAX - 1]
    assert last is not None and sent + 0.04 <= last <= read, (sent, last, read)
    assert all(at is not None and at <= sent for at in times[DRAIN_MAX:]), times


def test_a_read_takes_what_the_other_links_hold_and_hands_the_batch_over_at_once() -> None:
    """A frame read on one link, and those the other links hold at that moment, make one
    batch handed to on_batch in that same loop iteration (no call_soon, no second iteration);
    the other links' own readers then find nothing."""
    import asyncio
    import socket

    ports = _free_udp_ports(2)
    batches: list[list[tuple[str, bytes]]] = []
    frames: list[tuple[str, bytes]] = []
    reading: list[bool] = []

    def on_batch() -> None:
        batches.append(frames[:])
        frames.clear()

    async def scenario() -> None:
        def on_frame(link: str, data: bytes, _arrived: float | None = None) -> None:
            frames.append((link, data))
            reading.append(links.reading)

        links = LinkSet(on_frame, on_batch)
        await _open_on_lo(links, ports)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"beat\n", ("127.0.0.1", ports[0]))
            s.sendto(b"beat\n", ("127.0.0.1", ports[1]))
        for _ in range(100):
            if batches:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)
        links.close()
        assert not links.reading

    asyncio.run(scenario())
    assert len(batches) == 1 and sorted(batches[0]) == [("a", b"beat\n"), ("b", b"beat\n")]
    assert reading == [True, True] and frames == []


def test_read_carrier_keeps_the_file_open_and_reads_it_again(tmp_path: Path) -> None:
    """keep_open (the default under the real /sys): the carrier file stays open and is read
    again from its start; a file that went away is opened by its path again; None once the
    interface is gone."""
    import os

    from supervisor.drivers import netif

    net = tmp_path / "class" / "net" / "eth9"
    net.mkdir(parents=True)
    carrier = net / "carrier"
    carrier.write_text("1\n")
    path = str(carrier)
    try:
        assert read_carrier("eth9", str(tmp_path), keep_open=True) is True
        fd = netif._CARRIER_FDS[path]
        carrier.write_text("0\n")  # the same file, new content (as sysfs shows it)
        assert read_carrier("eth9", str(tmp_path), keep_open=True) is False
        assert netif._CARRIER_FDS[path] == fd  # read again, not opened again
        os.close(fd)  # a read that fails (EISDIR here, ENODEV in sysfs): by the path again
        netif._CARRIER_FDS[path] = os.open(str(net), os.O_RDONLY)
        assert read_carrier("eth9", str(tmp_path), keep_open=True) is False
        assert path in netif._CARRIER_FDS
        carrier.unlink()
        net.rmdir()
        netif.forget_carriers()
        assert read_carrier("eth9", str(tmp_path), keep_open=True) is None
        assert read_carrier("eth9", str(tmp_path)) is None and path not in netif._CARRIER_FDS
    finally:
        netif.forget_carriers()


def test_paused_links_wait_for_collect_and_read_at_arrival_once_resumed() -> None:
    """Paused (quiet), the loop watches no link: datagrams wait in their sockets until
    collect() reads them all and returns them (not handed to on_frame: the caller steps
    them) with how many one link held; resumed, a datagram is read when it arrives and
    handed to on_frame, then on_batch."""
    import asyncio
    import socket

    ports = _free_udp_ports(2)
    batches: list[list[tuple[str, bytes]]] = []
    frames: list[tuple[str, bytes]] = []
    collected: list[list[tuple[str, bytes]]] = []
    most: list[int] = []

    def on_batch() -> None:
        batches.append(frames[:])
        frames.clear()

    async def scenario() -> None:
        links = LinkSet(lambda link, data, _arrived: frames.append((link, data)), on_batch)
        links.set_paused(True)  # before the sockets are bound: they are bound paused
        await _open_on_lo(links, ports)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"beat 1\n", ("127.0.0.1", ports[0]))
            s.sendto(b"beat 2\n", ("127.0.0.1", ports[0]))
            s.sendto(b"beat 1\n", ("127.0.0.1", ports[1]))
            await asyncio.sleep(0.1)
            assert batches == [] and frames == []  # nobody read them
            taken, held = links.collect()
            most.append(held)
            assert batches == [] and frames == []  # not handed over: returned
            collected.append([(link, data) for link, data, _at in taken])
            links.set_paused(False)
            s.sendto(b"beat 3\n", ("127.0.0.1", ports[1]))
            for _ in range(100):
                if len(batches) == 2:
                    break
                await asyncio.sleep(0.01)
            taken, held = links.collect()
            assert taken == []
            most.append(held)
        links.close()

    asyncio.run(scenario())
    # (each link's first datagram, then what a link held more: in order within a link)
    assert collected == [[("a", b"beat 1\n"), ("b", b"beat 1\n"), ("a", b"beat 2\n")]]
    assert batches == [[("b", b"beat 3\n")]] and most == [2, 0]


class _CountingSocket:
    """A socket whose recvmsg calls are counted (the rest is the socket's)."""

    def __init__(self, sock: object) -> None:
        self._sock = sock
        self.recvmsg_calls = 0

    def recvmsg(self, *args: object) -> object:
        self.recvmsg_calls += 1
        return self._sock.recvmsg(*args)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def test_collect_reads_each_paused_link_once_then_asks_one_poll_for_more() -> None:
    """collect() reads each paused UDP link once, then one poll says which hold more: a link
    that held one datagram is read once (no read that fails with EAGAIN), its next datagram
    counted as arrived after this read; a link that held more than DRAIN_MAX is read on up
    to DRAIN_MAX, the last of them heard at the read, and the rest at the next collect. Every
    datagram is returned, in order per link, with its arrival; none is handed to on_frame."""
    import socket
    import time
    from ipaddress import ip_address

    from supervisor.drivers.links import DRAIN_MAX

    ports = _free_udp_ports(2)
    got: list[tuple[str, bytes, float | None]] = []
    handed: list[object] = []
    links = LinkSet(lambda link, data, at: handed.append(data), lambda: handed.append(None))
    links.paused = True
    counting: dict[str, _CountingSocket] = {}
    for name, port in zip("ab", ports, strict=True):
        t = UdpTransport(UdpLink(name, "lo", ip_address("127.0.0.1"), port), links._frame)
        t.paused = True
        counting[name] = _CountingSocket(t._make_socket())
        t.sock = counting[name]  # type: ignore[assignment]
        links.transports[name] = t
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n in range(DRAIN_MAX + 2):
                s.sendto(b"a%d\n" % n, ("127.0.0.1", ports[0]))
            s.sendto(b"b0\n", ("127.0.0.1", ports[1]))
            sent = time.monotonic()
            time.sleep(0.05)
            before = time.monotonic()
            taken, most = links.collect()
            assert most == DRAIN_MAX and len(taken) == DRAIN_MAX + 1
            got += taken
            read = time.monotonic()
            assert counting["b"].recvmsg_calls == 1  # one datagram, one read
            assert counting["a"].recvmsg_calls == DRAIN_MAX
            b = links.transports["b"]
            assert isinstance(b, UdpTransport) and before <= b._read_since <= read
            assert not b.holds_drain()
            taken, most = links.collect()
            assert most == 2 and len(taken) == 2  # the rest of a: read on until empty
            got += taken
            assert counting["b"].recvmsg_calls == 2  # b held nothing: one read that failed
    finally:
        for c in counting.values():
            c._sock.close()  # type: ignore[attr-defined]
    assert handed == []
    a = [(data, at) for link, data, at in got if link == "a"]
    assert [data for data, _ in a] == [b"a%d\n" % n for n in range(DRAIN_MAX + 2)]
    assert all(at is not None and at <= sent for _, at in a[:DRAIN_MAX - 1]), a
    last = a[DRAIN_MAX - 1][1]
    assert last is not None and sent + 0.04 <= last <= read, (sent, last, read)
    assert [(link, data) for link, data, _ in got if link == "b"] == [("b", b"b0\n")]


def test_a_drain_cut_short_after_one_datagram_leaves_nothing_stale() -> None:
    """A collect that an exception cut short between a link's ``drain(one=True)`` and its
    ``finish_drain``: the next drain of that link starts afresh (an empty socket reads 0 and
    holds nothing; a stale hold would make the next collect count a datagram it never read
    and move the link's read time back)."""
    import socket
    import time
    from ipaddress import ip_address

    port = _free_udp_ports(1)[0]
    got: list[bytes] = []
    t = UdpTransport(UdpLink("lo", "lo", ip_address("127.0.0.1"), port),
                     lambda _link, data, _at: got.append(data))
    t.paused = True
    t.sock = t._make_socket()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"TB1:0\n", ("127.0.0.1", port))
        time.sleep(0.02)
        assert t.drain(one=True) == 1 and t.holds_drain()
        # (no finish_drain: the collect was cut short)
        before = time.monotonic()
        assert t.drain(one=True) == 0
        assert not t.holds_drain()
        assert t._read_since >= before
        assert t.finish_drain(False) == 0
    finally:
        t.sock.close()
    assert got == [b"TB1:0\n"]


@pytest.mark.parametrize("step", [10.0, -10.0])
def test_a_wall_clock_step_between_arrival_and_read_makes_the_datagram_heard_at_the_read(
        monkeypatch: pytest.MonkeyPatch, step: float) -> None:
    """The receive timestamp is wall-clock time: stepped forward between the arrival and the
    read (an NTP step, a resumed VM), the datagram would seem to have arrived before the
    last read that emptied the socket, stepped back, after the read itself; either way it is
    heard at the read (as without a timestamp), never long ago: a live peer must not look
    silent."""
    import socket
    import time
    from ipaddress import ip_address

    port = _free_udp_ports(1)[0]
    got: list[tuple[bytes, float | None]] = []
    t = UdpTransport(UdpLink("lo", "lo", ip_address("127.0.0.1"), port),
                     lambda _link, data, at: got.append((data, at)))
    t.sock = t._make_socket()
    t.set_paused(True)
    try:
        assert t.drain() == 0  # emptied: what it holds next arrived after this
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"TB1:stepped\n", ("127.0.0.1", port))
            s.sendto(b"TB1:later\n", ("127.0.0.1", port))
        time.sleep(0.03)
        real = time.time_ns
        monkeypatch.setattr(time, "time_ns", lambda: real() + int(step * 1e9))
        before = time.monotonic()
        assert t.drain() == 2
        after = time.monotonic()
    finally:
        t.sock.close()
    assert [data for data, _ in got] == [b"TB1:stepped\n", b"TB1:later\n"]
    for _data, at in got:
        assert at is not None and before <= at <= after, (before, at, after)
