"""The decision core: ``step(state, event, now) -> Step(state, actions, reasons)``.

Pure code: no clock, no sockets, no files, no subprocesses. ``now`` (monotonic seconds) is
passed in with every event; ``next_deadline(state, now)`` tells the loop when to call again
with a ``Tick`` if nothing else happens. Every decision comes with a sentence in
``Step.reasons`` ("taking over group web: peer node2 silent on all links for 2.0 s"), which the
loop logs and the tests assert.

The states and the handover protocol are described in ``supervisor.core.states``; fencing
(DRBD's outdate-peer carried by the heartbeat links) in the "Fencing" section below.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from supervisor.core import codec
from supervisor.core.actions import (
    Action,
    CheckResource,
    FenceAnswer,
    Log,
    OutdateReplica,
    Reboot,
    SendFrame,
    ShutdownComplete,
    StartResource,
    StopResource,
)
from supervisor.core.events import (
    AdminCommand,
    ConfigChanged,
    Event,
    FenceRequested,
    FrameReceived,
    LinkCarrier,
    OutdateResult,
    PingReply,
    PublicCarrier,
    ResourceResult,
    ShutdownRequested,
    Tick,
    WatchdogState,
)
from supervisor.core.states import Activity, LinkStatus, Nego, NodeStatus, PeerStatus
from supervisor.names import DRBD_RESOURCE as _RESOURCE_RE
from supervisor.resource_spec import ResourceSpec

if TYPE_CHECKING:
    from supervisor.config import Config, Group

LOSS_WINDOW = 100
LEAVING_FRAMES = 3
# Deadlines are sums of floats: compare with a little slack so that a wake-up scheduled for
# exactly `last_heard + deadtime` sees the deadline as reached.
EPS = 1e-6


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


# --------------------------------------------------------------------------------------------
# State


@dataclass
class Settings:
    """What does not change between steps (shared, never copied)."""

    config: Config
    me: str
    peer: str
    key: bytes
    digest: str = ""

    def __post_init__(self) -> None:
        self.digest = policy_digest(self.config)

    def __deepcopy__(self, memo: dict[int, Any]) -> Settings:
        return self


def policy_digest(config: Config) -> str:
    """A short digest of what both nodes must agree on (not links: those differ per node)."""
    shared = {
        "cluster": config.cluster_name,
        "nodes": sorted(n.name for n in config.nodes),
        "auto_failback": config.auto_failback,
        "groups": sorted(
            (g.name, g.preferred, list(g.resource_texts), g.max_restarts, g.on_stop_failure)
            for g in config.groups
        ),
    }
    if config.replicated:  # only when present: older peers without the section still agree
        shared["replicated"] = sorted(r.shared() for r in config.replicated)
    text = json.dumps(shared, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class LinkState:
    name: str
    kind: str
    status: LinkStatus = LinkStatus.UNKNOWN
    last_heard: float | None = None
    last_order: tuple[int, int] | None = None
    window_gen: int = -1
    window: list[int] = field(default_factory=list)
    carrier: bool | None = None
    received: int = 0
    peer_hears_us: bool | None = None

    def loss(self) -> float | None:
        if len(self.window) < 2:
            return None
        span = self.window[-1] - self.window[0] + 1
        return max(0.0, 1.0 - len(self.window) / span)


@dataclass(frozen=True)
class Op:
    kind: str  # start | stop | check
    index: int


@dataclass
class GroupState:
    name: str
    specs: tuple[ResourceSpec, ...]
    activity: Activity = Activity.STOPPING
    nego: Nego = Nego.NONE
    epoch: int = 0
    want_counter: int = 0
    up: int = 0  # resources started, counted from the left
    plan: list[Op] = field(default_factory=list)
    inflight: Op | None = None
    inflight_id: int = 0
    purpose: str = "cleanup"  # cleanup | start | release | restart | monitor | failover
    fail_after_stop: str = ""  # reason to mark the group failed once stopped
    check_duplicates: bool = False
    failures: list[float] = field(default_factory=list)
    failed_until: float | None = None
    failed_reason: str = ""
    next_monitor: float | None = None
    reason: str = "starting up: stopping anything left over from before"
    blocked_reason: str = ""


@dataclass(frozen=True)
class FenceOut:
    """A fence request of ours that the peer has not answered yet (published as ``o``)."""

    resource: str
    wire_id: int  # unique across our restarts: (generation << 20) | counter
    waiters: tuple[int, ...]  # the loop's ids of the fence-peer handlers waiting for it
    since: float
    deadline: float


@dataclass(frozen=True)
class FenceIn:
    """The peer's latest fence request for a resource and what our outdate came to."""

    resource: str
    wire_id: int
    since: float
    result: str | None = None  # None while drbdadm outdate runs; then codec.OUTDATE_RESULTS
    detail: str = ""


@dataclass(frozen=True)
class FenceOutcome:
    resource: str
    code: int
    message: str
    at: float


@dataclass
class CoreState:
    settings: Settings
    generation: int
    started_at: float
    seq: int = 0
    status: NodeStatus = NodeStatus.INIT
    peer_status: PeerStatus = PeerStatus.UNKNOWN
    peer_beat: codec.Beat | None = None
    peer_last_heard: float | None = None
    peer_left_gen: int = -1
    peer_dead_reason: str = ""
    links: dict[str, LinkState] = field(default_factory=dict)
    groups: dict[str, GroupState] = field(default_factory=dict)
    carrier: bool | None = None
    last_ping: float | None = None
    watchdog_ok: bool = True
    watchdog_reason: str = "no watchdog state reported yet"
    pins: dict[str, tuple[str, int]] = field(default_factory=dict)
    lamport: int = 0
    next_beat: float = 0.0
    last_published: tuple[Any, ...] | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    shutting_down: bool = False
    shutdown_done: bool = False
    op_counter: int = 0
    world_reason: str = ""
    config_mismatch: bool = False
    ping_silence_warned: bool = False
    fence_out: dict[str, FenceOut] = field(default_factory=dict)
    fence_in: dict[str, FenceIn] = field(default_factory=dict)
    fence_counter: int = 0
    fence_last: FenceOutcome | None = None

    @property
    def config(self) -> Config:
        return self.settings.config

    @property
    def me(self) -> str:
        return self.settings.me

    @property
    def peer(self) -> str:
        return self.settings.peer


@dataclass
class Step:
    state: CoreState
    actions: list[Action]
    reasons: list[str]


