"""The load tests' stall canary measures a stall of the machine (slow: real time, ~1 s)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.loadbed import Canary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_canary_reports_how_long_it_was_held() -> None:
    with Canary(()) as canary:  # (not real time: the test needs no privilege)
        time.sleep(0.3)  # (started, and sleeping in its loop)
        pid = canary.pid
        os.kill(pid, signal.SIGSTOP)  # held, as a frozen machine holds every process
        t_stop = time.monotonic()
        time.sleep(0.4)
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.2)
    assert 350 <= canary.worst_ms < 5000, canary.worst_ms
    assert abs(canary.at - t_stop) < 0.2, (canary.at, t_stop)


def test_canary_quiet_when_nothing_holds_it() -> None:
    with Canary(()) as canary:
        time.sleep(0.5)
    assert 0 <= canary.worst_ms < 1000, canary.worst_ms
