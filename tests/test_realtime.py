"""Keeping the beat under load: memory locking decisions, scheduling report, logging in a
thread of its own, the unit's realtime settings (systemd-analyze verify)."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from supervisor.cli import format_status
from supervisor.drivers import realtime

UNIT = (Path(__file__).resolve().parent.parent
        / "mkosi.extra/usr/lib/systemd/system/twinbeat.service")


def recorder(called: list[int]):
    def fake(flags: int) -> int:
        called.append(flags)
        return 0

    return fake


def test_no_mlockall_with_a_small_limit_and_no_capability():
    called: list[int] = []
    locked, why = realtime.lock_memory(mlockall=recorder(called), capable=False,
                                       limit=8 * 2**20)
    assert not locked and called == []  # MCL_FUTURE under 8 MiB would break allocations
    assert "RLIMIT_MEMLOCK is 8 MiB" in why and "CAP_IPC_LOCK" in why


def test_mlockall_on_fault_with_the_capability():
    called: list[int] = []
    locked, why = realtime.lock_memory(mlockall=recorder(called), capable=True,
                                       limit=8 * 2**20)
    assert locked and called == [realtime.MCL_CURRENT | realtime.MCL_FUTURE
                                 | realtime.MCL_ONFAULT]
    assert "on fault" in why


def test_an_old_kernel_without_onfault_gets_current_and_future():
    called = []

    def fake(flags: int) -> int:
        called.append(flags)
        if flags & realtime.MCL_ONFAULT:
            ctypes.set_errno(errno.EINVAL)
            return -1
        return 0

    locked, _why = realtime.lock_memory(mlockall=fake, capable=False,
                                        limit=resource.RLIM_INFINITY)
    assert locked and called[-1] == realtime.MCL_CURRENT | realtime.MCL_FUTURE


def test_mlockall_failure_is_a_logged_fallback_not_an_error():
    def fake(flags: int) -> int:
        ctypes.set_errno(errno.ENOMEM)
        return -1

    locked, why = realtime.lock_memory(mlockall=fake, capable=True, limit=8 * 2**20)
    assert not locked
    assert "mlockall failed (Cannot allocate memory, RLIMIT_MEMLOCK 8 MiB)" in why


def test_capability_parsing():
    status = "Name:\tx\nCapEff:\t0000000000004000\n"
    assert realtime.has_capability(realtime.CAP_IPC_LOCK, status)
    assert not realtime.has_capability(realtime.CAP_IPC_LOCK, "CapEff:\t0000000000000001\n")


def test_scheduling_report_of_this_process():
    s = realtime.scheduling()
    assert s["policy"] in realtime.POLICIES.values()
    assert s["realtime"] is (s["policy"] in ("rr", "fifo"))
    assert "CPUSchedulingPolicy=rr" in realtime.describe_scheduling(
        {"policy": "other", "priority": 0, "realtime": False})
    assert realtime.describe_scheduling({"policy": "rr", "priority": 50, "realtime": True}) \
        == "realtime scheduling (RR priority 50)"


def test_realtime_child_is_reported_as_such():
    # chrt (util-linux) gives a child SCHED_RR with reset-on-fork, like the unit does
    assert os.geteuid() == 0, "needs root to set a realtime policy"
    r = subprocess.run(["chrt", "--rr", "--reset-on-fork", "20", sys.executable, "-c",
                        "from supervisor.drivers import realtime; import json; "
                        "print(json.dumps(realtime.scheduling()))"],
                       capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parent.parent)
    assert '"policy": "rr", "priority": 20, "realtime": true, "reset_on_fork": true' in r.stdout


class SlowHandler(logging.Handler):
    """A journal that blocks for a while on every line (I/O load)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.thread_names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.2)
        self.lines.append(record.getMessage())
        self.thread_names.add(threading.current_thread().name)


@pytest.mark.slow  # real time: a handler that sleeps 0.2 s per line
def test_logging_does_not_block_the_caller():
    root = logging.getLogger("tbtest-rt")
    root.propagate = False
    root.setLevel(logging.INFO)
    slow = SlowHandler()
    root.addHandler(slow)
    listener = realtime.log_in_background(root)
    try:
        t0 = time.monotonic()
        for i in range(5):
            root.info("line %d", i)
        assert time.monotonic() - t0 < 0.1  # five lines would take 1 s inline
    finally:
        listener.stop()
    assert slow.lines == [f"line {i}" for i in range(5)]
    assert threading.current_thread().name not in slow.thread_names


def test_unit_runs_realtime_with_unlimited_locked_memory(tmp_path: Path):
    text = UNIT.read_text()
    for line in ("CPUSchedulingPolicy=rr", "CPUSchedulingResetOnFork=yes",
                 "LimitMEMLOCK=infinity"):
        assert f"\n{line}\n" in text, line
    assert shutil.which("systemd-analyze"), "systemd-analyze missing: run `make deps`"
    shutil.copy(UNIT, tmp_path / UNIT.name)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(tmp_path / UNIT.name)],
                            capture_output=True, text=True, check=False)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "/usr/bin/twinbeat" not in line
                and "network-online.target" not in line]
    assert problems == []


def test_status_shows_scheduling_and_worst_gap():
    st = {
        "node": "node1", "cluster": "c", "generation": 1, "status": "active", "uptime": 5,
        "world": {"ok": True, "reason": None}, "peer": {"name": "node2", "state": "alive",
                                                        "last_heard_age": 0.1},
        "links": [{"name": "serial", "type": "serial", "state": "up", "last_heard_age": 0.05,
                   "loss": 0.0, "peer_hears_us": True, "worst_gap_ms": 137.4}],
        "watchdog": {"reason": "off", "mode": "off"}, "groups": [],
        "realtime": {"policy": "rr", "priority": 50, "realtime": True,
                     "memory_locked": True, "memory": "memory locked"},
    }
    text = format_status(st)
    assert "worst gap 137 ms" in text
    assert "scheduling: realtime RR 50; memory locked" in text