class _Out:
    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.reasons: list[str] = []

    def reason(self, text: str) -> None:
        self.reasons.append(text)

    def warn(self, text: str) -> None:
        self.actions.append(Log("warning", text))
        self.reasons.append(text)


def initial_state(config: Config, me: str, key: bytes, generation: int, now: float) -> CoreState:
    """The state of a node that has just started: every group is first stopped (cleanup)."""
    peer = config.peer_of(me).name
    s = CoreState(Settings(config, me, peer, key), generation=generation, started_at=now)
    s.watchdog_ok = config.watchdog.mode != "required"
    s.watchdog_reason = (
        "watchdog not armed yet" if config.watchdog.mode == "required" else "not required"
    )
    for link in config.links:
        s.links[link.name] = LinkState(link.name, link.type)
    for g in config.groups:
        s.groups[g.name] = _new_group(g)
    return s


def _new_group(g: Group) -> GroupState:
    gs = GroupState(g.name, g.resources)
    gs.up = len(g.resources)
    gs.plan = [Op("stop", i) for i in reversed(range(len(g.resources)))]
    if not gs.plan:
        gs.activity = Activity.IDLE
    return gs


# --------------------------------------------------------------------------------------------
# The step function


def _shallow(obj: Any) -> Any:
    """A shallow copy of a plain dataclass instance (copy.copy is several times slower)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def clone(state: CoreState) -> CoreState:
    """A copy that shares only immutable parts (settings, beats, tuples, specs, ops).

    Much cheaper than copy.deepcopy; a test checks that stepping a clone never changes the
    original.
    """
    s: CoreState = _shallow(state)
    links = {}
    for name, ls in state.links.items():
        c = _shallow(ls)
        c.window = list(ls.window)
        links[name] = c
    s.links = links
    groups = {}
    for name, g in state.groups.items():
        cg = _shallow(g)
        cg.plan = list(g.plan)
        cg.failures = list(g.failures)
        groups[name] = cg
    s.groups = groups
    s.pins = dict(state.pins)
    s.dropped = dict(state.dropped)
    s.fence_out = dict(state.fence_out)
    s.fence_in = dict(state.fence_in)
    return s


def step(state: CoreState, event: Event, now: float) -> Step:
    s = clone(state)
    out = _Out()
    _handle(s, event, now, out)
    _evaluate(s, now, out)
    return Step(s, out.actions, out.reasons)


def _handle(s: CoreState, event: Event, now: float, out: _Out) -> None:
    match event:
        case Tick():
            pass
        case FrameReceived(link=link, data=data):
            _on_frame(s, link, data, now, out)
        case LinkCarrier(link=link, up=up):
            ls = s.links.get(link)
            if ls is not None and ls.carrier != up:
                ls.carrier = up
                out.reason(f"link {link}: carrier {'up' if up else 'down'}")
        case PublicCarrier(up=up):
            if s.carrier != up:
                s.carrier = up
                out.reason(f"public interface carrier {'up' if up else 'down'}")
        case PingReply():
            s.last_ping = now
        case WatchdogState(ok=ok, reason=reason):
            if (ok, reason) != (s.watchdog_ok, s.watchdog_reason):
                out.reason(f"watchdog: {reason}")
            s.watchdog_ok, s.watchdog_reason = ok, reason
        case ResourceResult():
            _on_result(s, event, now, out)
        case AdminCommand(command=command, group=group):
            _on_admin(s, command, group, now, out)
        case ShutdownRequested():
            if not s.shutting_down:
                s.shutting_down = True
                out.reason("shutting down: stopping every group and handing it to the peer")
        case ConfigChanged(config=config):
            _on_config(s, config, now, out)
        case FenceRequested(resource=resource, request_id=request_id):
            _on_fence_request(s, resource, request_id, now, out)
        case OutdateResult():
            _on_outdate_result(s, event, out)


def _drop(s: CoreState, cause: str) -> None:
    s.dropped[cause] = s.dropped.get(cause, 0) + 1


def _on_frame(s: CoreState, link: str, data: bytes, now: float, out: _Out) -> None:
    ls = s.links.get(link)
    if ls is None:
        _drop(s, "unknown_link")
        return
    try:
        beat = codec.decode(data, s.settings.key, s.config.cluster_name)
    except codec.DecodeError as exc:
        _drop(s, exc.cause)
        return
    if beat.sender == s.me:
        _drop(s, "own_frame")
        return
    if beat.sender != s.peer:
        _drop(s, "unknown_node")
        return
    if ls.last_order is not None and beat.order <= ls.last_order:
        _drop(s, "replay")
        return
    if s.peer_beat is not None and beat.generation < s.peer_beat.generation:
        _drop(s, "replay")
        return
    if beat.generation <= s.peer_left_gen:
        _drop(s, "after_leave")
        return
    # Accepted: liveness on this link.
    ls.last_order = beat.order
    ls.last_heard = now
    ls.received += 1
    if ls.window_gen != beat.generation:
        ls.window_gen, ls.window = beat.generation, []
    ls.window.append(beat.seq)
    ls.window = ls.window[-LOSS_WINDOW:]
    s.peer_last_heard = now
    if s.peer_beat is None or beat.order > s.peer_beat.order:
        if s.peer_beat is not None and beat.generation > s.peer_beat.generation:
            out.reason(f"peer {s.peer} restarted (generation {beat.generation})")
        s.peer_beat = beat
        mismatch = bool(beat.config_digest) and beat.config_digest != s.settings.digest
        if mismatch != s.config_mismatch:
            s.config_mismatch = mismatch
            if mismatch:
                out.warn(
                    f"the configurations of {s.me} and {s.peer} disagree on nodes, groups or "
                    f"auto_failback (digest {s.settings.digest} here, {beat.config_digest} "
                    f"there): fix /etc/twinbeat/cluster.toml on one of them"
                )
            else:
                out.reason(f"the configurations of {s.me} and {s.peer} agree again")
        for link_name, hears in beat.links.items():
            if link_name in s.links:
                s.links[link_name].peer_hears_us = hears
        for group, (node, stamp) in beat.pins.items():
            if group not in s.pins or (stamp, node) > (s.pins[group][1], s.pins[group][0]):
                s.pins[group] = (node, stamp)
            s.lamport = max(s.lamport, stamp)
    if beat.status is NodeStatus.LEAVING:
        s.peer_left_gen = beat.generation
        if s.peer_status is not PeerStatus.DEAD:
            s.peer_status = PeerStatus.DEAD
            s.peer_dead_reason = f"peer {s.peer} left the cluster (clean shutdown)"
            out.reason(s.peer_dead_reason)
        return
    if s.peer_status is not PeerStatus.ALIVE:
        s.peer_status = PeerStatus.ALIVE
        out.reason(f"peer {s.peer} is alive (heard on {link})")


def _on_result(s: CoreState, r: ResourceResult, now: float, out: _Out) -> None:
    g = s.groups.get(r.group)
    if g is None or g.inflight is None or r.op_id != g.inflight_id:
        out.actions.append(Log("warning", f"ignoring a stale result for group {r.group}"))
        return
    op, g.inflight = g.inflight, None
    spec = g.specs[op.index]
    what = spec.describe()
    cfg = _group_cfg(s, g.name)
    if op.kind == "start":
        if r.ok:
            g.up = max(g.up, op.index + 1)
            if not g.plan:
                if g.activity is Activity.STARTING:
                    g.activity = Activity.RUNNING
                    g.reason = f"group {g.name} is running on {s.me}"
                    out.reason(g.reason)
                else:
                    out.reason(f"group {g.name}: {what} restarted")
                g.next_monitor = _next_monitor(cfg, now)
            return
        g.reason = f"starting {what} in group {g.name} failed: {r.detail or 'error'}"
        out.warn(g.reason + "; stopping what was started")
        g.plan = [Op("stop", i) for i in range(op.index, -1, -1)]
        g.activity = Activity.STOPPING
        g.purpose = "failover"
        g.fail_after_stop = f"{what} failed to start"
        return
    if op.kind == "stop":
        if r.ok:
            g.up = min(g.up, op.index)
            if not g.plan and g.activity is Activity.STOPPING:
                _stopped(s, g, now, out)
            return
        g.plan = []
        g.activity = Activity.STOP_FAILED
        detail = r.detail or "error"
        if g.purpose == "cleanup" or cfg is None or cfg.on_stop_failure == "block":
            g.blocked_reason = (
                f"stopping {what} failed ({detail}); group {g.name} is blocked on {s.me}: "
                f"fix it, then run `twinbeat cleanup {g.name}`"
            )
            g.reason = g.blocked_reason
            out.actions.append(Log("error", g.reason))
            out.reason(g.reason)
        else:
            g.reason = (
                f"stopping {what} failed ({detail}): rebooting {s.me} so that "
                f"{s.peer} can take group {g.name} over"
            )
            out.actions.append(Log("error", g.reason))
            out.actions.append(Reboot(g.reason))
            out.reason(g.reason)
        return
    # check
    if r.ok and r.running:
        if not g.plan:
            g.next_monitor = _next_monitor(cfg, now)
        return
    g.plan = []
    if g.activity is not Activity.RUNNING:
        return
    n = len(g.specs)
    window = cfg.restart_window if cfg else 300.0
    g.failures = [t for t in g.failures if now - t < window] + [now]
    max_restarts = cfg.max_restarts if cfg else 0
    detail = r.detail or "not running"
    if len(g.failures) > max_restarts:
        g.reason = (
            f"{what} in group {g.name} failed ({detail}) {len(g.failures)} times within "
            f"{_fmt(window)}: giving the group up"
        )
        out.warn(g.reason)
        g.plan = [Op("stop", i) for i in reversed(range(g.up))]
        g.activity = Activity.STOPPING
        g.purpose = "failover"
        g.fail_after_stop = f"{what} kept failing"
        if not g.plan:
            _stopped(s, g, now, out)
        return
    g.reason = (
        f"{what} in group {g.name} is not running ({detail}): restarting it "
        f"({len(g.failures)} of {max_restarts} restarts)"
    )
    out.warn(g.reason)
    g.purpose = "restart"
    g.plan = [Op("stop", i) for i in reversed(range(op.index, n))]
    g.plan += [Op("start", i) for i in range(op.index, n)]


def _next_monitor(cfg: Group | None, now: float) -> float | None:
    return now + cfg.monitor_interval if cfg is not None and cfg.monitor_interval else None


def _stopped(s: CoreState, g: GroupState, now: float, out: _Out) -> None:
    g.activity = Activity.IDLE
    g.up = 0
    g.next_monitor = None
    cfg = _group_cfg(s, g.name)
    if g.fail_after_stop:
        timeout = cfg.failure_timeout if cfg else 0.0
        g.failed_until = now + timeout if timeout > 0 else math.inf
        g.failed_reason = g.fail_after_stop
        g.fail_after_stop = ""
        until = f"for {_fmt(timeout)}" if timeout > 0 else "until `twinbeat cleanup`"
        g.reason = f"group {g.name} failed on {s.me} ({g.failed_reason}); not eligible {until}"
        out.reason(g.reason)
    elif g.purpose == "cleanup":
        g.reason = f"group {g.name}: nothing left running from before"
        out.reason(g.reason)
    else:
        g.reason = f"group {g.name} stopped on {s.me}"
        out.reason(g.reason)
    if cfg is not None and cfg.resources != g.specs:
        g.specs = cfg.resources


def _on_admin(s: CoreState, command: str, group: str | None, now: float, out: _Out) -> None:
    if group is not None and group not in s.groups:
        out.warn(f"{command} refused: there is no group {group!r}")
        return
    names = [group] if group is not None else list(s.groups)
    if command == "cleanup":
        for name in names:
            g = s.groups[name]
            g.failures, g.failed_until, g.failed_reason = [], None, ""
            if g.activity is Activity.STOP_FAILED:
                g.activity = Activity.STOPPING
                g.purpose = "cleanup"
                g.blocked_reason = ""
                g.plan = [Op("stop", i) for i in reversed(range(len(g.specs)))]
                g.up = len(g.specs)
            g.reason = f"cleanup of group {name}: failures forgotten"
            out.reason(g.reason)
        return
    if command == "standby":
        if s.peer_status is not PeerStatus.ALIVE:
            out.warn(f"standby refused: peer {s.peer} is not alive, the groups would stop")
            return
        target = s.peer
    elif command == "takeover":
        why = _not_entitled_self(s, now, group)
        if why:
            out.warn(f"takeover refused: {why}")
            return
        target = s.me
    else:
        out.warn(f"unknown admin command {command!r}")
        return
    s.lamport += 1
    for name in names:
        s.pins[name] = (target, s.lamport)
        s.groups[name].reason = f"admin {command}: group {name} should run on {target}"
        out.reason(s.groups[name].reason)


def _on_config(s: CoreState, config: Config, now: float, out: _Out) -> None:
    if s.me not in [n.name for n in config.nodes]:
        out.warn(f"new configuration ignored: it does not list this node ({s.me})")
        return
    s.settings = Settings(config, s.me, config.peer_of(s.me).name, s.settings.key)
    links = {}
    for link in config.links:
        links[link.name] = s.links.get(link.name) or LinkState(link.name, link.type)
    s.links = links
    for g in config.groups:
        if g.name not in s.groups:
            gs = GroupState(g.name, g.resources, activity=Activity.IDLE, reason="new group")
            s.groups[g.name] = gs
            out.reason(f"configuration: new group {g.name}")
    for name in list(s.groups):
        if _group_cfg(s, name) is None:
            gs = s.groups[name]
            if gs.activity is Activity.IDLE and gs.inflight is None:
                del s.groups[name]
                out.reason(f"configuration: group {name} removed")
            else:
                gs.reason = f"configuration: group {name} removed; stopping it"
                out.reason(gs.reason)
    out.reason("configuration reloaded")


def set_key(state: CoreState, key: bytes) -> CoreState:
    """A new authkeys file was loaded (the loop validates it first)."""
    s = clone(state)
    s.settings = Settings(s.config, s.me, s.peer, key)
    return s


def _group_cfg(s: CoreState, name: str) -> Group | None:
    for g in s.config.groups:
        if g.name == name:
            return g
    return None


# --------------------------------------------------------------------------------------------
# Evaluation after every event


def _evaluate(s: CoreState, now: float, out: _Out) -> None:
    _update_links(s, now, out)
    _update_peer(s, now, out)
    _update_world(s, now, out)
    _update_fencing(s, now, out)
    for g in list(s.groups.values()):
        _expire_failures(s, g, now, out)
        _decide_group(s, g, now, out)
        _schedule_monitor(s, g, now)
        _advance(s, g, out)
        if _group_cfg(s, g.name) is None and g.activity is Activity.IDLE and g.inflight is None:
            del s.groups[g.name]
    _progress_shutdown(s, out)
    published = _published(s, now)
    if s.status is NodeStatus.LEAVING and not s.shutdown_done:
        # Several copies on every link, so that one lost frame does not cost a deadtime.
        for _ in range(LEAVING_FRAMES):
            _send_beat(s, now, out, published)
        s.shutdown_done = True
        out.actions.append(ShutdownComplete())
    elif published != s.last_published or now >= s.next_beat - EPS:
        _send_beat(s, now, out, published)


def _update_links(s: CoreState, now: float, out: _Out) -> None:
    t = s.config.timing
    for ls in s.links.values():
        old = ls.status
        if ls.carrier is False:
            new = LinkStatus.DOWN
        elif ls.last_heard is None:
            new = (
                LinkStatus.DOWN
                if now - s.started_at >= t.initdead - EPS
                else LinkStatus.UNKNOWN
            )
        else:
            age = now - ls.last_heard
            if age >= t.deadtime - EPS:
                new = LinkStatus.DOWN
            elif age >= t.warntime - EPS:
                new = LinkStatus.LATE
            else:
                new = LinkStatus.UP
        if new is old:
            continue
        ls.status = new
        if new is LinkStatus.DOWN:
            if ls.carrier is False:
                why = "carrier lost"
            elif ls.last_heard is None:
                why = f"nothing heard since start ({_fmt(now - s.started_at)})"
            else:
                why = f"no heartbeat for {_fmt(now - ls.last_heard)}"
            out.warn(f"link {ls.name} down: {why}")
        elif new is LinkStatus.LATE and ls.last_heard is not None:
            out.warn(
                f"late heartbeat on link {ls.name}: {_fmt(now - ls.last_heard)} since the last"
                f" (warntime {_fmt(t.warntime)})"
            )
        elif new is LinkStatus.UP and old in (LinkStatus.DOWN, LinkStatus.UNKNOWN):
            out.reason(f"link {ls.name} up")


def _update_peer(s: CoreState, now: float, out: _Out) -> None:
    t = s.config.timing
    if s.peer_status is PeerStatus.ALIVE and s.peer_last_heard is not None:
        silent = now - s.peer_last_heard
        if silent >= t.deadtime - EPS:
            s.peer_status = PeerStatus.DEAD
            s.peer_dead_reason = (
                f"peer {s.peer} silent on all links for {_fmt(silent)} "
                f"(deadtime {_fmt(t.deadtime)})"
            )
            out.warn(s.peer_dead_reason)
    elif s.peer_status is PeerStatus.UNKNOWN and now - s.started_at >= t.initdead - EPS:
        s.peer_status = PeerStatus.DEAD
        s.peer_dead_reason = f"peer {s.peer} not heard within initdead ({_fmt(t.initdead)})"
        out.warn(s.peer_dead_reason)
    if s.status is NodeStatus.INIT and s.peer_status is not PeerStatus.UNKNOWN:
        s.status = NodeStatus.ACTIVE


def _world_ok(s: CoreState, now: float) -> tuple[bool, str]:
    cfg = s.config
    if cfg.public_interface and s.carrier is False:
        return False, f"public interface {cfg.public_interface} has no carrier"
    # A ping node that never answered since start is not trusted to judge: a gateway that
    # drops ICMP must not keep the backup from ever taking over (see _update_world).
    if cfg.ping_nodes and s.last_ping is not None and now - s.last_ping >= cfg.ping_timeout - EPS:
        nodes = ", ".join(str(a) for a in cfg.ping_nodes)
        return False, f"no ping node answers ({nodes})"
    return True, ""


def _update_world(s: CoreState, now: float, out: _Out) -> None:
    cfg = s.config
    if (
        cfg.ping_nodes
        and s.last_ping is None
        and not s.ping_silence_warned
        and now - s.started_at >= cfg.ping_timeout - EPS
    ):
        s.ping_silence_warned = True
        nodes = ", ".join(str(a) for a in cfg.ping_nodes)
        out.warn(
            f"no ping node has answered yet ({nodes}); until one does they are not used to "
            "decide whether this node is cut off"
        )
    ok, why = _world_ok(s, now)
    if why != s.world_reason:
        if ok:
            out.reason("this node sees the outside world again")
        else:
            out.warn(f"this node is cut off: {why}")
        s.world_reason = why


def _expire_failures(s: CoreState, g: GroupState, now: float, out: _Out) -> None:
    if g.failed_until is not None and now >= g.failed_until - EPS:
        g.failed_until, g.failed_reason, g.failures = None, "", []
        g.reason = f"failure of group {g.name} on {s.me} expired; eligible again"
        out.reason(g.reason)


def _peer_view(s: CoreState, name: str) -> codec.GroupView | None:
    if s.peer_status is not PeerStatus.ALIVE or s.peer_beat is None:
        return None
    return s.peer_beat.groups.get(name, codec.GroupView())


def _not_entitled_self(s: CoreState, now: float, group: str | None) -> str:
    """Why this node may not own ``group`` (empty when it may)."""
    if s.shutting_down:
        return f"{s.me} is shutting down"
    if not s.watchdog_ok:
        return f"watchdog required but not armed ({s.watchdog_reason})"
    if group is not None:
        g = s.groups[group]
        if g.failed_until is not None:
            return f"group {group} failed here ({g.failed_reason})"
        if g.activity is Activity.STOP_FAILED:
            return f"group {group} is blocked here ({g.blocked_reason})"
    ok, why = _world_ok(s, now)
    peer_world = s.peer_beat.world_ok if s.peer_beat is not None else False
    if not ok and (s.peer_status is not PeerStatus.ALIVE or peer_world):
        return f"this node is cut off ({why})"
    return ""


def _not_entitled_peer(s: CoreState, name: str, now: float) -> str:
    beat = s.peer_beat
    if s.peer_status is not PeerStatus.ALIVE or beat is None:
        return f"peer {s.peer} is not alive"
    view = beat.groups.get(name, codec.GroupView())
    if not beat.can_own:
        return f"peer {s.peer} may not own groups (watchdog or shutdown)"
    if view.failed:
        return f"group {name} failed on {s.peer}"
    if view.activity is Activity.STOP_FAILED:
        return f"group {name} is blocked on {s.peer}"
    if not beat.world_ok and _world_ok(s, now)[0]:
        return f"peer {s.peer} is cut off from the outside world"
    return ""


def _preferred(s: CoreState, name: str) -> tuple[str, bool]:
    """The node the group should run on when both can, and whether an admin pinned it."""
    if name in s.pins:
        return s.pins[name][0], True
    cfg = _group_cfg(s, name)
    return (cfg.preferred if cfg else s.me), False


def desired_owner(s: CoreState, name: str, now: float) -> tuple[str | None, str]:
    """Who should own the group given this node's view, and why (peer alive)."""
    me_no = _not_entitled_self(s, now, name)
    peer_no = _not_entitled_peer(s, name, now)
    if me_no and peer_no:
        return None, f"neither node can own it ({me_no}; {peer_no})"
    if me_no:
        return s.peer, me_no
    if peer_no:
        return s.me, peer_no
    preferred, pinned = _preferred(s, name)
    g = s.groups[name]
    view = _peer_view(s, name)
    holders = []
    if g.activity in (Activity.STARTING, Activity.RUNNING):
        holders.append(s.me)
    if view is not None and view.activity in (Activity.STARTING, Activity.RUNNING):
        holders.append(s.peer)
    if pinned:
        return preferred, f"an admin asked for it to run on {preferred}"
    if len(holders) == 1 and not s.config.auto_failback:
        return holders[0], f"it runs on {holders[0]} and auto_failback is off"
    if len(holders) == 1 and holders[0] == preferred:
        return preferred, f"it runs on its preferred node {preferred}"
    if len(holders) == 2:
        return preferred, f"both nodes hold it: {preferred} is its preferred node"
    if len(holders) == 1:
        return preferred, f"auto_failback is on and {preferred} is its preferred node"
    return preferred, f"{preferred} is its preferred node"


