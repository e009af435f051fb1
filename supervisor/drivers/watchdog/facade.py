"""The facade the supervisor uses: modes required / automatic / off over one device."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from supervisor.drivers.watchdog.device import (
    FifoWatchdog,
    NullWatchdog,
    WatchdogDevice,
    WatchdogError,
)
from supervisor.drivers.watchdog.linux import LinuxWatchdog

if TYPE_CHECKING:
    from supervisor.config import WatchdogConfig

MODES = ("required", "automatic", "off")

log = logging.getLogger("twinbeat.watchdog")


class Watchdog:
    def __init__(self, mode: str, device: WatchdogDevice) -> None:
        if mode not in MODES:
            raise ValueError(f"watchdog mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.device: WatchdogDevice = device
        self.armed = False
        self.timeout: int | None = None
        self.requested: float | None = None
        self.reason = (
            "watchdog is off by configuration" if mode == "off" else "watchdog not activated yet"
        )
        self.last_feed: float | None = None
        self.feeds = 0
        self.feed_errors = 0

    @property
    def ownership_allowed(self) -> bool:
        """False when the watchdog is required but not armed: the node must not own groups."""
        return self.armed or self.mode != "required"

    def _fail(self, problem: str) -> tuple[bool, str]:
        with contextlib.suppress(WatchdogError):
            self.device.close()  # never leave a half-configured timer armed
        self.armed = False
        self.timeout = None
        if self.mode == "required":
            self.reason = f"watchdog required but not armed: {problem}"
            log.error("%s", self.reason)
        else:
            self.reason = f"running without a watchdog: {problem}"
            log.warning("%s", self.reason)
        return False, self.reason

    def activate(self, timeout: float, why: str = "") -> tuple[bool, str]:
        """Open and arm the device with ``timeout`` seconds; return (armed?, reason). ``why``
        (the choice of this timeout) is added to the reason when it is armed."""
        if self.mode == "off":
            self.reason = "watchdog is off by configuration"
            return False, self.reason
        seconds = max(1, int(timeout))
        self.requested = timeout
        if self.armed and self.timeout is not None and self.timeout <= seconds:
            return True, self.reason
        try:
            self.device.open()
        except WatchdogError as exc:
            return self._fail(str(exc))
        try:
            actual = self.device.set_timeout(seconds)
        except WatchdogError as exc:
            return self._fail(f"cannot set the timeout to {seconds} s: {exc}")
        if actual is None:
            return self._fail(f"{self.device.describe()} does not report its timeout")
        if actual > seconds:
            problem = (
                f"{self.device.describe()} keeps a {actual} s timeout, longer than the "
                f"{seconds} s asked for"
            )
            if self.mode == "required":
                return self._fail(problem)
            log.warning("%s; using it anyway (mode automatic)", problem)
        self.armed = True
        self.timeout = actual
        self.reason = f"armed {self.device.describe()} with a {actual} s timeout"
        if not self.device.can_be_disabled():
            self.reason += " (cannot be stopped: nowayout)"
        if why:
            self.reason += f": {why}"
        log.info("%s", self.reason)
        return True, self.reason

    def feed(self, now: float) -> None:
        if not self.armed:
            return
        try:
            self.device.keepalive()
        except WatchdogError as exc:
            self.feed_errors += 1
            log.error("%s", exc)
            return
        self.feeds += 1
        self.last_feed = now

    def disable(self) -> None:
        """Clean shutdown: magic close, so the timer stops (unless nowayout)."""
        if not self.armed:
            return
        stoppable = self.device.can_be_disabled()
        try:
            self.device.close()
        except WatchdogError as exc:
            log.error("%s", exc)
        self.armed = False
        if stoppable:
            self.reason = "disabled by a clean shutdown (magic close)"
        else:
            self.reason = (
                f"closed, but {self.device.describe()} cannot be stopped (nowayout): the "
                f"machine resets in {self.timeout} s"
            )
            log.warning("%s", self.reason)

    def status(self, now: float) -> dict[str, object]:
        return {
            "mode": self.mode,
            "device": self.device.path,
            "identity": self.device.identity(),
            "timeout": self.timeout,
            "armed": self.armed,
            "last_feed_age": None if self.last_feed is None else now - self.last_feed,
            "feeds": self.feeds,
            "feed_errors": self.feed_errors,
            "ownership_allowed": self.ownership_allowed,
            "reason": self.reason,
        }



def make_watchdog(cfg: WatchdogConfig) -> Watchdog:
    """The watchdog facade for the configuration (``fifo:PATH`` is the test driver)."""
    device: WatchdogDevice
    if cfg.mode == "off":
        device = NullWatchdog()
    elif cfg.device.startswith("fifo:"):
        device = FifoWatchdog(cfg.device.removeprefix("fifo:"))
    else:
        device = LinuxWatchdog(cfg.device)
    return Watchdog(cfg.mode, device)
