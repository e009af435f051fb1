"""The node's side of updates (I/O): RAUC, the slot that booted, the version, the files
on the state partition. Policy lives in health.py, bootdecide.py and bundlecheck.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from supervisor.atomicfile import atomic_write
from supervisor.drivers.runner import RunResult, run_sync
from supervisor.lifecycle.bootdecide import Failure, Pending
from supervisor.lifecycle.persist import PERSIST

T = TypeVar("T")

LIFECYCLE_DIR = PERSIST / "lifecycle"
VERSION_FILE = Path("/usr/lib/twinbeat/VERSION")
RAUC_CONF = Path("/etc/rauc/system.conf")
SLOT_DEVICES = {"A": Path("/dev/disk/by-partlabel/rootfs-a"),
                "B": Path("/dev/disk/by-partlabel/rootfs-b")}


class LifecycleError(Exception):
    """A command failed; the message has the command and its error output."""


def run(cmd: Sequence[str], timeout: float = 60.0, check: bool = True) -> RunResult:
    """Run ``cmd`` through the one runner; LifecycleError (command and stderr) if ``check``
    and it fails."""
    result = run_sync(cmd, timeout=timeout, env={"LC_ALL": "C"}, log_failure=check)
    if check and not result.ok:
        raise LifecycleError(result.describe())
    return result


def running_version(path: Path = VERSION_FILE) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        return "unknown"


def booted_slot(cmdline: str | None = None) -> str:
    """The slot GRUB booted (rauc.slot= on the kernel command line), "" if none."""
    if cmdline is None:
        try:
            cmdline = Path("/proc/cmdline").read_text(encoding="utf-8")
        except OSError:
            return ""
    for word in cmdline.split():
        if word.startswith("rauc.slot="):
            return word.split("=", 1)[1]
    return ""


def other_slot(slot: str) -> str:
    return "B" if slot == "A" else "A"


def node_compatible(conf: Path = RAUC_CONF) -> str:
    try:
        for line in conf.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "compatible":
                return value.strip()
    except OSError:
        pass
    return ""


def block_size(device: Path) -> int | None:
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


# -- files on the state partition ---------------------------------------------------------


@dataclass(frozen=True)
class Records:
    directory: Path = LIFECYCLE_DIR

    @property
    def pending_path(self) -> Path:
        return self.directory / "pending.json"

    @property
    def failure_path(self) -> Path:
        return self.directory / "last-failure.json"

    @property
    def history_path(self) -> Path:
        return self.directory / "history.log"

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), mode=0o644)

    def _record(self, path: Path, parse: Callable[[dict[str, Any]], T]) -> T | None:
        """The record in ``path`` (None: absent, unreadable or not one)."""
        d = self._read(path)
        try:
            return parse(d) if d else None
        except (KeyError, TypeError, ValueError):
            return None

    def pending(self) -> Pending | None:
        return self._record(self.pending_path, Pending.from_json)

    def set_pending(self, p: Pending) -> None:
        self._write(self.pending_path, p.to_json())

    def clear_pending(self) -> None:
        self.pending_path.unlink(missing_ok=True)

    def failure(self) -> Failure | None:
        return self._record(self.failure_path, Failure.from_json)

    def set_failure(self, f: Failure) -> None:
        self._write(self.failure_path, f.to_json())

    def clear_failure(self) -> None:
        self.failure_path.unlink(missing_ok=True)

    def log(self, when: float, line: str) -> None:
        import time

        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        with open(self.history_path, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {line}\n")


# -- RAUC ----------------------------------------------------------------------------------


def rauc_info(bundle: Path) -> dict[str, Any]:
    """`rauc info` as JSON; LifecycleError with RAUC's message when it refuses the bundle."""
    proc = run(["rauc", "info", "--output-format=json", str(bundle)], timeout=300, check=False)
    if proc.returncode != 0:
        raise LifecycleError(proc.stderr.strip() or proc.stdout.strip())
    data = json.loads(proc.stdout)
    if not isinstance(data, dict):
        raise LifecycleError("rauc info gave no JSON object")
    return data


def rauc_mark(what: str, slot: str = "booted") -> None:
    """`rauc status mark-good|mark-bad|mark-active booted|other|<slot name>`."""
    run(["rauc", "status", what, slot], timeout=120)


def rauc_slot_name(bootname: str) -> str:
    return {"A": "rootfs.0", "B": "rootfs.1"}[bootname]