def _decide_group(s: CoreState, g: GroupState, now: float, out: _Out) -> None:
    if g.inflight is not None or g.activity in (Activity.STOPPING, Activity.STOP_FAILED):
        if g.activity is not Activity.IDLE:
            g.nego = Nego.NONE
        return
    cfg = _group_cfg(s, g.name)
    if cfg is None or s.shutting_down:
        _ensure_stopped(s, g, out, "shutting down" if cfg else "group removed")
        if s.peer_status is PeerStatus.ALIVE and g.activity is Activity.IDLE:
            _maybe_grant(s, g, out, s.peer)
        return
    if g.activity is Activity.IDLE and cfg.resources != g.specs:
        g.specs = cfg.resources
    if g.activity in (Activity.STARTING, Activity.RUNNING) and cfg.resources != g.specs:
        g.purpose = "release"
        _ensure_stopped(s, g, out, "its resources changed in the configuration; restarting it")
        return
    if s.peer_status is PeerStatus.UNKNOWN:
        g.nego = Nego.NONE
        if g.activity is not Activity.IDLE:
            return
        g.reason = f"waiting up to initdead for peer {s.peer} before taking group {g.name}"
        return
    if s.peer_status is PeerStatus.DEAD:
        g.nego = Nego.NONE
        why = _not_entitled_self(s, now, g.name)
        if why:
            if g.activity is Activity.IDLE:
                g.reason = f"not taking over group {g.name}: {why}"
            _ensure_stopped(s, g, out, f"{why}, and {s.peer} is not reachable")
            return
        if g.activity is Activity.IDLE:
            first = s.peer_beat is None
            _start(
                s,
                g,
                out,
                f"taking over group {g.name}: {s.peer_dead_reason}",
                check_duplicates=first,
            )
        return
    # Peer alive: negotiate.
    owner, why = desired_owner(s, g.name, now)
    view = _peer_view(s, g.name) or codec.GroupView()
    if owner == s.me:
        if g.activity is not Activity.IDLE:
            return
        if (
            g.nego is Nego.WANT
            and view.activity is Activity.IDLE
            and view.nego is Nego.GRANT
            and view.epoch == g.epoch
        ):
            _start(
                s,
                g,
                out,
                f"acquiring group {g.name}: {s.peer} released it to us ({why})",
                check_duplicates=True,
            )
            return
        if g.nego is not Nego.WANT:
            g.want_counter += 1
            g.nego = Nego.WANT
            g.epoch = (s.generation << 20) | (g.want_counter & 0xFFFFF)
            g.reason = f"asking {s.peer} for group {g.name}: {why}"
            out.reason(g.reason)
        return
    # The peer (or nobody) should own it.
    if g.activity is not Activity.IDLE:
        _ensure_stopped(
            s, g, out, f"releasing it to {owner}: {why}" if owner else f"stopping it: {why}"
        )
        return
    if owner == s.peer:
        _maybe_grant(s, g, out, owner)
        if g.nego is Nego.NONE and view.activity.holds:
            g.reason = f"group {g.name} runs on {s.peer}: {why}"
    else:
        g.nego = Nego.NONE
        g.reason = f"group {g.name} is stopped: {why}"


