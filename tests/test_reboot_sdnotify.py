"""The rebooter (against a file standing in for /proc/sysrq-trigger) and systemd notify."""

from __future__ import annotations

import os
import socket

from supervisor.drivers.reboot import RecordingRebooter, SysrqRebooter
from supervisor.drivers.sdnotify import SystemdNotifier


def _fallback(tmp_path):
    marker = tmp_path / "fallback-ran"
    script = tmp_path / "fake-systemctl"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {marker}\n")
    script.chmod(0o755)
    return marker, [str(script), "reboot", "--force", "--force"]


def test_sysrq_then_fallback(tmp_path, caplog):
    trigger = tmp_path / "sysrq-trigger"
    trigger.touch()
    marker, fallback = _fallback(tmp_path)
    SysrqRebooter(sysrq_trigger=trigger, fallback=fallback, settle=0).reboot("stop failed")
    assert trigger.read_text() == "b"
    # a real sysrq reset never returns; here it did, so the fallback ran
    assert marker.read_text() == "reboot --force --force\n"
    assert any("rebooting this node now: stop failed" in r.getMessage() for r in caplog.records)


def test_unwritable_sysrq_uses_fallback(tmp_path):
    marker, fallback = _fallback(tmp_path)
    SysrqRebooter(sysrq_trigger=tmp_path / "missing" / "sysrq-trigger", fallback=fallback,
                  settle=0).reboot("x")
    assert marker.exists()


def test_recording_rebooter():
    r = RecordingRebooter()
    r.reboot("cannot stop web: umount failed")
    assert r.reasons == ["cannot stop web: umount failed"]


def test_sd_notify_messages(tmp_path):
    path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    try:
        n = SystemdNotifier.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
        assert n.enabled and n.watchdog_interval() == 2.0
        assert n.ready("serving web")
        assert server.recv(100) == b"READY=1\nSTATUS=serving web"
        assert n.watchdog()
        assert server.recv(100) == b"WATCHDOG=1"
        assert n.stopping()
        assert server.recv(100) == b"STOPPING=1"
        n.close()
    finally:
        server.close()


def test_sd_notify_without_systemd():
    n = SystemdNotifier.from_environment({})
    assert not n.enabled
    assert n.watchdog() is False
    assert n.watchdog_interval() is None


def test_watchdog_pid_for_another_process_is_ignored(tmp_path):
    n = SystemdNotifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "s"),
                                          "WATCHDOG_USEC": "4000000",
                                          "WATCHDOG_PID": str(os.getpid() + 1)})
    assert n.watchdog_interval() is None
