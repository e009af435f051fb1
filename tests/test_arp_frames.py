"""ARP and neighbour-advertisement frames, byte for byte, and the announcer's schedule."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from supervisor.config import TakeoverConfig
from supervisor.drivers import arp

MAC = bytes.fromhex("020000aabbcc")
V4 = ipaddress.IPv4Address("192.168.85.3")
V6 = ipaddress.IPv6Address("2001:db8:85::50")


def test_mac_conversion():
    assert arp.mac_bytes("02:00:00:AA:bb:cc") == MAC
    assert arp.format_mac(MAC) == "02:00:00:aa:bb:cc"


def test_garp_request_bytes():
    frame = arp.garp_request(MAC, V4)
    expected = bytes.fromhex(
        "ffffffffffff"  # Ethernet destination: broadcast
        "020000aabbcc"  # Ethernet source
        "0806"  # EtherType ARP
        "0001"  # hardware type Ethernet
        "0800"  # protocol type IPv4
        "06" "04"  # address lengths
        "0001"  # op: request
        "020000aabbcc" "c0a85503"  # sender MAC, sender IP 192.168.85.3
        "000000000000" "c0a85503"  # target MAC zero, target IP = sender IP
    ) + bytes(18)  # padding to 60 bytes
    assert frame == expected
    assert len(frame) == 60


def test_garp_reply_bytes():
    frame = arp.garp_reply(MAC, V4)
    assert frame[:14] == bytes.fromhex("ffffffffffff020000aabbcc0806")
    assert frame[20:22] == b"\x00\x02"  # op: reply
    assert frame[22:28] == MAC and frame[28:32] == bytes([192, 168, 85, 3])
    # Linux takes a reply as gratuitous only when target MAC == sender MAC
    assert frame[32:38] == MAC and frame[38:42] == bytes([192, 168, 85, 3])


def test_probe_bytes_and_parse():
    frame = arp.arp_probe(MAC, V4)
    assert frame[28:32] == bytes(4)  # sender IP 0.0.0.0
    packet = arp.parse_arp(frame)
    assert packet is not None
    assert packet.op == arp.ARPOP_REQUEST
    assert packet.sender_ip == ipaddress.IPv4Address("0.0.0.0")
    assert packet.target_ip == V4
    assert packet.sender_mac == MAC
    assert arp.parse_arp(arp.unsolicited_na(MAC, V6)) is None
    assert arp.parse_arp(frame[:30]) is None


def test_conflict_detection_rules():
    other = bytes.fromhex("02ffeeddccbb")
    reply = arp.parse_arp(arp.arp_frame(
        arp.ARPOP_REPLY, src_mac=other, sender_ip=V4, target_mac=MAC,
        target_ip=ipaddress.IPv4Address(0)))
    assert reply is not None
    assert arp.conflicting_mac(reply, V4, MAC) == other
    # someone else probing for the same address at the same time is a conflict too
    probe = arp.parse_arp(arp.arp_probe(other, V4))
    assert probe is not None and arp.conflicting_mac(probe, V4, MAC) == other
    # our own frames and unrelated traffic are not
    mine = arp.parse_arp(arp.garp_request(MAC, V4))
    assert mine is not None and arp.conflicting_mac(mine, V4, MAC) is None
    unrelated = arp.parse_arp(arp.garp_request(other, ipaddress.IPv4Address("192.168.85.9")))
    assert unrelated is not None and arp.conflicting_mac(unrelated, V4, MAC) is None


def _ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_unsolicited_na_bytes():
    frame = arp.unsolicited_na(MAC, V6)
    assert len(frame) == 14 + 40 + 32
    # Ethernet: all-nodes multicast MAC, our MAC, IPv6
    assert frame[:14] == bytes.fromhex("333300000001" "020000aabbcc" "86dd")
    ip6 = frame[14:54]
    assert ip6[0] >> 4 == 6
    assert int.from_bytes(ip6[4:6], "big") == 32  # payload length
    assert ip6[6] == 58  # next header ICMPv6
    assert ip6[7] == 255  # hop limit must be 255 for ND
    assert ip6[8:24] == V6.packed  # source: the address itself
    assert ip6[24:40] == ipaddress.IPv6Address("ff02::1").packed
    icmp = frame[54:]
    assert icmp[0] == 136 and icmp[1] == 0  # neighbour advertisement
    assert icmp[4:8] == bytes.fromhex("20000000")  # R=0 S=0 O=1
    assert icmp[8:24] == V6.packed  # target
    assert icmp[24:32] == bytes.fromhex("0201") + MAC  # target link-layer address option
    # the checksum verifies: the sum over pseudo-header and message is 0xffff
    pseudo = V6.packed + ipaddress.IPv6Address("ff02::1").packed + (32).to_bytes(4, "big") + \
        bytes(3) + bytes([58])
    assert _ones_complement_sum(pseudo + icmp) == 0xFFFF


def test_announcement_rounds():
    v4 = arp.announcement_frames(MAC, V4)
    assert [t for _, t in v4] == [arp.ETH_P_ARP, arp.ETH_P_ARP]
    assert [f[21] for f, _ in v4] == [1, 2]  # request then reply
    v6 = arp.announcement_frames(MAC, V6)
    assert [t for _, t in v6] == [arp.ETH_P_IPV6]


class FakeSender:
    def __init__(self, log: list[tuple[float, bytes]]) -> None:
        self.log = log
        self.closed = False

    def send(self, frame: bytes, ethertype: int) -> None:
        self.log.append((asyncio.get_running_loop().time(), frame))

    def close(self) -> None:
        self.closed = True


def _run_announcer(config: TakeoverConfig, run_for: float):
    sent: list[tuple[float, bytes]] = []
    senders: list[FakeSender] = []

    def factory(ifname: str) -> FakeSender:
        assert ifname == "eth0"
        senders.append(FakeSender(sent))
        return senders[-1]

    async def main():
        ann = arp.Announcer("eth0", MAC, V4, config, factory)
        ann.start()
        first = len(sent)  # sent synchronously by start()
        await asyncio.sleep(run_for)
        running = ann.running
        await ann.stop()
        after_stop = len(sent)
        await asyncio.sleep(0.1)
        return first, running, after_stop, ann

    first, running, after_stop, ann = asyncio.run(main())
    return sent, senders, first, running, after_stop, ann


@pytest.mark.slow  # a real announcer for 0.5 s
def test_announcer_bursts_and_stop():
    config = TakeoverConfig(garp_count=3, garp_interval=0.02, garp_repeat_delay=0.1,
                            garp_refresh=0.0)
    sent, senders, first, running, after_stop, ann = _run_announcer(config, 0.5)
    assert first == 2  # the first round (request + reply) is out when start() returns
    assert len(sent) == after_stop == 2 * 3 * 2  # two bursts of three rounds
    assert not running
    assert senders[-1].closed
    times = [t for t, _ in sent]
    gap = times[6] - times[5]  # between the bursts
    assert gap >= 0.09
    assert ann.rounds_sent == 6


@pytest.mark.slow  # a real announcer for 0.25 s
def test_announcer_refresh_until_stopped():
    config = TakeoverConfig(garp_count=1, garp_interval=0.01, garp_repeat_delay=0.0,
                            garp_refresh=0.03)
    sent, senders, first, running, after_stop, _ = _run_announcer(config, 0.25)
    assert first == 2
    assert running
    assert after_stop >= 2 * 4  # the first round and a few refreshes
    assert len(sent) == after_stop  # nothing after stop()
    assert senders[-1].closed


def test_announcer_disabled_with_zero_count():
    config = TakeoverConfig(garp_count=0, garp_refresh=0.0)
    sent, _, first, running, _, _ = _run_announcer(config, 0.05)
    assert (first, running, len(sent)) == (0, False, 0)


def test_announcer_survives_send_errors():
    class Failing(FakeSender):
        def send(self, frame: bytes, ethertype: int) -> None:
            raise OSError(100, "Network is down")

    async def main():
        ann = arp.Announcer("eth0", MAC, V4, TakeoverConfig(garp_count=2, garp_interval=0.01,
                                                            garp_repeat_delay=0.0),
                            lambda name: Failing([]))
        ann.start()
        await asyncio.sleep(0.1)
        await ann.stop()
        return ann

    ann = asyncio.run(main())
    assert ann.send_errors == 4 and ann.frames_sent == 0 and ann.rounds_sent == 2