def _maybe_grant(s: CoreState, g: GroupState, out: _Out, owner: str) -> None:
    view = _peer_view(s, g.name) or codec.GroupView()
    if view.nego is Nego.WANT:
        if g.nego is not Nego.GRANT or g.epoch != view.epoch:
            g.nego, g.epoch = Nego.GRANT, view.epoch
            g.reason = f"granting group {g.name} to {owner}"
            out.reason(g.reason)
    else:
        g.nego = Nego.NONE


def _start(s: CoreState, g: GroupState, out: _Out, reason: str, *, check_duplicates: bool) -> None:
    g.activity = Activity.STARTING
    g.nego = Nego.NONE
    g.purpose = "start"
    g.check_duplicates = check_duplicates and s.config.takeover.dad
    g.up = 0
    g.plan = [Op("start", i) for i in range(len(g.specs))]
    g.reason = reason
    out.reason(reason)
    if not g.plan:
        g.activity = Activity.RUNNING


def _ensure_stopped(s: CoreState, g: GroupState, out: _Out, why: str) -> None:
    g.nego = Nego.NONE if g.activity is not Activity.IDLE else g.nego
    if g.activity not in (Activity.STARTING, Activity.RUNNING):
        return
    if g.purpose != "release":
        g.purpose = "release"
    g.activity = Activity.STOPPING
    g.plan = [Op("stop", i) for i in reversed(range(g.up))]
    g.reason = f"group {g.name}: {why}"
    out.reason(g.reason)
    if not g.plan:
        g.activity = Activity.IDLE


