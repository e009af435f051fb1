"""The loop's DRBD glue: no decision is made here, the core decides and this carries.

What a drbddisk agent reads from the loop (the monitor's view of a replica, the core's view
of the peer, and the signal that either changed); the monitor's changes posted to the loop as
events; unresolved split brains remembered across a restart (in the state directory); and the
two DRBD actions the core asks for (outdate the local replica, the drbdadm commands of a
resolve-split-brain), carried out off the decision path, their outcomes posted back as events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from supervisor.core.actions import OutdateReplica, RunDrbdadm
from supervisor.core.events import DrbdadmDone, Event, OutdateResult, ReplicaChanged
from supervisor.core.promotion import PeerLiveness, ReplicaSnapshot, peer_liveness
from supervisor.core.state import CoreState
from supervisor.core.states import NodeStatus, PeerStatus
from supervisor.drivers.agent_base import ChangeSignal
from supervisor.drivers.drbd import outdate_replica
from supervisor.drivers.drbdmon import Events2Monitor
from supervisor.drivers.runner import run as run_command
from supervisor.statefiles import load_split_brains, save_split_brains

log = logging.getLogger("twinbeat")

#: outdates the local replica of a DRBD resource: (resource, timeout) -> result
Outdater = Callable[[str, float], Awaitable[str]]


async def default_outdater(resource: str, timeout: float) -> str:
    return await outdate_replica(resource, "drbdadm", timeout)


class Replication:
    """The DRBD side of one supervisor loop: ``state`` reads the core's current state,
    ``feed`` posts an event to the loop, ``spawn`` runs a coroutine as one of its tasks."""

    def __init__(
        self,
        monitor: Events2Monitor | None,
        state_dir: Path,
        *,
        state: Callable[[], CoreState | None],
        feed: Callable[[Event], object],
        spawn: Callable[[Any], None],
        outdater: Outdater = default_outdater,
    ) -> None:
        self.monitor = monitor
        self.state_dir = state_dir
        self._state = state
        self._feed = feed
        self._spawn = spawn
        self.outdater = outdater
        #: wakes a drbddisk promotion when DRBD or the core's view of the peer changed
        self.changes = ChangeSignal()
        self._liveness: PeerLiveness | None = None
        #: unresolved DRBD split brains, as persisted in the state directory
        self._split_brains: dict[str, dict[str, object]] = {}
        #: drbdadm for resolve-split-brain (tests use a fake)
        self.drbdadm = "drbdadm"
        if monitor is not None and monitor.on_change is None:
            monitor.on_change = self.changed

    # -- what a drbddisk agent reads ----------------------------------------------------------

    def hooks(self) -> dict[str, Any]:
        """What a drbddisk agent reads from this loop (AgentContext fields): the monitor's
        view, the core's view of the peer, and the signal that either changed."""
        return {
            "drbd_split_brain": self.split_brain,
            "drbd_replica": self.replica,
            "peer_liveness": self.peer_liveness,
            "drbd_changes": self.changes,
        }

    def peer_liveness(self) -> PeerLiveness:
        """The core's view of the peer for a drbddisk promotion (the hook the promotion
        machine of supervisor.core.promotion reads)."""
        st = self._state()
        if st is None:
            return peer_liveness("peer", False, "", ())
        hearing = tuple(n for n, ls in st.links.items() if ls.status.delivers)
        # a peer that left cleanly (twinbeat stopped) may still run DRBD: never dropped
        beat = st.peer_state.beat
        left = beat is not None and beat.status is NodeStatus.LEAVING
        return peer_liveness(st.peer, st.peer_status is PeerStatus.DEAD and not left,
                             st.peer_state.dead_reason, hearing)

    def replica(self, resource: str) -> ReplicaSnapshot | None:
        mon = self.monitor
        view = mon.views.get(resource) if mon is not None and mon.running else None
        if view is None or view.connection == "Unconfigured":
            return None
        return ReplicaSnapshot.from_view(view)

    def split_brain(self, resource: str) -> bool:
        if self.monitor is None:
            return False
        view = self.monitor.views.get(resource)
        return view is not None and view.split_brain

    def stepped(self) -> None:
        """After the loop's steps: wake the promotions when the core's view of the peer
        changed."""
        if self.monitor is not None:
            liveness = self.peer_liveness()
            if liveness != self._liveness:
                self._liveness = liveness
                self.changes.notify()

    # -- the monitor's changes, as events ------------------------------------------------------

    def sync(self) -> None:
        """Post the monitor's current view of every replica (before an admin command, so
        the core judges what DRBD says now)."""
        if self.monitor is not None:
            for view in self.monitor.views.values():
                self._feed(ReplicaChanged(view.snapshot()))

    def changed(self, resource: str, _said: list[str]) -> None:
        if self.monitor is not None and self._state() is not None:
            self._feed(ReplicaChanged(self.monitor.views[resource].snapshot()))
        self.changes.notify()
        self.remember_split_brains()

    # -- split brains across a restart ---------------------------------------------------------

    def restore_split_brains(self) -> None:
        """A split brain survives a restart: DRBD says nothing more about one it reported
        before (the resource just stays StandAlone), so the last run's word is taken."""
        if self.monitor is None:
            return
        self._split_brains = load_split_brains(self.state_dir)
        now = time.monotonic()
        for name, info in self._split_brains.items():
            view = self.monitor.views.get(name)
            if view is None:
                continue
            since = info.get("since")
            when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
                    if isinstance(since, int | float) else "before")
            for sentence in view.mark_split_brain(
                    now, f"detected {when}, before twinbeat restarted: "
                         f"{info.get('detail') or 'the replicas diverged'}"):
                log.error("%s", sentence)

    def remember_split_brains(self) -> None:
        """Persist the set of unresolved split brains when it changed (in a thread)."""
        if self.monitor is None:
            return
        current = {name: self._split_brains.get(name) or {
                       "detail": "DRBD found diverged data when the nodes reconnected",
                       "since": time.time()}
                   for name, view in self.monitor.views.items() if view.split_brain}
        if current == self._split_brains:
            return
        self._split_brains = current
        self._spawn(asyncio.to_thread(save_split_brains, self.state_dir, dict(current)))

    # -- the core's DRBD actions ---------------------------------------------------------------

    async def outdate(self, action: OutdateReplica) -> None:
        """Outdate the local replica off the decision path; the result comes back as an event."""
        detail = ""
        try:
            result = await self.outdater(action.resource, action.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a driver bug is a failed outdate, not a dead daemon
            log.exception("DRBD resource %s: outdate failed", action.resource)
            result, detail = "failed", f"internal error: {exc!r}"
        self._feed(OutdateResult(action.resource, action.request_id, result, detail))

    async def run_drbdadm(self, action: RunDrbdadm) -> None:
        """The commands of a resolve-split-brain, in order; the outcome comes back as an
        event."""
        ok, detail = True, ""
        for args, required in action.steps:
            r = await run_command([self.drbdadm, *args, action.resource],
                                  timeout=action.timeout)
            if not r.ok and required:
                ok, detail = False, f"drbdadm {' '.join(args)} failed: {r.describe()}"
                break
        self._feed(DrbdadmDone(action.request_id, action.resource, ok, detail))
