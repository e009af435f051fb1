"""Rebooting the node when it must not keep half a resource group (a failed stop).

``SysrqRebooter.reboot(reason)`` logs the reason, syncs the disks (in a thread, for at most
``sync_timeout`` seconds: a hung device must not stop the reboot, since a hung stop is often
why we reboot), then writes ``b`` to ``/proc/sysrq-trigger`` (an immediate reset, like a
watchdog; root may always write there, whatever ``kernel.sysrq`` says). Should the machine
still be running after ``settle`` seconds, it runs ``systemctl reboot --force --force``.
``RecordingRebooter`` is the fake for tests.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from supervisor.drivers import runner

log = logging.getLogger("twinbeat.reboot")


class Rebooter(Protocol):
    def reboot(self, reason: str) -> None: ...


class SysrqRebooter:
    def __init__(
        self,
        *,
        sysrq_trigger: Path = Path("/proc/sysrq-trigger"),
        fallback: Sequence[str] = ("systemctl", "reboot", "--force", "--force"),
        sync_timeout: float = 5.0,
        settle: float = 2.0,
    ) -> None:
        self.sysrq_trigger = sysrq_trigger
        self.fallback = tuple(fallback)
        self.sync_timeout = sync_timeout
        self.settle = settle

    def reboot(self, reason: str) -> None:
        log.critical("rebooting this node now: %s", reason)
        for handler in logging.getLogger().handlers + log.handlers:
            try:
                handler.flush()
            except Exception:  # a broken log handler must not stop the reboot
                pass
        syncer = threading.Thread(target=os.sync, name="sync-before-reboot", daemon=True)
        syncer.start()
        syncer.join(self.sync_timeout)
        if syncer.is_alive():
            log.error("sync did not finish within %.0f s; rebooting anyway", self.sync_timeout)
        try:
            with open(self.sysrq_trigger, "w") as trigger:
                trigger.write("b")
        except OSError as exc:
            log.error("cannot write to %s: %s", self.sysrq_trigger, exc)
        else:
            time.sleep(self.settle)  # a real sysrq reset never gets here
        log.error("still running; trying %s", " ".join(self.fallback))
        r = runner.run_sync(self.fallback, timeout=30)
        if not r.ok:
            log.error("reboot fallback failed: %s", r.describe())


class RecordingRebooter:
    """Test fake: remembers every reason instead of rebooting."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def reboot(self, reason: str) -> None:
        log.critical("(test) would reboot now: %s", reason)
        self.reasons.append(reason)
