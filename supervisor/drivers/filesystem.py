"""The Filesystem agent: ``Filesystem::DEV::MOUNTPOINT::FSTYPE[::OPTIONS]``.

* start: refuses a device that is mounted anywhere else (``/proc/self/mountinfo``, compared by
  device number, then by path), creates the mount point, runs ``mount``;
* stop: finds every process that holds the file system (cwd, root, exe, open files, memory
  maps; compared by device number, so chroots and other mount namespaces are found too), sends
  SIGTERM, waits ``ctx.kill_grace``, sends SIGKILL to the rest, then runs ``umount``;
* status: the device is mounted on the mount point.

A file system is created only on a DRBD device that the drbddisk agent has just initialised
as a brand-new pair of blank replicas (it leaves a note in ``ctx.run_dir``), and only when
``blkid`` finds no signature on it: twinbeat never formats anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import time
from pathlib import Path

from supervisor.drivers import runner
from supervisor.drivers.agent_base import AgentContext, AgentError
from supervisor.drivers.drbd import fresh_marker
from supervisor.mountinfo import DevNo, MountEntry, parse_mountinfo

__all__ = ["DevNo", "FilesystemAgent", "MountEntry", "find_holders", "maps_devices",
           "parse_mountinfo"]
from supervisor.resource_spec import FilesystemSpec

log = logging.getLogger("twinbeat.filesystem")

def maps_devices(text: str) -> set[DevNo]:
    """Device numbers of the files a process maps (``/proc/PID/maps``, hex ``MM:mm``)."""
    devs = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[4] != "0":
            major, minor = fields[3].split(":")
            devs.add((int(major, 16), int(minor, 16)))
    return devs


def _devno(st_dev: int) -> DevNo:
    return (os.major(st_dev), os.minor(st_dev))


def find_holders(proc_root: Path, devno: DevNo, exclude: set[int]) -> dict[int, str]:
    """PIDs (and a word on why) of processes using the file system with device ``devno``."""
    holders: dict[int, str] = {}
    try:
        pids = [int(p) for p in os.listdir(proc_root) if p.isdigit()]
    except OSError:
        return holders
    for pid in pids:
        if pid in exclude:
            continue
        base = proc_root / str(pid)
        why = _holds(base, devno)
        if why:
            holders[pid] = why
    return holders


def _holds(base: Path, devno: DevNo) -> str | None:
    for link in ("cwd", "root", "exe"):
        with contextlib.suppress(OSError):
            if _devno(os.stat(base / link).st_dev) == devno:
                return link
    with contextlib.suppress(OSError):
        for fd in os.listdir(base / "fd"):
            with contextlib.suppress(OSError):
                if _devno(os.stat(base / "fd" / fd).st_dev) == devno:
                    return f"open file {os.readlink(base / 'fd' / fd)}"
    with contextlib.suppress(OSError):
        if devno in maps_devices((base / "maps").read_text()):
            return "memory map"
    return None


def _resolve_device(device: str) -> str:
    for prefix, folder in (("LABEL=", "by-label"), ("UUID=", "by-uuid")):
        if device.startswith(prefix):
            return f"/dev/disk/{folder}/{device[len(prefix):]}"
    return device


class FilesystemAgent:
    def __init__(self, spec: FilesystemSpec, ctx: AgentContext) -> None:
        self.spec = spec
        self.ctx = ctx

    def describe(self) -> str:
        return f"Filesystem {self.spec.describe()}"

    @property
    def target(self) -> str:
        return os.path.realpath(self.spec.mountpoint)

    def _device_identity(self) -> tuple[str, DevNo | None]:
        path = os.path.realpath(_resolve_device(self.spec.device))
        try:
            st = os.stat(path)
        except OSError:
            return path, None
        return path, _devno(st.st_rdev) if stat.S_ISBLK(st.st_mode) else None

    def _mounts(self) -> list[MountEntry]:
        try:
            text = (self.ctx.proc_root / "self" / "mountinfo").read_text()
        except OSError as exc:
            raise AgentError(f"cannot read the mount table: {exc}") from exc
        return parse_mountinfo(text)

    def _is_device(self, entry: MountEntry, path: str, devno: DevNo | None) -> bool:
        if devno is not None and entry.devno == devno:
            return True
        if entry.source == path:
            return True
        return entry.source.startswith("/") and os.path.realpath(entry.source) == path

    def _state(self) -> tuple[MountEntry | None, list[MountEntry]]:
        """(what is visible on the mount point, where the device is mounted)."""
        path, devno = self._device_identity()
        mounts = self._mounts()
        on_target = [m for m in mounts if m.mountpoint == self.target]
        ours = [m for m in mounts if self._is_device(m, path, devno)]
        return (on_target[-1] if on_target else None), ours

    async def status(self) -> bool:
        top, ours = await asyncio.to_thread(self._state)
        return top is not None and top in ours

    async def start(self, *, check_duplicates: bool = False) -> None:
        top, ours = await asyncio.to_thread(self._state)
        if top is not None and top in ours:
            return
        elsewhere = [m.mountpoint for m in ours if m.mountpoint != self.target]
        if elsewhere:
            raise AgentError(
                f"refusing to mount {self.spec.device} on {self.target}: it is already mounted "
                f"on {', '.join(elsewhere)}"
            )
        if top is not None:
            raise AgentError(
                f"refusing to mount {self.spec.device} on {self.target}: {top.source} is "
                "already mounted there"
            )
        try:
            os.makedirs(self.target, exist_ok=True)
        except OSError as exc:
            raise AgentError(f"cannot create mount point {self.target}: {exc}") from exc
        await self._format_if_fresh()
        argv = [self.ctx.mount, "-t", self.spec.fstype]
        if self.spec.options:
            argv += ["-o", self.spec.options]
        argv += [self.spec.device, self.target]
        r = await runner.run(argv, timeout=self.ctx.command_timeout)
        if not r.ok:
            raise AgentError(f"cannot mount {self.spec.describe()}: {r.describe()}")

    async def _format_if_fresh(self) -> None:
        marker = fresh_marker(self.ctx.run_dir, self.spec.device)
        if not marker.exists():
            return
        probe = await runner.run(
            [self.ctx.blkid, "-p", "-o", "value", "-s", "TYPE", self.spec.device],
            timeout=self.ctx.command_timeout, log_failure=False,
        )
        if probe.returncode == 2:  # blkid: no signature at all on the device
            log.warning("creating a %s file system on the new, blank %s",
                        self.spec.fstype, self.spec.device)
            r = await runner.run([self.ctx.mkfs, "-t", self.spec.fstype, self.spec.device],
                                 timeout=self.ctx.command_timeout)
            if not r.ok:
                raise AgentError(f"cannot create a file system on {self.spec.device}: "
                                 f"{r.describe()}")
        elif not probe.ok:
            raise AgentError(f"cannot probe {self.spec.device}: {probe.describe()}")
        marker.unlink(missing_ok=True)

    async def stop(self) -> None:
        _top, ours = await asyncio.to_thread(self._state)
        mine = [m for m in ours if m.mountpoint == self.target]
        if not mine:
            return
        devno = mine[-1].devno
        last: runner.RunResult | None = None
        for attempt in range(3):
            await self._kill_holders(devno, force=attempt > 0)
            last = await runner.run(
                [self.ctx.umount, self.target], timeout=self.ctx.command_timeout
            )
            if last.ok or not await self.status():
                return
        assert last is not None
        holders = await asyncio.to_thread(
            find_holders, self.ctx.proc_root, devno, {os.getpid()}
        )
        extra = f"; still held by {holders}" if holders else ""
        raise AgentError(f"cannot unmount {self.target}: {last.describe()}{extra}")

    async def _kill_holders(self, devno: DevNo, *, force: bool) -> None:
        me = os.getpid()
        holders = await asyncio.to_thread(find_holders, self.ctx.proc_root, devno, {me})
        own = await asyncio.to_thread(_holds, self.ctx.proc_root / str(me), devno)
        if own:
            log.error("the supervisor itself holds %s (%s)", self.target, own)
        if not holders:
            return
        for pid, why in holders.items():
            log.warning("stopping %s: SIGTERM to pid %d (%s)", self.target, pid, why)
        self._signal(holders, signal.SIGKILL if force else signal.SIGTERM)
        deadline = time.monotonic() + (0 if force else self.ctx.kill_grace)
        while True:
            remaining = await asyncio.to_thread(
                find_holders, self.ctx.proc_root, devno, {me}
            )
            if not remaining or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        if remaining:
            for pid, why in remaining.items():
                log.warning("stopping %s: SIGKILL to pid %d (%s)", self.target, pid, why)
            self._signal(remaining, signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while remaining and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                remaining = await asyncio.to_thread(
                    find_holders, self.ctx.proc_root, devno, {me}
                )

    @staticmethod
    def _signal(pids: dict[int, str], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
