"""A two-node simulator for the decision core: fake clock, fake links, fake resources.

Nothing sleeps: events are processed in time order from a heap, so hundreds of failover
scenarios run in a second. Links can be cut (both ways or one way), delayed, made lossy or
reordering; nodes can be killed (power off: their resources vanish), frozen and thawed
(SIGSTOP/SIGCONT: resources stay), and restarted (new generation).
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field, replace
from typing import Any

from supervisor.config import Config, SerialLink, load_config
from supervisor.core import codec
from supervisor.core.actions import (
    AdminAnswer,
    CheckResource,
    FenceAnswer,
    OutdateReplica,
    Reboot,
    RunDrbdadm,
    SendFrame,
    ShutdownComplete,
    StartResource,
    StopResource,
)
from supervisor.core.events import (
    AdminCommand,
    DrbdadmDone,
    Event,
    FrameReceived,
    FramesReceived,
    OutdateResult,
    PingReply,
    PublicCarrier,
    ResourceResult,
    ShutdownRequested,
    Tick,
    WatchdogState,
    shared_arrivals,
)
from supervisor.core.quiet import busy
from supervisor.core.state import EPS, CoreState, initial_state
from supervisor.core.states import Activity, PeerStatus
from supervisor.core.step import next_deadline, step
from supervisor.core.view import status as core_status

KEY = b"simulated-shared-secret"

CONFIG = """
[cluster]
name = "sim"
auto_failback = {failback}
{extra_cluster}

[timing]
keepalive = "{keepalive}"
deadtime = "{deadtime}"
warntime = "{warntime}"
initdead = "{initdead}"

[watchdog]
mode = "{watchdog}"
timeout = "{watchdog_timeout}"

[[node]]
name = "node1"
address = "192.168.85.1"
crossover_address = "10.0.0.1"

[[node]]
name = "node2"
address = "192.168.85.2"
crossover_address = "10.0.0.2"

[[link]]
name = "serial"
type = "serial"
device = "/dev/ttyS1"

[[link]]
name = "crossover"
type = "udp"
interface = "eth1"
peer = "10.0.0.2"

[[link]]
name = "public"
type = "udp"
interface = "eth0"
peer = "192.168.85.2"

