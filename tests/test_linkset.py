"""The loop's links (supervisor.linkset): a beat goes out on every link; a frame that is not
a beat (history) on one UDP link that delivers, so the serial line stays free for beats, and on
every link when none delivers. Transports are built but never started (no socket, no port)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.config import SerialLink, UdpLink
from supervisor.drivers.links import SerialTransport, Transport, UdpTransport, read_carrier
from supervisor.linkset import LinkSet


def linkset(monkeypatch: pytest.MonkeyPatch) -> tuple[LinkSet, list[tuple[str, bytes]]]:
    sent: list[tuple[str, bytes]] = []
    links = LinkSet(lambda _link, _data: None)
    transports: list[Transport] = [
        SerialTransport(SerialLink("ser", "/dev/ttyS0"), links.on_frame),
        UdpTransport(UdpLink("lan", "eth0"), links.on_frame),
        UdpTransport(UdpLink("dmz", "eth1"), links.on_frame),
    ]
    for t in transports:
        monkeypatch.setattr(t, "send", lambda data, name=t.name: sent.append((name, data)))
        links.transports[t.name] = t
    return links, sent


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
