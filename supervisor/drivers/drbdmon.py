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
A Primary whose peer is away writes with no event at all, so while one is, a snapshot is
taken every ``poll_diverging`` seconds: the status then shows how much the returning peer
will have to receive.

Both children go through ``supervisor.drivers.runner`` (``spawn`` for the monitor, ``run``
with a timeout for the snapshot): a clean environment, their own process group, killed and
reaped when they time out or the monitor stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from supervisor.core.replica import ReplicaView, parse_events2
from supervisor.core.state import drbd_resources
from supervisor.drivers import runner

log = logging.getLogger("twinbeat.drbd")
#: seconds a ``drbdsetup events2 --now`` snapshot may take before it is killed
SNAPSHOT_TIMEOUT = 10.0


__all__ = ["Events2Monitor", "drbd_resources"]


class Events2Monitor:
    def __init__(
        self,
        resources: Iterable[str],
        *,
        drbdsetup: str = "drbdsetup",
        restart_delay: float = 2.0,
        poll_sync: float = 1.0,
        poll_diverging: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, list[str]], None] | None = None,
        kill_grace: float = runner.KILL_GRACE,
    ) -> None:
        self.views = {name: ReplicaView(name) for name in resources}
        self.drbdsetup = drbdsetup
        self.restart_delay = restart_delay
        self.poll_sync = poll_sync
        self.poll_diverging = poll_diverging
        self._last_snapshot: float | None = None
        self.clock = clock
        self.on_change = on_change
        self.kill_grace = kill_grace
        self.running = False
        self.restarts = 0
        self.last_error = ""
        self._child: runner.Spawned | None = None
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
        child, self._child = self._child, None
        if child is not None:
            await child.stop()

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
            child = await runner.spawn([self.drbdsetup, "events2", "--statistics", "all"],
                                       grace=self.kill_grace, log_failure=False)
        except OSError as exc:
            self.last_error = f"cannot run {self.drbdsetup}: {exc}"
            return
        self._child = child
        self.running = True
        self.last_error = ""
        async for line in child.lines():
            self.feed_line(line)
        result = await child.wait()
        self._child = None
        err = result.stderr_tail()
        self.last_error = f"exit status {result.returncode}" + (
            f": {err.splitlines()[-1]}" if err else "")

    def snapshot_due(self, now: float) -> str:
        """Why a statistics snapshot is due now ("" when none is): every poll_sync seconds
        while a resync runs, every poll_diverging seconds while a Primary writes alone."""
        since = None if self._last_snapshot is None else now - self._last_snapshot
        for view in self.views.values():
            if view.syncing and (since is None or since >= self.poll_sync - 1e-6):
                return f"{view.name} is resynchronising ({view.replication})"
        for view in self.views.values():
            if view.diverging and (since is None or since >= self.poll_diverging - 1e-6):
                return (f"{view.name} is Primary without its peer ({view.connection}): "
                        "its out-of-sync figure grows with every write")
        return ""

    async def _poll(self) -> None:
        """A statistics snapshot when snapshot_due says so (checked every poll_sync s)."""
        while True:
            await asyncio.sleep(self.poll_sync)
            now = self.clock()
            if not self.snapshot_due(now):
                continue
            self._last_snapshot = now
            r = await runner.run([self.drbdsetup, "events2", "--now", "--statistics", "all"],
                                 timeout=SNAPSHOT_TIMEOUT, grace=self.kill_grace,
                                 log_failure=False)
            if not r.ok:
                continue
            for line in r.stdout.splitlines():
                self.feed_line(line)
