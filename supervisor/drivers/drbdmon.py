"""DRBD monitoring: a long-running ``drbdsetup events2 --statistics all`` child.

The child prints the state of every resource once (``exists`` lines, ended by ``exists -``)
and then one line per change; with ``--statistics`` the peer-device lines carry the resync
figures (``out-of-sync`` KiB, ``done`` percent). Lines are parsed by the pure
``supervisor.core.replica`` and kept per resource in ``views``; every change worth a line is
logged (the journal then holds each connection, role and disk state change, the resync and
split brains). If the child dies (the drbd module is not loaded yet, drbd-utils upgraded, a
bug), it is started again after ``restart_delay`` seconds, and its state is rebuilt from the
``exists`` lines of the new child. While the child is down the views keep their last values
and ``running`` is False, which ``twinbeat status`` shows.

``--statistics`` output only changes when DRBD reports an event; during a resync the monitor
therefore also asks for a snapshot (``drbdsetup events2 --now --statistics``) every
``poll_sync`` seconds, which is what gives ``twinbeat status`` its progress, rate and ETA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from supervisor.core.replica import ReplicaView, parse_events2
from supervisor.resource_spec import DrbdSpec

if TYPE_CHECKING:
    from supervisor.config import Config

log = logging.getLogger("twinbeat.drbd")


def drbd_resources(config: Config) -> list[str]:
    """The DRBD resources the groups of ``config`` use (drbddisk::RES), in order."""
    names: list[str] = []
    for group in config.groups:
        for spec in group.resources:
            if isinstance(spec, DrbdSpec) and spec.resource not in names:
                names.append(spec.resource)
    return names


class Events2Monitor:
    def __init__(
        self,
        resources: Iterable[str],
        *,
        drbdsetup: str = "drbdsetup",
        restart_delay: float = 2.0,
        poll_sync: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        self.views = {name: ReplicaView(name) for name in resources}
        self.drbdsetup = drbdsetup
        self.restart_delay = restart_delay
        self.poll_sync = poll_sync
        self.clock = clock
        self.on_change = on_change
        self.running = False
        self.restarts = 0
        self.last_error = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: per resource: DRBD's own identifiers (conn-name, peer-node-id, volume, minor), as
        #: events2 names them, for the metrics' labels
        self.ids: dict[str, dict[str, str]] = {name: {} for name in self.views}

    # -- lines ---------------------------------------------------------------------------------

    def feed_line(self, line: str) -> list[str]:
        rec = parse_events2(line)
        if rec is None:
            return []
        name = rec.fields.get("name")
        view = self.views.get(name or "")
        if view is None:
            return []
        ids = self.ids.setdefault(view.name, {})
        for key in ("conn-name", "peer-node-id", "volume", "minor"):
            if key in rec.fields:
                ids[key] = rec.fields[key]
        said = view.apply(rec, self.clock())
        for sentence in said:
            if "SPLIT BRAIN" in sentence:
                log.error("%s", sentence)
            else:
                log.info("%s", sentence)
        if said and self.on_change is not None:
            self.on_change(view.name, said)
        return said

    def status(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for view in self.views.values():
            d = view.as_dict(now)
            d["monitor"] = "running" if self.running else (
                f"restarting ({self.last_error})" if self.last_error else "starting")
            out.append(d)
        return out

    # -- child ---------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._poll())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._kill()

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()

    async def _run(self) -> None:
        try:
            while True:
                await self._one_child()
                self.running = False
                self.restarts += 1
                log.warning("DRBD monitor (drbdsetup events2) ended: %s; restarting in %g s",
                            self.last_error, self.restart_delay)
                await asyncio.sleep(self.restart_delay)
        finally:
            self.running = False
            await self._kill()

    async def _one_child(self) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.drbdsetup, "events2", "--statistics", "all",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            self.last_error = f"cannot run {self.drbdsetup}: {exc}"
            return
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None
        self.running = True
        self.last_error = ""
        while True:
            raw = await proc.stdout.readline()
            if not raw:
                break
            self.feed_line(raw.decode(errors="replace"))
        err = (await proc.stderr.read()).decode(errors="replace").strip()
        code = await proc.wait()
        self._proc = None
        self.last_error = f"exit status {code}" + (f": {err.splitlines()[-1]}" if err else "")

    async def _poll(self) -> None:
        """A statistics snapshot every poll_sync seconds while a resync runs."""
        while True:
            await asyncio.sleep(self.poll_sync)
            if not any(v.syncing for v in self.views.values()):
                continue
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.drbdsetup, "events2", "--now", "--statistics", "all",
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
            except (OSError, TimeoutError):
                continue
            for line in out.decode(errors="replace").splitlines():
                self.feed_line(line)