def _schedule_monitor(s: CoreState, g: GroupState, now: float) -> None:
    if (
        g.activity is Activity.RUNNING
        and g.inflight is None
        and not g.plan
        and g.next_monitor is not None
        and now >= g.next_monitor - EPS
    ):
        g.purpose = "monitor"
        g.plan = [Op("check", i) for i in range(len(g.specs))]


def _advance(s: CoreState, g: GroupState, out: _Out) -> None:
    if g.inflight is not None or not g.plan:
        return
    op = g.plan.pop(0)
    cfg = _group_cfg(s, g.name)
    s.op_counter += 1
    g.inflight, g.inflight_id = op, s.op_counter
    spec = g.specs[op.index]
    if op.kind == "start":
        out.actions.append(
            StartResource(
                g.name,
                op.index,
                spec,
                s.op_counter,
                cfg.start_timeout if cfg else 60.0,
                check_duplicates=g.check_duplicates,
            )
        )
    elif op.kind == "stop":
        out.actions.append(
            StopResource(g.name, op.index, spec, s.op_counter, cfg.stop_timeout if cfg else 60.0)
        )
    else:
        out.actions.append(
            CheckResource(
                g.name, op.index, spec, s.op_counter, cfg.status_timeout if cfg else 20.0
            )
        )


