"""Watchdog drivers and facade: device choice from a fake sysfs tree, the FIFO test device,
required/automatic/off modes, failure paths of the Linux driver on a file that is not a
watchdog. (The real ioctl success path needs /dev/watchdog*: not on this host, and softdog
must not be loaded here; the QEMU tests exercise it.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.drivers import watchdog as wd
from supervisor.drivers.watchdog import (
    FifoWatchdog,
    LinuxWatchdog,
    NullWatchdog,
    Watchdog,
    WatchdogCandidate,
    WatchdogError,
    choose_watchdog,
)


def test_ioctl_numbers_match_linux_headers():
    # values of the macros in <linux/watchdog.h> on x86-64 and arm64
    assert wd.WDIOC_GETSUPPORT == 0x80285700
    assert wd.WDIOC_KEEPALIVE == 0x80045705
    assert wd.WDIOC_SETTIMEOUT == 0xC0045706
    assert wd.WDIOC_GETTIMEOUT == 0x80045707


def cand(index: int, identity: str) -> WatchdogCandidate:
    return WatchdogCandidate(f"watchdog{index}", identity, index)


def test_choice_prefers_hardware_over_softdog():
    assert choose_watchdog([cand(0, "Software Watchdog"), cand(1, "iTCO_wdt")]) == cand(
        1, "iTCO_wdt")
    assert choose_watchdog([cand(0, "Software Watchdog")]) == cand(0, "Software Watchdog")
    assert choose_watchdog([]) is None
    # QEMU q35 with -device i6300esb: three devices; the i6300ESB wins
    three = [cand(0, "iTCO_wdt"), cand(1, "i6300ESB timer"), cand(2, "Software Watchdog")]
    assert choose_watchdog(three) == cand(1, "i6300ESB timer")
    # unknown hardware still beats softdog; ties go to the lowest number
    assert choose_watchdog([cand(3, "Software Watchdog"), cand(5, "sp5100-tco"),
                            cand(4, "wdat_wdt")]) == cand(4, "wdat_wdt")


def fake_sysfs(root: Path, devices: dict[str, str], nowayout: dict[str, str] | None = None):
    sysfs = root / "sys" / "class" / "watchdog"
    sysfs.mkdir(parents=True)
    dev = root / "dev"
    dev.mkdir()
    for name, identity in devices.items():
        (sysfs / name).mkdir()
        (sysfs / name / "identity").write_text(identity + "\n")
        (sysfs / name / "nowayout").write_text((nowayout or {}).get(name, "0") + "\n")
        (dev / name).write_bytes(b"")  # a plain file: opens, but ioctls fail (ENOTTY)
    return sysfs, dev


def test_linux_auto_selection_from_sysfs(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path, {"watchdog0": "Software Watchdog",
                                       "watchdog1": "iTCO_wdt",
                                       "watchdog2": "i6300ESB timer"})
    w = LinuxWatchdog("auto", sysfs_root=sysfs, dev_root=dev)
    assert w.path == str(dev / "watchdog2")
    assert w.identity() == "i6300ESB timer"
    assert w.describe() == f"{dev / 'watchdog2'} (i6300ESB timer)"


def test_linux_auto_with_only_softdog(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path, {"watchdog0": "Software Watchdog"})
    w = LinuxWatchdog("auto", sysfs_root=sysfs, dev_root=dev)
    assert w.path == str(dev / "watchdog0")


def test_linux_auto_without_devices(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path, {})
    w = LinuxWatchdog("auto", sysfs_root=sysfs, dev_root=dev)
    assert w.path is None
    with pytest.raises(WatchdogError, match="no watchdog device found"):
        w.open()
    ok, reason = Watchdog("required", w).activate(10)
    assert not ok and "no watchdog device found" in reason


def test_linux_explicit_device_and_nowayout(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path, {"watchdog0": "Software Watchdog",
                                       "watchdog1": "iTCO_wdt"}, nowayout={"watchdog1": "1"})
    w = LinuxWatchdog(str(dev / "watchdog1"), sysfs_root=sysfs, dev_root=dev)
    assert w.identity() == "iTCO_wdt"
    assert not w.can_be_disabled()
    assert LinuxWatchdog(str(dev / "watchdog0"), sysfs_root=sysfs).can_be_disabled()


def test_linux_timeout_ioctl_failure_required_mode(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path, {"watchdog0": "iTCO_wdt"})
    facade = Watchdog("required", LinuxWatchdog("auto", sysfs_root=sysfs, dev_root=dev))
    ok, reason = facade.activate(10)
    assert not ok
    assert reason.startswith("watchdog required but not armed: cannot set the timeout to 10 s")
    assert "Inappropriate ioctl" in reason
    assert not facade.ownership_allowed
    # the half-opened device was closed with the magic character
    assert (dev / "watchdog0").read_bytes() == b"V"
    assert not facade.device.is_open
    facade.feed(1.0)  # not armed: nothing happens
    assert (dev / "watchdog0").read_bytes() == b"V"


def test_linux_open_failure_automatic_mode(tmp_path):
    sysfs, dev = fake_sysfs(tmp_path, {})
    facade = Watchdog("automatic", LinuxWatchdog(str(dev / "watchdog7"), sysfs_root=sysfs))
    ok, reason = facade.activate(10)
    assert not ok
    assert reason == (f"running without a watchdog: cannot open {dev / 'watchdog7'}: "
                      "No such file or directory")
    assert facade.ownership_allowed
    st = facade.status(5.0)
    assert st["armed"] is False and st["mode"] == "automatic"
    assert st["device"] == str(dev / "watchdog7")


class SpyDevice(NullWatchdog):
    def __init__(self, timeout_kept: int | None = None) -> None:
        self.calls: list[str] = []
        self.timeout_kept = timeout_kept

    def open(self) -> None:
        self.calls.append("open")

    def set_timeout(self, seconds: int) -> int | None:
        self.calls.append(f"timeout {seconds}")
        return self.timeout_kept if self.timeout_kept is not None else seconds

    def keepalive(self) -> None:
        self.calls.append("feed")

    def close(self) -> None:
        self.calls.append("close")


def test_off_mode_never_opens():
    spy = SpyDevice()
    facade = Watchdog("off", spy)
    assert facade.activate(10) == (False, "watchdog is off by configuration")
    facade.feed(1.0)
    facade.disable()
    assert spy.calls == []
    assert facade.ownership_allowed


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="required, automatic, off"):
        Watchdog("sometimes", NullWatchdog())


def test_null_device_required_and_automatic():
    ok, reason = Watchdog("required", NullWatchdog()).activate(10)
    assert (ok, reason) == (False, "watchdog required but not armed: no watchdog device is "
                                   "configured")
    facade = Watchdog("automatic", NullWatchdog())
    assert facade.activate(10)[0] is False and facade.ownership_allowed


def test_timeout_longer_than_asked():
    spy = SpyDevice(timeout_kept=60)
    facade = Watchdog("required", spy)
    ok, reason = facade.activate(10)
    assert not ok and "keeps a 60 s timeout, longer than the 10 s asked for" in reason
    assert spy.calls == ["open", "timeout 10", "close"]
    spy = SpyDevice(timeout_kept=60)
    facade = Watchdog("automatic", spy)
    ok, _ = facade.activate(10)
    assert ok and facade.timeout == 60  # still protects, later than wished


def test_fifo_device_sees_feeds_and_magic_close(tmp_path):
    fifo = tmp_path / "watchdog.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        device = FifoWatchdog(fifo)
        facade = Watchdog("required", device)
        ok, reason = facade.activate(10.7)
        assert ok
        assert reason == f"armed {fifo} (FIFO test watchdog) with a 10 s timeout"
        for t in (1.0, 2.0, 3.0):
            facade.feed(t)
        st = facade.status(4.5)
        assert st == {
            "mode": "required",
            "device": str(fifo),
            "identity": "FIFO test watchdog",
            "timeout": 10,
            "armed": True,
            "last_feed_age": 1.5,
            "feeds": 3,
            "feed_errors": 0,
            "ownership_allowed": True,
            "reason": reason,
        }
        facade.disable()
        assert not facade.armed
        assert facade.reason == "disabled by a clean shutdown (magic close)"
        facade.feed(5.0)  # after disable: no more lines
        lines = os.read(reader, 4096).decode().splitlines()
        assert lines == ["open", "timeout 10", "feed 1", "feed 2", "feed 3", "close V"]
    finally:
        os.close(reader)


def test_fifo_without_reader_cannot_be_armed(tmp_path):
    fifo = tmp_path / "watchdog.fifo"
    os.mkfifo(fifo)
    ok, reason = Watchdog("required", FifoWatchdog(fifo)).activate(10)
    assert not ok and "No such device or address" in reason


def test_fifo_clamps_to_max_timeout(tmp_path):
    path = tmp_path / "wd.log"
    path.touch()
    facade = Watchdog("required", FifoWatchdog(path, max_timeout=5))
    assert facade.activate(10)[0] and facade.timeout == 5  # shorter than asked is fine
    assert path.read_text().splitlines() == ["open", "timeout 5"]


def test_feed_errors_are_counted(tmp_path):
    class Broken(SpyDevice):
        def keepalive(self) -> None:
            raise WatchdogError("write failed")

    facade = Watchdog("required", Broken())
    assert facade.activate(5)[0]
    facade.feed(1.0)
    st = facade.status(2.0)
    assert (st["feeds"], st["feed_errors"], st["last_feed_age"]) == (0, 1, None)
