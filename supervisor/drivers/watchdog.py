"""Watchdog devices and the facade the supervisor uses (modelled on Patroni's ``watchdog/``).

Devices (one protocol, ``WatchdogDevice``):

* ``LinuxWatchdog`` - ``/dev/watchdogN``. With ``device="auto"`` it looks at
  ``/sys/class/watchdog/watchdog*/identity`` and prefers a hardware timer (i6300ESB, iTCO, any
  other) over the kernel's "Software Watchdog" (softdog); ties go to the lowest number. Opening
  the device arms it; the timeout is set with ``WDIOC_SETTIMEOUT`` and read back with
  ``WDIOC_GETTIMEOUT``; a feed writes one byte; a clean shutdown writes ``V`` first (magic close),
  which stops the timer unless the driver was loaded with ``nowayout``.
* ``NullWatchdog`` - no device (opening it fails with a reason).
* ``FifoWatchdog(path)`` - for tests: one line per event (``open``, ``timeout N``, ``feed N``,
  ``close V``) written to a FIFO or file, so a test sees feeds stop.

The facade ``Watchdog(mode, device)``:

* ``off``: never opens the device;
* ``automatic``: uses the device when it can be armed, otherwise runs without one (warning);
* ``required``: a device that cannot be armed is reported (``activate`` returns False and
  ``ownership_allowed`` is False); the core must then refuse to own resources.

Feed it only from a healthy main loop: a loop that stalls for longer than the timeout must lead
to a reset. The ioctl numbers below use the generic Linux encoding (x86, arm); the appliance is
a PC.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import logging
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from supervisor.config import WatchdogConfig

log = logging.getLogger("twinbeat.watchdog")

MODES = ("required", "automatic", "off")

_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, kind: str, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


WATCHDOG_INFO = struct.Struct("=II32s")  # options, firmware_version, identity
WDIOC_GETSUPPORT = _ioc(_IOC_READ, "W", 0, WATCHDOG_INFO.size)
WDIOC_KEEPALIVE = _ioc(_IOC_READ, "W", 5, 4)
WDIOC_SETTIMEOUT = _ioc(_IOC_READ | _IOC_WRITE, "W", 6, 4)
WDIOC_GETTIMEOUT = _ioc(_IOC_READ, "W", 7, 4)
WDIOF_SETTIMEOUT = 0x0080
WDIOF_MAGICCLOSE = 0x0100

SOFTWARE_IDENTITY = "software watchdog"
#: identities tried first, in this order (measured to reset a QEMU q35 guest: i6300ESB)
PREFERRED_IDENTITIES = ("i6300ESB", "iTCO")


class WatchdogError(Exception):
    """A watchdog operation failed; the message says which device and why."""


class WatchdogDevice(Protocol):
    @property
    def path(self) -> str | None: ...

    @property
    def is_open(self) -> bool: ...

    def identity(self) -> str | None: ...

    def describe(self) -> str: ...

    def open(self) -> None:
        """Open (and so arm) the device; raise WatchdogError."""
        ...

    def set_timeout(self, seconds: int) -> int | None:
        """Ask for a timeout; return the timeout now in effect (None if unknown)."""
        ...

    def get_timeout(self) -> int | None: ...

    def keepalive(self) -> None: ...

    def close(self) -> None:
        """Clean shutdown: magic close, then close."""
        ...

    def can_be_disabled(self) -> bool: ...


# --------------------------------------------------------------------------------------------
# Linux


@dataclass(frozen=True)
class WatchdogCandidate:
    name: str  # watchdog0
    identity: str
    index: int

    @property
    def is_software(self) -> bool:
        return self.identity.strip().lower() == SOFTWARE_IDENTITY


def choose_watchdog(candidates: Sequence[WatchdogCandidate]) -> WatchdogCandidate | None:
    """Prefer known hardware timers, then any hardware, then softdog; ties: lowest number."""

    def rank(c: WatchdogCandidate) -> tuple[int, int]:
        for i, prefix in enumerate(PREFERRED_IDENTITIES):
            if c.identity.startswith(prefix):
                return (i, c.index)
        return (len(PREFERRED_IDENTITIES) + (1 if c.is_software else 0), c.index)

    return min(candidates, key=rank, default=None)


def scan_sysfs(sysfs_root: Path) -> list[WatchdogCandidate]:
    found = []
    try:
        names = sorted(os.listdir(sysfs_root))
    except OSError:
        return []
    for name in names:
        m = re.fullmatch(r"watchdog(\d+)", name)
        if not m:
            continue
        try:
            identity = (sysfs_root / name / "identity").read_text().strip()
        except OSError:
            identity = "unknown"
        found.append(WatchdogCandidate(name, identity, int(m.group(1))))
    return found


class LinuxWatchdog:
    def __init__(
        self,
        device: str = "auto",
        *,
        sysfs_root: Path = Path("/sys/class/watchdog"),
        dev_root: Path = Path("/dev"),
    ) -> None:
        self.device = device
        self.sysfs_root = sysfs_root
        self.dev_root = dev_root
        self._fd: int | None = None
        self._path: str | None = None if device == "auto" else device
        self._identity: str | None = None

    # --- which device

    def _resolve(self) -> str:
        if self._path is not None:
            return self._path
        best = choose_watchdog(scan_sysfs(self.sysfs_root))
        if best is None:
            raise WatchdogError(f"no watchdog device found under {self.sysfs_root}")
        self._path = str(self.dev_root / best.name)
        self._identity = best.identity
        return self._path

    @property
    def path(self) -> str | None:
        with contextlib.suppress(WatchdogError):
            return self._resolve()
        return None

    def _sysfs_dir(self) -> Path | None:
        path = self.path
        if path is None:
            return None
        name = os.path.basename(path)
        if name == "watchdog":  # the legacy node is watchdog0
            name = "watchdog0"
        return self.sysfs_root / name

    def identity(self) -> str | None:
        if self._identity is None:
            folder = self._sysfs_dir()
            if folder is not None:
                with contextlib.suppress(OSError):
                    self._identity = (folder / "identity").read_text().strip()
        return self._identity

    def describe(self) -> str:
        path = self.path or "no watchdog device"
        ident = self.identity()
        return f"{path} ({ident})" if ident else path

    # --- operations

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        if self._fd is not None:
            return
        path = self._resolve()
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise WatchdogError(f"cannot open {self.describe()}: {exc.strerror}") from exc

    def _ioctl_int(self, request: int, value: int = 0) -> int:
        if self._fd is None:
            raise WatchdogError(f"{self.describe()} is not open")
        buf = array.array("i", [value])
        try:
            fcntl.ioctl(self._fd, request, buf, True)
        except OSError as exc:
            raise WatchdogError(f"{self.describe()}: {os.strerror(exc.errno or errno.EIO)}"
                                ) from exc
        return int(buf[0])

    def support(self) -> tuple[int, int, str]:
        """(options, firmware version, identity) from WDIOC_GETSUPPORT."""
        if self._fd is None:
            raise WatchdogError(f"{self.describe()} is not open")
        buf = bytearray(WATCHDOG_INFO.size)
        try:
            fcntl.ioctl(self._fd, WDIOC_GETSUPPORT, buf, True)
        except OSError as exc:
            raise WatchdogError(f"{self.describe()}: {os.strerror(exc.errno or errno.EIO)}"
                                ) from exc
        options, firmware, ident = WATCHDOG_INFO.unpack(bytes(buf))
        return options, firmware, ident.rstrip(b"\0").decode("ascii", "replace")

    def set_timeout(self, seconds: int) -> int | None:
        if not 0 < seconds < 0xFFFF:
            raise WatchdogError(f"watchdog timeout {seconds} s is out of range (1-65534)")
        self._ioctl_int(WDIOC_SETTIMEOUT, seconds)
        return self.get_timeout()

    def get_timeout(self) -> int | None:
        return self._ioctl_int(WDIOC_GETTIMEOUT)

    def keepalive(self) -> None:
        if self._fd is None:
            raise WatchdogError(f"{self.describe()} is not open")
        try:
            os.write(self._fd, b"1")
        except OSError as exc:
            raise WatchdogError(f"cannot feed {self.describe()}: {exc.strerror}") from exc

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.write(fd, b"V")
        except OSError as exc:
            raise WatchdogError(f"magic close of {self.describe()} failed: {exc.strerror}"
                                ) from exc
        finally:
            os.close(fd)

    def can_be_disabled(self) -> bool:
        folder = self._sysfs_dir()
        if folder is not None:
            with contextlib.suppress(OSError):
                if (folder / "nowayout").read_text().strip() == "1":
                    return False
        if self._fd is not None:
            with contextlib.suppress(WatchdogError):
                return bool(self.support()[0] & WDIOF_MAGICCLOSE)
        return True


# --------------------------------------------------------------------------------------------
# Null and FIFO


class NullWatchdog:
    path = None
    is_open = False

    def identity(self) -> str | None:
        return None

    def describe(self) -> str:
        return "no watchdog device"

    def open(self) -> None:
        raise WatchdogError("no watchdog device is configured")

    def set_timeout(self, seconds: int) -> int | None:
        return None

    def get_timeout(self) -> int | None:
        return None

    def keepalive(self) -> None:
        return None

    def close(self) -> None:
        return None

    def can_be_disabled(self) -> bool:
        return True


class FifoWatchdog:
    """Test device: writes ``open``, ``timeout N``, ``feed N`` and ``close V`` lines to a FIFO
    (opened without blocking: a reader must be there) or a regular file."""

    def __init__(self, path: str | Path, *, max_timeout: int | None = None) -> None:
        self._path = str(path)
        self.max_timeout = max_timeout
        self._fd: int | None = None
        self._timeout: int | None = None
        self.feeds = 0

    @property
    def path(self) -> str | None:
        return self._path

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def identity(self) -> str | None:
        return "FIFO test watchdog"

    def describe(self) -> str:
        return f"{self._path} (FIFO test watchdog)"

    def _write(self, line: str) -> None:
        if self._fd is None:
            raise WatchdogError(f"{self.describe()} is not open")
        try:
            os.write(self._fd, line.encode() + b"\n")
        except OSError as exc:
            raise WatchdogError(f"{self.describe()}: {exc.strerror}") from exc

    def open(self) -> None:
        if self._fd is not None:
            return
        try:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND
                               | os.O_CLOEXEC)
        except OSError as exc:
            raise WatchdogError(f"cannot open {self.describe()}: {exc.strerror}") from exc
        self._write("open")

    def set_timeout(self, seconds: int) -> int | None:
        self._timeout = min(seconds, self.max_timeout) if self.max_timeout else seconds
        self._write(f"timeout {self._timeout}")
        return self._timeout

    def get_timeout(self) -> int | None:
        return self._timeout

    def keepalive(self) -> None:
        self.feeds += 1
        self._write(f"feed {self.feeds}")

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self._write("close V")
        finally:
            os.close(self._fd)
            self._fd = None

    def can_be_disabled(self) -> bool:
        return True


# --------------------------------------------------------------------------------------------
# The facade


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

    def activate(self, timeout: float) -> tuple[bool, str]:
        """Open and arm the device with ``timeout`` seconds; return (armed?, reason)."""
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