def _progress_shutdown(s: CoreState, out: _Out) -> None:
    if not s.shutting_down or s.shutdown_done:
        return
    busy = [
        g.name
        for g in s.groups.values()
        if g.activity not in (Activity.IDLE, Activity.STOP_FAILED) or g.inflight is not None
    ]
    if busy:
        return
    if s.status is not NodeStatus.LEAVING:
        s.status = NodeStatus.LEAVING
        out.reason(f"every group is stopped; telling {s.peer} that {s.me} is leaving")


# --------------------------------------------------------------------------------------------
# Heartbeats


def _published(s: CoreState, now: float) -> tuple[Any, ...]:
    return (
        s.status,
        _world_ok(s, now)[0],
        s.watchdog_ok and not s.shutting_down,
        tuple(sorted((n, ls.status.delivers) for n, ls in s.links.items())),
        tuple(
            sorted(
                (n, g.activity, g.nego, g.epoch, g.failed_until is not None)
                for n, g in s.groups.items()
            )
        ),
        tuple(sorted(s.pins.items())),
        tuple(sorted(_fence_requests(s).items())),
        tuple(sorted(_fence_answers(s).items())),
    )


def _send_beat(s: CoreState, now: float, out: _Out, published: tuple[Any, ...]) -> None:
    s.seq += 1
    beat = codec.Beat(
        cluster=s.config.cluster_name,
        sender=s.me,
        generation=s.generation,
        seq=s.seq,
        status=s.status,
        world_ok=published[1],
        can_own=published[2],
        links={n: ls.status.delivers for n, ls in s.links.items()},
        groups={
            n: codec.GroupView(g.activity, g.nego, g.epoch, g.failed_until is not None)
            for n, g in s.groups.items()
        },
        pins=dict(s.pins),
        config_digest=s.settings.digest,
        outdate=_fence_requests(s),
        outdate_answers=_fence_answers(s),
    )
    out.actions.append(SendFrame(codec.encode(beat, s.settings.key)))
    s.last_published = published
    s.next_beat = now + s.config.timing.keepalive


def next_deadline(s: CoreState, now: float) -> float:
    """The next time the core must be called (with a Tick) if no event arrives first."""
    t = s.config.timing
    times = [s.next_beat]
    for ls in s.links.values():
        if ls.last_heard is not None:
            times += [ls.last_heard + t.warntime, ls.last_heard + t.deadtime]
        else:
            times.append(s.started_at + t.initdead)
    if s.peer_last_heard is not None:
        times.append(s.peer_last_heard + t.deadtime)
    if s.peer_status is PeerStatus.UNKNOWN:
        times.append(s.started_at + t.initdead)
    if s.config.ping_nodes:
        times.append((s.last_ping if s.last_ping is not None else s.started_at)
                     + s.config.ping_timeout)
    for g in s.groups.values():
        if g.next_monitor is not None:
            times.append(g.next_monitor)
        if g.failed_until is not None and g.failed_until != math.inf:
            times.append(g.failed_until)
    times += [f.deadline for f in s.fence_out.values()]
    future = [x for x in times if x > now + EPS]
    return min(future) if future else now + t.keepalive


# --------------------------------------------------------------------------------------------
# Status (for `twinbeat status`)


