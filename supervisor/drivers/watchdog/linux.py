"""``/dev/watchdogN``: the choice among the devices in sysfs and the ioctl driver."""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.drivers.watchdog.device import WatchdogError

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