[[group]]
name = "web"
preferred = "node1"
resources = {resources}
monitor_interval = "{monitor}"
max_restarts = {max_restarts}
restart_window = "60s"
failure_timeout = "{failure_timeout}"
on_stop_failure = "{on_stop_failure}"
"""


def make_config(
    *,
    failback: bool = True,
    keepalive: str = "100ms",
    deadtime: str = "500ms",
    warntime: str = "300ms",
    initdead: str = "2s",
    monitor: str = "1s",
    max_restarts: int = 2,
    failure_timeout: str = "30s",
    on_stop_failure: str = "reboot",
    watchdog: str = "off",
    watchdog_timeout: str = "10s",
    extra_groups: str = "",
    extra_cluster: str = "",
    resources: str = '["IPaddr::192.168.85.3/24/eth0", "noop::db", "httpd"]',
) -> Config:
    text = CONFIG.format(
        failback=str(failback).lower(),
        keepalive=keepalive,
        deadtime=deadtime,
        warntime=warntime,
        initdead=initdead,
        monitor=monitor,
        max_restarts=max_restarts,
        failure_timeout=failure_timeout,
        on_stop_failure=on_stop_failure,
        watchdog=watchdog,
        watchdog_timeout=watchdog_timeout,
        extra_cluster=extra_cluster,
        resources=resources,
    )
    return load_config("sim.toml", text=text + extra_groups, check_devices=False,
                       check_authkeys=False)


@dataclass
class LinkSim:
    name: str
    up: dict[str, bool] = field(default_factory=lambda: {"node1": True, "node2": True})
    delay: float = 0.002
    jitter: float = 0.0
    loss: float = 0.0

    def delivers(self, sender: str) -> bool:
        return self.up[sender] and self.loss < 1.0


@dataclass
class NodeSim:
    name: str
    config: Config
    generation: int
    state: CoreState
    running: dict[tuple[str, int], bool] = field(default_factory=dict)
    alive: bool = True  # powered on
    frozen: bool = False
    #: when an armed watchdog resets this frozen node (None: never)
    reset_at: float | None = None
    fail_start: set[tuple[str, int]] = field(default_factory=set)
    fail_stop: set[tuple[str, int]] = field(default_factory=set)
    op_latency: float = 0.01
    reasons: list[tuple[float, str]] = field(default_factory=list)
    reboots: list[str] = field(default_factory=list)
    starts: list[tuple[float, str, int]] = field(default_factory=list)
    stops: list[tuple[float, str, int]] = field(default_factory=list)
    exited: bool = False
    pending: list[tuple[float, Event]] = field(default_factory=list)
    #: when the last frame reached this node (before a quiet node reads it)
    last_arrival: float | None = None
    world_ok: bool = True
    #: seconds every ping answer is late (0: answered at once); world_ok False drops them
    ping_delay: float = 0.0
    last_ping_sent: float | None = None
    tick_token: int = 0
    tick_at: float | None = None
    # fencing: what the core asked for; ``outdate_result`` set = the fake driver answers
    outdates: list[tuple[float, OutdateReplica]] = field(default_factory=list)
    fence_answers: list[tuple[float, FenceAnswer]] = field(default_factory=list)
    #: resolve-split-brain: the drbdadm commands asked for, and how they end (None: ok)
    drbdadm_runs: list[tuple[float, RunDrbdadm]] = field(default_factory=list)
    drbdadm_error: str | None = None
    admin_answers: list[tuple[float, AdminAnswer]] = field(default_factory=list)
    outdate_result: str | None = None
    last_frame: bytes = b""
    actions: list[tuple[float, object]] = field(default_factory=list)
    #: frames waiting for the node's next wake-up (Sim.quiet)
    held: list[FrameReceived] = field(default_factory=list)

    def holds(self, group: str) -> bool:
        return any(v for (g, _), v in self.running.items() if g == group)


class Sim:
    def __init__(
        self, config: Config | None = None, *, seed: int = 0, start_gap: float = 0.0,
        configs: dict[str, Config] | None = None,
        releases: dict[str, str] | None = None,
        minors: dict[str, int] | None = None,
    ) -> None:
        self.now = 0.0
        #: each node's twinbeat release (its beats say it; none by default)
        self.releases = dict(releases or {})
        #: each node's protocol minor (codec.PROTOCOL_MINOR by default); change it and
        #: restart() the node to play an upgrade
        self.minors = dict(minors or {})
        self.rng = random.Random(seed)
        self._heap: list[tuple[float, int, str, Event, int]] = []
        self._counter = itertools.count()
        base = config or make_config()
        self.configs = configs or {"node1": base, "node2": base}
        self.links = {link.name: LinkSim(link.name) for link in base.links}
        #: the links without a receive timestamp (a quiet node's held frames)
        self.serial_links = {link.name for link in base.links if isinstance(link, SerialLink)}
        self.nodes: dict[str, NodeSim] = {}
        self.violations: list[str] = []
        self.check_invariant = True
        #: step the frames that reach a node at the same instant together (FramesReceived),
        #: as the loop does with the frames of one wake-up; ``batches`` counts such steps
        self.batch_frames = True
        self.batches = 0
        #: as the loop does while the core says nothing is in flight (supervisor.core.quiet):
        #: a node's frames wait until its own next wake-up (a tick), then are stepped first;
        #: ``held`` counts the frames that waited
        self.quiet = False
        self.held = 0
        self._boot("node1", 1, 0.0)
        self._boot("node2", 1, start_gap)

    # -- node lifecycle ------------------------------------------------------------------

    def _boot(self, name: str, generation: int, at: float) -> None:
        cfg = self.configs[name]
        state = initial_state(cfg, name, KEY, generation, at,
                              release=self.releases.get(name, ""),
                              minor=self.minors.get(name, codec.PROTOCOL_MINOR))
        node = NodeSim(name, cfg, generation, state)
        old = self.nodes.get(name)
        if old is not None:
            node.fail_start, node.fail_stop = old.fail_start, old.fail_stop
            node.reasons, node.reboots = old.reasons, old.reboots
            node.starts, node.stops = old.starts, old.stops
        self.nodes[name] = node
        if old is not None:
            node.tick_token = old.tick_token + 1
        self._push(at, name, Tick())
        if cfg.watchdog.mode != "off":
            self._push(at, name, WatchdogState(True, "armed (simulated)",
                                                     timeout=cfg.watchdog.timeout))

    def kill(self, name: str) -> None:
        """Power off: nothing more is sent or processed; resources vanish."""
        node = self.nodes[name]
        node.alive = False
        node.running.clear()

    def freeze(self, name: str) -> None:
        """SIGSTOP: nothing is sent or processed, resources stay. A node with an armed
        watchdog (mode not off) is reset (killed) when its timeout has run out: its loop fed
        it for the last time at the freeze."""
        node = self.nodes[name]
        node.frozen = True
        if node.config.watchdog.mode != "off":
            node.reset_at = self.now + node.config.watchdog.timeout

    def thaw(self, name: str) -> None:
        node = self.nodes[name]
        node.frozen = False
        node.reset_at = None
        for at, ev in node.pending:
            self._push(max(at, self.now), name, ev)
        node.pending.clear()
        self._push(self.now, name, Tick())

    def restart(self, name: str) -> None:
        """Power on again after a kill (a new boot generation)."""
        old = self.nodes[name]
        self._boot(name, old.generation + 1, self.now)

    # -- links -------------------------------------------------------------------------------

    def cut(self, *names: str, direction: str | None = None) -> None:
        for n in names or tuple(self.links):
            for sender in self.links[n].up:
                if direction is None or direction == sender:
                    self.links[n].up[sender] = False

    def heal(self, *names: str) -> None:
        for n in names or tuple(self.links):
            for sender in self.links[n].up:
                self.links[n].up[sender] = True

    def any_link_delivers(self) -> bool:
        """Some link is up both ways and loses nothing. A lossy link is not enough: losing
        every frame of a deadtime (5 keepalives) is a matter of time at 40 % loss, and then
        the peer is dead by definition (heartbeat behaves the same)."""
        return any(all(link.up.values()) and link.loss == 0.0 for link in self.links.values())

    # -- events ------------------------------------------------------------------------------

    def _push(self, at: float, node: str, event: Event) -> None:
        heapq.heappush(self._heap, (at, next(self._counter), node, event, -1))

    def _schedule_tick(self, node: NodeSim) -> None:
        at = next_deadline(node.state, self.now)
        if node.tick_at is not None and node.tick_at <= at and node.tick_at > self.now:
            return
        node.tick_token += 1
        node.tick_at = at
        heapq.heappush(self._heap, (at, next(self._counter), node.name, Tick(), node.tick_token))

    def admin(self, node: str, command: str, group: str | None = None) -> list[str]:
        return self.deliver(node, AdminCommand(command, group))

    def shutdown(self, node: str) -> None:
        self.deliver(node, ShutdownRequested())

    def set_world(self, node: str, ok: bool) -> None:
        self.nodes[node].world_ok = ok
        self.deliver(node, PublicCarrier(ok))

    def deliver(self, name: str, event: Event) -> list[str]:
        node = self.nodes[name]
        if not node.alive or node.exited:
            return []
        if node.frozen:
            node.pending.append((self.now, event))
            return []
        result = step(node.state, event, self.now)
        node.state = result.state
        for r in result.reasons:
            node.reasons.append((self.now, r))
        for action in result.actions:
            node.actions.append((self.now, action))
            self._act(node, action)
        self._schedule_tick(node)
        if self.check_invariant:
            self._check()
        return result.reasons

    def _act(self, node: NodeSim, action: object) -> None:
        match action:
            case SendFrame(data=data):
                node.last_frame = data
                for link in self.links.values():
                    if not link.up[node.name] or self.rng.random() < link.loss:
                        continue
                    other = "node2" if node.name == "node1" else "node1"
                    delay = link.delay + self.rng.uniform(0, link.jitter)
                    self._push(self.now + delay, other, FrameReceived(link.name, data))
            case StartResource(group=g, index=i, op_id=op):
                ok = (g, i) not in node.fail_start
                if ok:
                    node.running[(g, i)] = True
                    node.starts.append((self.now, g, i))
                self._push(self.now + node.op_latency, node.name,
                           ResourceResult(g, op, ok, detail="" if ok else "simulated failure"))
            case StopResource(group=g, index=i, op_id=op):
                ok = (g, i) not in node.fail_stop
                if ok:
                    node.running[(g, i)] = False
                    node.stops.append((self.now, g, i))
                self._push(self.now + node.op_latency, node.name,
                           ResourceResult(g, op, ok, detail="" if ok else "simulated failure"))
            case CheckResource(group=g, index=i, op_id=op):
                running = node.running.get((g, i), False)
                self._push(self.now + node.op_latency, node.name,
                           ResourceResult(g, op, True, running=running))
            case Reboot(reason=reason):
                node.reboots.append(reason)
                self.kill(node.name)
            case ShutdownComplete():
                node.exited = True
            case OutdateReplica(resource=resource, request_id=rid):
                node.outdates.append((self.now, action))
                if node.outdate_result is not None:
                    self._push(self.now + node.op_latency, node.name,
                               OutdateResult(resource, rid, node.outdate_result))
            case FenceAnswer():
                node.fence_answers.append((self.now, action))
            case RunDrbdadm(request_id=rid, resource=resource):
                node.drbdadm_runs.append((self.now, action))
                ok = node.drbdadm_error is None
                self._push(self.now + node.op_latency, node.name,
                           DrbdadmDone(rid, resource, ok, node.drbdadm_error or ""))
            case AdminAnswer():
                node.admin_answers.append((self.now, action))
            case _:
                pass

    def run(self, duration: float) -> None:
        self.run_until(self.now + duration)

    def _watchdog_resets(self, up_to: float) -> None:
        for node in list(self.nodes.values()):
            if node.frozen and node.alive and node.reset_at is not None \
                    and node.reset_at <= up_to:
                self.now = max(self.now, node.reset_at)
                node.reboots.append("watchdog reset (simulated)")
                node.frozen = False
                node.reset_at = None
                self.kill(node.name)

    def run_until(self, t: float) -> None:
        while self._heap and self._heap[0][0] <= t:
            self._watchdog_resets(self._heap[0][0])
            at, _, name, event, token = heapq.heappop(self._heap)
            self.now = max(self.now, at)
            node = self.nodes[name]
            if token >= 0:
                if token != node.tick_token:
                    continue  # superseded by a later scheduling
                node.tick_at = None
                if node.frozen:
                    continue
            self._feed_pings(name)
            if isinstance(event, FrameReceived):
                node.last_arrival = at
            if self.quiet and isinstance(event, FrameReceived) and node.alive \
                    and not node.frozen and busy(node.state) is None:
                # waits in its socket for the node's wake-up; a datagram carries its
                # arrival (the kernel's receive timestamp), a serial line's frame does not
                node.held.append(event if event.link in self.serial_links
                                 else replace(event, arrived=at))
                self.held += 1
                continue
            if self.quiet and token >= 0 and node.held:
                # the loop's own wake-up: what the links hold is read and stepped first
                self._release(node)
                if next_deadline(node.state, self.now) > self.now + EPS:
                    continue  # the frames' step set the next wake-up
            if isinstance(event, FrameReceived) and self.batch_frames:
                # as the loop does: frames that arrive at once are stepped together
                frames = [event]
                while (self._heap and self._heap[0][0] == at and self._heap[0][2] == name
                       and isinstance(self._heap[0][3], FrameReceived)):
                    frames.append(heapq.heappop(self._heap)[3])  # type: ignore[arg-type]
                if len(frames) > 1:
                    self.batches += 1
                    event = FramesReceived(tuple(frames))
            self.deliver(name, event)
            if node.held and busy(node.state) is not None:
                self._release(node)  # busy again: the links are read at arrival
        self._watchdog_resets(t)
        self.now = max(self.now, t)

    def _release(self, node: NodeSim) -> None:
        # read link by link, in the configuration's order, as the loop's LinkSet does (a
        # read may hold a newer beat on one link before an older one on the next)
        order = {name: i for i, name in enumerate(self.links)}
        held = sorted(node.held, key=lambda f: order.get(f.link, len(order)))
        # waited and stripped, the copies sharing an arrival: as the loop does with what it
        # collected (Supervisor._take_collected)
        frames = tuple(replace(f, data=f.data.strip(), waited=True) for f in held)
        node.held = []
        arrivals = shared_arrivals([f.data for f in frames], [f.arrived for f in frames])
        frames = tuple(replace(f, arrived=at) for f, at in zip(frames, arrivals, strict=True))
        self.deliver(node.name, frames[0] if len(frames) == 1 else FramesReceived(frames))

    def _feed_pings(self, name: str) -> None:
        node = self.nodes[name]
        if not (node.config.ping_nodes and node.world_ok and node.alive and not node.frozen):
            return
        address = str(node.config.ping_nodes[0])
        if node.ping_delay:
            # one ping per ping_interval, answered ping_delay later (a late answer)
            if node.last_ping_sent is None or \
                    self.now - node.last_ping_sent >= node.config.ping_interval:
                node.last_ping_sent = self.now
                self._push(self.now + node.ping_delay, name, PingReply(address))
            return
        last = node.state.world.last_ping
        if last is None or self.now - last > 0.2:
            self.deliver(name, PingReply(address))

    # -- observation -------------------------------------------------------------------------

    def holders(self, group: str = "web") -> list[str]:
        return [n.name for n in self.nodes.values() if n.alive and n.holds(group)]

    def owner(self, group: str = "web") -> str | None:
        """The single node whose resources for the group are all running, if any."""
        full = []
        for node in self.nodes.values():
            cfg_group = node.config.group(group)
            if node.alive and all(
                node.running.get((group, i), False) for i in range(len(cfg_group.resources))
            ):
                full.append(node.name)
        return full[0] if len(full) == 1 else None

    def activity(self, node: str, group: str = "web") -> Activity:
        return self.nodes[node].state.groups[group].activity

    def peer_status(self, node: str) -> PeerStatus:
        return self.nodes[node].state.peer_status

    def status(self, node: str) -> dict[str, Any]:
        return core_status(self.nodes[node].state, self.now)

    def reasons(self, node: str) -> list[str]:
        return [r for _, r in self.nodes[node].reasons]

    def _check(self) -> None:
        if not self.any_link_delivers():
            return
        for group in {g.name for n in self.nodes.values() for g in n.config.groups}:
            holders = [
                n.name for n in self.nodes.values()
                if n.alive and not n.frozen and n.holds(group)
            ]
            frozen_holders = [n.name for n in self.nodes.values() if n.frozen and n.holds(group)]
            if len(holders) + len(frozen_holders) > 1 and not frozen_holders:
                self.violations.append(f"t={self.now:.3f}: group {group} held by {holders}")
