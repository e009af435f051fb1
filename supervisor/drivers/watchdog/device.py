"""The device protocol every watchdog driver follows, its error, and the two drivers that
need no kernel: ``NullWatchdog`` (no device) and ``FifoWatchdog`` (tests)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


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