def owner_of(s: CoreState, name: str) -> str | None:
    g = s.groups.get(name)
    view = _peer_view(s, name)
    if g is not None and g.activity in (Activity.STARTING, Activity.RUNNING, Activity.STOPPING):
        return s.me
    if g is not None and g.activity is Activity.STOP_FAILED:
        return s.me
    if view is not None and view.activity.holds:
        return s.peer
    return None


def status(s: CoreState, now: float) -> dict[str, Any]:
    t = s.config.timing
    world_ok, world_why = _world_ok(s, now)
    links = []
    for ls in s.links.values():
        loss = ls.loss()
        links.append(
            {
                "name": ls.name,
                "type": ls.kind,
                "state": ls.status.value,
                "last_heard_age": None if ls.last_heard is None else round(now - ls.last_heard, 3),
                "loss": None if loss is None else round(loss, 4),
                "received": ls.received,
                "peer_hears_us": ls.peer_hears_us,
                "carrier": ls.carrier,
            }
        )
    groups = []
    for g in s.groups.values():
        view = _peer_view(s, g.name)
        groups.append(
            {
                "name": g.name,
                "owner": owner_of(s, g.name),
                "local": g.activity.value,
                "negotiation": g.nego.value,
                "peer": view.activity.value if view else None,
                "preferred": _preferred(s, g.name)[0],
                "pinned": g.name in s.pins,
                "failed": g.failed_until is not None,
                "failed_reason": g.failed_reason or None,
                "failures": len(g.failures),
                "resources": [spec.describe() for spec in g.specs],
                "resources_up": g.up,
                "reason": g.reason,
            }
        )
    beat = s.peer_beat
    return {
        "node": s.me,
        "cluster": s.config.cluster_name,
        "generation": s.generation,
        "status": s.status.value,
        "uptime": round(now - s.started_at, 3),
        "timing": {
            "keepalive": t.keepalive,
            "warntime": t.warntime,
            "deadtime": t.deadtime,
            "initdead": t.initdead,
        },
        "world": {
            "ok": world_ok,
            "reason": world_why or None,
            "carrier": s.carrier,
            "ping_answered": None if not s.config.ping_nodes else s.last_ping is not None,
        },
        "can_own": s.watchdog_ok and not s.shutting_down,
        "watchdog": {"ok": s.watchdog_ok, "reason": s.watchdog_reason},
        "peer": {
            "name": s.peer,
            "state": s.peer_status.value,
            "reason": s.peer_dead_reason or None,
            "last_heard_age": None
            if s.peer_last_heard is None
            else round(now - s.peer_last_heard, 3),
            "generation": beat.generation if beat else None,
            "status": beat.status.value if beat else None,
            "world_ok": beat.world_ok if beat else None,
        },
        "links": links,
        "groups": groups,
        "dropped": dict(sorted(s.dropped.items())),
        "shutting_down": s.shutting_down,
        "config_digest": s.settings.digest,
        "config_mismatch": s.config_mismatch,
        "fencing": _fence_status(s, now),
    }


# --------------------------------------------------------------------------------------------
# Fencing: DRBD's outdate-peer, carried by the heartbeat links
#
# With ``disk { fencing resource-only; }`` and ``handlers { fence-peer "twinbeat fence-peer"; }``
# a DRBD 8.4 Primary that loses its replication connection runs the handler, which asks this
# daemon (FenceRequested). While the peer is alive (heartbeats still flow, e.g. over the
# serial cable) the request is published in every beat (``o``); the peer runs
# ``drbdadm outdate`` once per request id (OutdateReplica -> OutdateResult) and publishes the
# result (``oa``) until the request disappears from our beats. The handler's exit code tells
# DRBD what happened to the peer's disk. DRBD 8.4 user's guide, "The peer fencing interface"
# (table "fence-peer handler exit codes"), and drbd-utils' scripts/outdate-peer.sh:
#
#   3  the peer's disk was already Inconsistent
#   4  the peer's disk was set to Outdated (or was Outdated to begin with)
#   5  the peer could not be reached (DRBD, when its own disk is UpToDate, assumes the peer
#      dead and marks it Outdated in its own view)
#   6  the peer refused to be outdated because it is Primary (DRBD then outdates the disk of
#      the node that ran the handler)
#   7  the peer node was fenced (STONITH): never returned here, there is no fencing device
#
# Any other code is "fence-peer helper broken" to DRBD. A failed ``drbdadm outdate`` on a
# live peer is reported as 5, the nearest documented meaning, with a warning: the peer's
# replica may then still be UpToDate.

#: the fence-peer exit code for each result of ``drbdadm outdate`` on the peer
OUTDATE_EXIT_CODES: dict[str, int] = {
    "inconsistent": 3,
    "outdated": 4,
    "failed": 5,
    "primary": 6,
}
FENCE_UNREACHABLE = 5
#: a fence request waits at least this long for the peer's answer (or 2 x deadtime). The
#: peer's half is `drbdadm outdate`, which DRBD refuses while the peer still believes it is
#: Connected: it notices the broken link by its own ping (ping-int, 10 s by default), so the
#: peer is given half of this, 15 s, to get there (seen in the QEMU pair: a cut crossover
#: cable is noticed by the two nodes several seconds apart).
FENCE_MIN_TIMEOUT = 30.0


def fence_timeout(config: Config) -> float:
    """How long a fence request waits for the live peer's answer before exit code 5."""
    return max(2 * config.timing.deadtime, FENCE_MIN_TIMEOUT)


def _fence_requests(s: CoreState) -> dict[str, int]:
    return {r: f.wire_id for r, f in s.fence_out.items()}


def _fence_answers(s: CoreState) -> dict[str, tuple[int, str]]:
    """Our answers, published while the peer's latest beat still asks that question."""
    asked = s.peer_beat.outdate if s.peer_beat is not None else {}
    return {
        r: (f.wire_id, f.result)
        for r, f in s.fence_in.items()
        if f.result is not None and asked.get(r) == f.wire_id
    }


def _fence_done(
    s: CoreState, waiters: tuple[int, ...], outcome: FenceOutcome, out: _Out, *, warn: bool
) -> None:
    """Answer every waiting handler with ``outcome`` and remember it for the status."""
    for request_id in waiters:
        out.actions.append(FenceAnswer(request_id, outcome.code, outcome.message))
    s.fence_last = outcome
    if warn:
        out.warn(outcome.message)
    else:
        out.reason(outcome.message)


