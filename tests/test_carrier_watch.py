"""The carrier source watching the kernel's link notifications (supervisor.sources.carrier):
a notification makes it read the carriers at once; lost notifications are a change; a
failed watch falls back to reading every CARRIER_POLL. The kernel's side (a real veth's
carrier) is in the namespace tier (tests/test_netns_takeover.py)."""

from __future__ import annotations

import asyncio
import errno
import socket
from pathlib import Path

import pytest

from supervisor.core.events import Event, LinkCarrier, PublicCarrier
from supervisor.sources import carrier as carrier_source
from supervisor.sources.carrier import CARRIER_POLL, CARRIER_WATCHED, CarrierSource


def sysfs(tmp_path: Path, **carriers: str) -> str:
    for name, value in carriers.items():
        d = tmp_path / "sys" / "class" / "net" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "carrier").write_text(value + "\n")
    return str(tmp_path / "sys")


class Notifications:
    """A stand-in for the rtnetlink socket: a datagram socket pair (its fd is watched by the
    loop), whose recv can be made to fail once with an errno."""

    def __init__(self) -> None:
        self.ours, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ours.setblocking(False)
        self.fail: int | None = None

    def fileno(self) -> int:
        return self.ours.fileno()

    def recv(self, size: int) -> bytes:
        if self.fail is not None:
            code, self.fail = self.fail, None
            raise OSError(code, "stand-in")
        return self.ours.recv(size)

    def close(self) -> None:
        self.ours.close()
        self.kernel.close()


async def turns() -> None:
    """Let the loop run a few iterations (a ready socket's reader runs in the next one)."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_notification_reads_the_carriers_at_once(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = sysfs(tmp_path, eth1="1", eth0="1")
    note = Notifications()
    monkeypatch.setattr(carrier_source, "open_link_watch", lambda: note)
    posted: list[Event] = []
    source = CarrierSource(posted.append, root, notified=True)
    assert source.interval == CARRIER_POLL and not source.watched

    async def scenario() -> None:
        source.start(asyncio.get_running_loop())
        assert source.watched and source.interval == CARRIER_WATCHED
        source.watch({"crossover": "eth1"}, "eth0")
        source.poll()
        assert posted == [LinkCarrier("crossover", True), PublicCarrier(True)]
        sysfs(tmp_path, eth1="0")
        await turns()
        assert posted[2:] == []  # no notification: not read again
        note.kernel.send(b"RTM_NEWLINK")
        await turns()
        assert posted[2:] == [LinkCarrier("crossover", False)]
        sysfs(tmp_path, eth0="0")
        note.fail = errno.ENOBUFS  # notifications were lost: a change as well
        note.kernel.send(b"RTM_NEWLINK")
        await turns()
        assert posted[3:] == [PublicCarrier(False)] and source.watched
        note.fail = errno.EBADF  # the watch fails: read every CARRIER_POLL from now on
        note.kernel.send(b"RTM_NEWLINK")
        await turns()
        assert (source.watched, source.interval) == (False, CARRIER_POLL)

    asyncio.run(scenario())
    source.close()


def test_a_watch_that_cannot_open_leaves_the_readings_every_carrier_poll(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def refused() -> socket.socket:
        raise PermissionError(errno.EPERM, "not allowed")

    monkeypatch.setattr(carrier_source, "open_link_watch", refused)
    source = CarrierSource(lambda _e: None, sysfs(tmp_path, eth0="1"), notified=True)

    async def scenario() -> None:
        source.start(asyncio.get_running_loop())

    asyncio.run(scenario())
    assert not source.watched and source.interval == CARRIER_POLL
    assert "cannot watch the kernel's link notifications" in caplog.text


def test_a_test_sysfs_is_not_watched(tmp_path: Path) -> None:
    assert not CarrierSource(lambda _e: None, sysfs(tmp_path, eth0="1")).notified
    assert CarrierSource(lambda _e: None).notified  # the real /sys
