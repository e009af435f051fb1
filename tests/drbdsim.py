"""The two-node simulator with a fake DRBD 8.4 pair under the ``drbddisk::r0`` resource.

Each node's drbddisk start runs the real promotion machine (``supervisor.core.promotion``)
the way the agent does: it is fed the fake DRBD's state and the node's core view of the peer
(``peer_liveness``, the same function the loop uses), and its actions are carried out
against the fake DRBD with a latency. The fake DRBD notices a dead peer by its own ping only
``ping_detect`` seconds after the peer stopped (DRBD's ping-int 10 s + ping-timeout), a
demotion reaches the peer's view ``notice_delay`` later, and a resync runs at ``rate`` KiB/s.
A promotion of a replica that is not connected runs the fence-peer handler: the sim asks the
node's core (FenceRequested) and completes the promotion with its answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from supervisor.config import Config
from supervisor.core import promotion
from supervisor.core.actions import CheckResource, FenceAnswer, StartResource, StopResource
from supervisor.core.events import Event, FenceRequested, ReplicaChanged, ResourceResult
from supervisor.core.promotion import (
    CommandDone,
    Connect,
    Disconnect,
    Limits,
    Observed,
    Promote,
    Promoted,
    PromotionAction,
    Refuse,
    ReplicaSnapshot,
    Wait,
)
from supervisor.core.replica import Replica
from supervisor.core.states import NodeStatus, PeerStatus
from supervisor.resource_spec import DrbdSpec
from tests.sim import NodeSim, Sim, make_config

RESOURCES = '["drbddisk::r0", "IPaddr::192.168.85.3/24/eth0", "noop::db"]'


def drbd_config(**kw: object) -> Config:
    return make_config(resources=RESOURCES, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Call:
    """A sim-internal callback scheduled on the event heap."""

    fn: Callable[[], None]


@dataclass
class DrbdSide:
    role: str = "Secondary"
    disk: str = "UpToDate"
    #: this side's view of the connection: Connected | Connecting | StandAlone | Down
    conn: str = "Connected"
    #: the peer's role as this side's DRBD believes it (lags behind by notice_delay)
    peer_role: str = "Secondary"
    #: the peer's disk as this side knows it when not connected (Outdated after fencing)
    fenced_peer: str = "DUnknown"
    #: promoted while not connected: holds writes the peer does not have
    ahead: bool = False


@dataclass
class Running:
    """A drbddisk start in progress on one node."""

    group: str
    index: int
    op_id: int
    machine: promotion.Promotion
    action: PromotionAction
    wake_token: int = 0
    fence_id: int | None = None


@dataclass
class FakeDrbd:
    sides: dict[str, DrbdSide] = field(default_factory=lambda: {
        "node1": DrbdSide(), "node2": DrbdSide()})
    ping_detect: float = 10.5
    notice_delay: float = 0.05
    rate_kib_s: float = 10_000.0
    out_of_sync_kib: float = 0.0
    sync_source: str | None = None
    sync_started: float = 0.0
    split_brain: bool = False
    commands: dict[str, list[tuple[float, str]]] = field(default_factory=lambda: {
        "node1": [], "node2": []})
    fence_calls: dict[str, list[int]] = field(default_factory=lambda: {
        "node1": [], "node2": []})

    @staticmethod
    def other(node: str) -> str:
        return "node2" if node == "node1" else "node1"

    def connected(self) -> bool:
        return all(s.conn == "Connected" for s in self.sides.values())

    def snapshot(self, node: str, now: float) -> ReplicaSnapshot:
        me = self.sides[node]
        peer = self.sides[self.other(node)]
        if me.conn != "Connected":
            return ReplicaSnapshot(me.role, "Unknown", me.conn, me.disk, me.fenced_peer,
                                   "Off", self.split_brain)
        replication, done, eta = "Established", None, None
        if self.sync_source is not None:
            replication = "SyncSource" if self.sync_source == node else "SyncTarget"
            left = self.left(now)
            total = max(self.out_of_sync_kib, 1.0)
            done, eta = 100.0 * (1 - left / total), left / self.rate_kib_s
        return ReplicaSnapshot(me.role, me.peer_role, "Connected", me.disk, peer.disk,
                               replication, self.split_brain, done, eta)

    def left(self, now: float) -> float:
        return max(0.0, self.out_of_sync_kib - (now - self.sync_started) * self.rate_kib_s)


class DrbdSim(Sim):
    def __init__(self, config: Config | None = None, *, drbd: FakeDrbd | None = None,
                 limits: Limits | None = None, **kw: object) -> None:
        self.drbd = drbd or FakeDrbd()
        self.limits = limits or Limits()
        self.promotions: dict[str, Running] = {}
        self.liveness: dict[str, promotion.PeerLiveness] = {}
        self.drbd_reasons: dict[str, list[tuple[float, str]]] = {"node1": [], "node2": []}
        self._fence_ids = 1000
        super().__init__(config or drbd_config(), **kw)  # type: ignore[arg-type]

    # -- plumbing ----------------------------------------------------------------------------

    def at(self, t: float, fn: Callable[[], None], node: str = "node1") -> None:
        self._push(t, node, Call(fn))  # type: ignore[arg-type]

    def deliver(self, name: str, event: Event) -> list[str]:
        if isinstance(event, Call):
            event.fn()
            return []
        reasons = super().deliver(name, event)
        self._liveness_changed(name)
        return reasons

    def peer_liveness(self, name: str) -> promotion.PeerLiveness:
        st = self.nodes[name].state
        hearing = tuple(n for n, ls in st.links.items() if ls.status.delivers)
        beat = st.peer_state.beat
        left = beat is not None and beat.status is NodeStatus.LEAVING
        return promotion.peer_liveness(st.peer, st.peer_status is PeerStatus.DEAD and not left,
                                       st.peer_state.dead_reason, hearing)

    def _liveness_changed(self, name: str) -> None:
        if name not in self.nodes or not self.nodes[name].alive:
            return
        now = self.peer_liveness(name)
        if now != self.liveness.get(name):
            self.liveness[name] = now
            self._wake(name)

    def _changed(self) -> None:
        """DRBD's state changed: each core is told (ReplicaChanged, the events2 monitor's
        on_change in the real loop) and every waiting promotion looks again."""
        for name, node in self.nodes.items():
            if node.alive:
                r = self.drbd.snapshot(name, self.now)
                self.deliver(name, ReplicaChanged(Replica(
                    "r0", r.role, r.peer_role, r.connection, r.disk, r.peer_disk,
                    r.split_brain, None, r.replication, r.done)))
        for name in list(self.promotions):
            self._wake(name)

    def _wake(self, name: str) -> None:
        run = self.promotions.get(name)
        if run is not None and isinstance(run.action, Wait):
            run.wake_token += 1
            token = run.wake_token
            self.at(self.now, lambda: self._woken(name, token), name)

    def _say(self, name: str, text: str) -> None:
        self.drbd_reasons[name].append((self.now, text))

    # -- resource actions --------------------------------------------------------------------

    def _act(self, node: NodeSim, action: object) -> None:
        match action:
            case StartResource(group=g, index=i, spec=DrbdSpec(), op_id=op):
                self._start(node.name, g, i, op)
            case StopResource(group=g, index=i, spec=DrbdSpec(), op_id=op):
                self._demote(node.name)
                node.running[(g, i)] = False
                node.stops.append((self.now, g, i))
                self._push(self.now + node.op_latency, node.name, ResourceResult(g, op, True))
            case CheckResource(group=g, index=i, spec=DrbdSpec(), op_id=op):
                ok = self.drbd.sides[node.name].role == "Primary"
                self._push(self.now + node.op_latency, node.name,
                           ResourceResult(g, op, True, running=ok))
            case FenceAnswer(request_id=rid, code=code):
                super()._act(node, action)
                self._fence_answered(node.name, rid, code)
            case _:
                super()._act(node, action)

    def _start(self, name: str, group: str, index: int, op_id: int) -> None:
        m, action = promotion.begin(
            "r0", self.now, replica=self.drbd.snapshot(name, self.now),
            peer=self.peer_liveness(name), limits=self.limits)
        self.promotions[name] = Running(group, index, op_id, m, action)
        self._carry_out(name)

    def _woken(self, name: str, token: int) -> None:
        run = self.promotions.get(name)
        if run is None or run.wake_token != token or not self.nodes[name].alive:
            return
        run.machine, run.action = promotion.feed(
            run.machine, Observed(self.drbd.snapshot(name, self.now), self.peer_liveness(name)),
            self.now)
        self._carry_out(name)

    def _result(self, name: str, command: str, ok: bool, detail: str = "") -> None:
        run = self.promotions.get(name)
        if run is None or not self.nodes[name].alive:
            return
        run.machine, run.action = promotion.feed(run.machine, CommandDone(command, ok, detail),
                                                 self.now)
        self._carry_out(name)

    def _carry_out(self, name: str) -> None:
        run = self.promotions[name]
        node = self.nodes[name]
        latency = node.op_latency
        match run.action:
            case Promoted(reason=reason):
                self._say(name, reason)
                del self.promotions[name]
                node.running[(run.group, run.index)] = True
                node.starts.append((self.now, run.group, run.index))
                self._push(self.now + latency, name, ResourceResult(run.group, run.op_id, True))
            case Refuse(reason=reason):
                self._say(name, reason)
                del self.promotions[name]
                self._push(self.now + latency, name,
                           ResourceResult(run.group, run.op_id, False, detail=reason))
            case Wait(until=until, reason=reason):
                self._say(name, reason)
                run.wake_token += 1
                token = run.wake_token
                self.at(until, lambda: self._woken(name, token), name)
            case Disconnect(reason=reason):
                self._say(name, reason)
                self.drbd.commands[name].append((self.now, "disconnect --force"))
                self.at(self.now + latency, lambda: self._disconnect(name), name)
            case Promote(reason=reason, force=force):
                self._say(name, reason)
                self.drbd.commands[name].append(
                    (self.now, "primary --force" if force else "primary"))
                self.at(self.now + latency, lambda: self._promote(name, force), name)
            case Connect(reason=reason):
                self._say(name, reason)
                self.drbd.commands[name].append((self.now, "connect"))
                self.at(self.now + latency, lambda: self._connect(name), name)

    # -- the fake DRBD -----------------------------------------------------------------------

    def _disconnect(self, name: str) -> None:
        me = self.drbd.sides[name]
        peer = self.drbd.sides[self.drbd.other(name)]
        if me.conn == "Connected" and peer.conn == "Connected":
            # the peer's DRBD notices the closed socket at once
            peer.conn, peer.peer_role = "Connecting", "Unknown"
            self.drbd.sync_source = None
        me.conn, me.peer_role = "StandAlone", "Unknown"
        self._changed()
        self._result(name, "disconnect", True)

    def _promote(self, name: str, force: bool) -> None:
        me = self.drbd.sides[name]
        if me.conn == "Connected" and me.peer_role == "Primary":
            self._result(name, "promote", False, "drbdadm primary r0 failed (exit 11): "
                         "State change failed: (-1) Multiple primaries not allowed by config")
            return
        if me.disk != "UpToDate" and not force:
            self._result(name, "promote", False, "drbdadm primary r0 failed (exit 17): "
                         "State change failed: (-2) Need access to UpToDate data")
            return
        if me.conn != "Connected":
            # fencing resource-only: the fence-peer handler runs first (twinbeat fence-peer)
            self._fence_ids += 1
            run = self.promotions[name]
            run.fence_id = self._fence_ids
            self.drbd.fence_calls[name].append(self._fence_ids)
            self.deliver(name, FenceRequested("r0", self._fence_ids))
            return
        self._become_primary(name, force)

    def _fence_answered(self, name: str, request_id: int, code: int) -> None:
        run = self.promotions.get(name)
        if run is None or run.fence_id != request_id:
            return
        run.fence_id = None
        me = self.drbd.sides[name]
        if code == 6:
            me.disk = "Outdated"
            self._result(name, "promote", False, "drbdadm primary r0 failed: the peer is "
                         "Primary (fence-peer exit 6)")
            return
        me.fenced_peer = "Outdated" if code in (4, 5) else "Inconsistent"
        self._become_primary(name, force=isinstance(run.action, Promote) and run.action.force)

    def _become_primary(self, name: str, force: bool) -> None:
        me = self.drbd.sides[name]
        if force and me.disk == "Inconsistent":
            me.disk = "UpToDate"
            if me.conn == "Connected":
                self._start_sync(source=name, kib=64 * 1024)
        me.role = "Primary"
        if me.conn != "Connected":
            me.ahead = True
        other = self.drbd.other(name)
        if me.conn == "Connected":
            self.at(self.now + self.drbd.notice_delay,
                    lambda: self._peer_sees(other, "Primary"), other)
        self._changed()
        self._result(name, "promote", True)

    def _demote(self, name: str) -> None:
        me = self.drbd.sides[name]
        if me.role != "Primary":
            return
        me.role = "Secondary"
        other = self.drbd.other(name)
        if me.conn == "Connected":
            self.at(self.now + self.drbd.notice_delay,
                    lambda: self._peer_sees(other, "Secondary"), other)
        self._changed()

    def _peer_sees(self, name: str, role: str) -> None:
        side = self.drbd.sides[name]
        if side.conn == "Connected":
            side.peer_role = role
            self._changed()

    def _connect(self, name: str) -> None:
        self.drbd.sides[name].conn = "Connecting"
        self._try_handshake()
        self._changed()
        self._result(name, "connect", True)

    def _try_handshake(self) -> None:
        a, b = self.drbd.sides["node1"], self.drbd.sides["node2"]
        if a.conn != "Connecting" or b.conn != "Connecting":
            return
        if a.ahead and b.ahead:
            self.drbd.split_brain = True
            a.conn = b.conn = "StandAlone"
            return
        a.conn = b.conn = "Connected"
        a.peer_role, b.peer_role = b.role, a.role
        for name, side, other in (("node1", a, b), ("node2", b, a)):
            if side.ahead:
                side.ahead = False
                other.disk = "Inconsistent"
                self._start_sync(source=name, kib=self.drbd.out_of_sync_kib or 50_000)

    def _start_sync(self, source: str, kib: float) -> None:
        self.drbd.sync_source = source
        self.drbd.sync_started = self.now
        self.drbd.out_of_sync_kib = kib
        target = self.drbd.other(source)
        self.drbd.sides[target].disk = "Inconsistent"
        token = self.drbd.sync_started
        self.at(self.now + kib / self.drbd.rate_kib_s, lambda: self._sync_done(token))

    def _sync_done(self, token: float) -> None:
        if self.drbd.sync_source is None or self.drbd.sync_started != token:
            return
        target = self.drbd.other(self.drbd.sync_source)
        self.drbd.sides[target].disk = "UpToDate"
        self.drbd.sync_source = None
        self.drbd.out_of_sync_kib = 0.0
        self._changed()

    # -- faults ------------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        super().kill(name)
        self.promotions.pop(name, None)
        me = self.drbd.sides[name]
        was_connected = me.conn == "Connected"
        me.role, me.conn = "Secondary", "Down"
        other = self.drbd.other(name)
        if was_connected:
            self.at(self.now + self.drbd.ping_detect, lambda: self._ping_noticed(other), other)

    def _ping_noticed(self, name: str) -> None:
        side = self.drbd.sides[name]
        if side.conn == "Connected" and self.drbd.sides[self.drbd.other(name)].conn == "Down":
            side.conn, side.peer_role = "Connecting", "Unknown"
            self.drbd.sync_source = None
            self._changed()

    def restart(self, name: str) -> None:
        super().restart(name)
        # its drbddisk stop (start-up cleanup) brings the resource up: it listens again
        self.drbd.sides[name].conn = "Connecting"
        self._try_handshake()
        self._changed()