def _on_fence_request(
    s: CoreState, resource: str, request_id: int, now: float, out: _Out
) -> None:
    what = f"fence-peer for DRBD resource {resource}"
    if not _RESOURCE_RE.match(resource):
        message = f"fence-peer refused: {resource!r} is not a DRBD resource name; exit 5"
        _fence_done(s, (request_id,), FenceOutcome(resource, FENCE_UNREACHABLE, message, now),
                    out, warn=True)
        return
    pending = s.fence_out.get(resource)
    if pending is not None:
        s.fence_out[resource] = replace(pending, waiters=(*pending.waiters, request_id))
        out.reason(f"{what}: already asking {s.peer} (request {pending.wire_id}); this "
                   "handler waits for the same answer")
        return
    if s.peer_status is not PeerStatus.ALIVE:
        why = (s.peer_dead_reason if s.peer_status is PeerStatus.DEAD
               else f"not heard since {s.me} started")
        message = f"{what}: peer {s.peer} is unreachable ({why}); exit 5 (peer unreachable)"
        _fence_done(s, (request_id,), FenceOutcome(resource, FENCE_UNREACHABLE, message, now),
                    out, warn=True)
        return
    s.fence_counter += 1
    wire_id = (s.generation << 20) | (s.fence_counter & 0xFFFFF)
    timeout = fence_timeout(s.config)
    s.fence_out[resource] = FenceOut(resource, wire_id, (request_id,), now, now + timeout)
    out.reason(f"{what}: the replication link is down but {s.peer} is alive; asking it over "
               f"the heartbeat links to outdate its replica (request {wire_id}, waiting up to "
               f"{_fmt(timeout)})")


def _on_outdate_result(s: CoreState, r: OutdateResult, out: _Out) -> None:
    cur = s.fence_in.get(r.resource)
    if cur is None or cur.wire_id != r.request_id or cur.result is not None:
        out.actions.append(Log("warning", f"ignoring a stale outdate result for DRBD resource "
                                          f"{r.resource} (request {r.request_id})"))
        return
    result = r.result if r.result in OUTDATE_EXIT_CODES else "failed"
    s.fence_in[r.resource] = replace(cur, result=result, detail=r.detail)
    text = {
        "outdated": "is Outdated now",
        "inconsistent": "is Inconsistent or Diskless already",
        "primary": "was not outdated: DRBD is Primary here",
        "failed": "could not be outdated",
    }[result]
    detail = f" ({r.detail})" if r.detail else ""
    message = (f"the replica of DRBD resource {r.resource} on {s.me} {text}{detail}; "
               f"answering {s.peer}'s fence request {r.request_id}")
    if result in ("outdated", "inconsistent"):
        out.reason(message)
    else:
        out.warn(message)


def _update_fencing(s: CoreState, now: float, out: _Out) -> None:
    beat = s.peer_beat if s.peer_status is PeerStatus.ALIVE else None
    # Our requests: answered, given up (peer dead, timeout, we are leaving), or still waiting.
    for resource, req in list(s.fence_out.items()):
        what = f"fence-peer for DRBD resource {resource}"
        answer = beat.outdate_answers.get(resource) if beat is not None else None
        given_up = ""
        if answer is not None and answer[0] == req.wire_id:
            result = answer[1]
            code = OUTDATE_EXIT_CODES[result]
            text = {
                "outdated": f"{s.peer} outdated its replica; exit 4 (peer Outdated)",
                "inconsistent": f"{s.peer}'s replica is Inconsistent already; exit 3",
                "primary": f"{s.peer} refused: it is Primary; exit 6 (DRBD outdates this "
                           "node's disk instead)",
                "failed": f"{s.peer} could not outdate its replica; exit 5 (treated as "
                          "unreachable: its replica may still be UpToDate)",
            }[result]
            del s.fence_out[resource]
            _fence_done(s, req.waiters, FenceOutcome(resource, code, f"{what}: {text}", now),
                        out, warn=result in ("failed", "primary"))
        elif s.peer_status is not PeerStatus.ALIVE:
            given_up = (f"{s.peer} became unreachable before answering ({s.peer_dead_reason});"
                        " exit 5 (peer unreachable)")
        elif s.status is NodeStatus.LEAVING:
            given_up = f"{s.me} is shutting down before {s.peer} answered; exit 5"
        elif now >= req.deadline - EPS:
            given_up = (f"no answer from {s.peer} within {_fmt(req.deadline - req.since)} "
                        "although it is alive; exit 5 (peer unreachable): its replica may not "
                        "be outdated")
        if given_up:
            del s.fence_out[resource]
            outcome = FenceOutcome(resource, FENCE_UNREACHABLE, f"{what}: {given_up}", now)
            _fence_done(s, req.waiters, outcome, out, warn=True)
    # The peer's requests: one drbdadm outdate per request id, never two.
    if beat is None:
        return
    for resource, wire_id in sorted(beat.outdate.items()):
        cur = s.fence_in.get(resource)
        if cur is not None and cur.wire_id == wire_id:
            continue
        if not _RESOURCE_RE.match(resource):
            s.fence_in[resource] = FenceIn(resource, wire_id, now, "failed", "not a DRBD "
                                           "resource name")
            out.warn(f"{s.peer} asks {s.me} to outdate {resource!r}, which is not a DRBD "
                     "resource name: answering that it failed")
            continue
        s.fence_in[resource] = FenceIn(resource, wire_id, now)
        out.actions.append(OutdateReplica(resource, wire_id, fence_timeout(s.config) / 2))
        out.reason(f"{s.peer} lost its replication link for DRBD resource {resource} and asks "
                   f"{s.me} to outdate its replica (fence request {wire_id}): running "
                   "drbdadm outdate")


def _fence_status(s: CoreState, now: float) -> dict[str, Any]:
    last = s.fence_last
    return {
        "pending": [
            {
                "resource": f.resource,
                "request": f.wire_id,
                "handlers": len(f.waiters),
                "age": round(now - f.since, 3),
                "timeout_in": round(f.deadline - now, 3),
            }
            for f in s.fence_out.values()
        ],
        "last": None if last is None else {
            "resource": last.resource,
            "code": last.code,
            "message": last.message,
            "age": round(now - last.at, 3),
        },
        "peer_requests": [
            {"resource": f.resource, "request": f.wire_id, "result": f.result,
             "age": round(now - f.since, 3)}
            for f in s.fence_in.values()
        ],
    }
