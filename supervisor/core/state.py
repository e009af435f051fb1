"""The core's state: frozen values, changed only by building new ones.

A step never changes the state it was given: every record here is a frozen dataclass, every
container a tuple or a mapping that is replaced, never updated in place (``Mapping`` in the
types keeps mypy from allowing ``groups[name] = ...``). A step that changes one group builds
one new ``GroupState`` and one new ``groups`` mapping and shares everything else with the
state it started from, so a step costs what it changes, not what the state holds. A property
test (tests/test_core_property.py) steps random event sequences and checks that no input
state ever changed.

``evolve(obj, **changes)`` is ``dataclasses.replace`` without the call to ``__init__``
(several times faster; the core steps ~40 times a second per node at a 100 ms keepalive). It
checks the field names, so a typo raises instead of adding an attribute.

The states with a transition table (``supervisor.core.states``) change only through the
``to()`` methods below, which enforce the table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from supervisor.core import codec, freshness
from supervisor.core.actions import Action, Emit, Log
from supervisor.core.notify import Kind, Notice, Severity
from supervisor.core.replica import Replica
from supervisor.core.sha256 import sha256
from supervisor.core.states import (
    ACTIVITY_TRANSITIONS,
    LINK_TRANSITIONS,
    NODE_TRANSITIONS,
    PEER_TRANSITIONS,
    Activity,
    LinkStatus,
    Nego,
    NodeStatus,
    PeerStatus,
    checked,
)
from supervisor.resource_spec import DrbdSpec, ResourceSpec

if TYPE_CHECKING:
    from supervisor.config import Config, Group

# Deadlines are sums of floats: compare with a little slack so that a wake-up scheduled for
# exactly `last_heard + deadtime` sees the deadline as reached.
EPS = 1e-6
#: a beat due within this part of the keepalive is sent on the wake-up at hand (the peer's
#: beat, a tick for another deadline, any event) instead of on a wake-up of its own: a beat
#: goes out at most this much early, never later than before (supervisor.core.publish); a
#: monitor due before the beat goes out with it (supervisor.core.plan)
EARLY = 0.1
LOSS_WINDOW = 100
SENT_WINDOW = 16

_T = TypeVar("_T")


def evolve(obj: _T, **changes: Any) -> _T:
    """A copy of the frozen dataclass ``obj`` with ``changes`` (names checked).

    The core's dataclasses keep their fields, and only them, in their ``__dict__``: a name
    that is not a field adds a key (a TypeError). Cheap on purpose (several calls a beat)."""
    old = obj.__dict__
    new = object.__new__(type(obj))
    d = new.__dict__
    d.update(old)
    d.update(changes)
    if len(d) != len(old):
        raise TypeError(f"{type(obj).__name__} has no field {sorted(d.keys() - old.keys())}")
    return new


def fmt(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


# --------------------------------------------------------------------------------------------
# What a step returns besides the state


class Out:
    """The actions and reason sentences of one step (collected, then frozen into a Step)."""

    __slots__ = ("actions", "reasons")

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.reasons: list[str] = []

    def reason(self, text: str) -> None:
        self.reasons.append(text)

    def warn(self, text: str) -> None:
        """A decision worth a warning: logged once, at warning level, by the loop."""
        self.actions.append(Log("warning", text))
        self.reasons.append(text)

    def error(self, text: str) -> None:
        self.actions.append(Log("error", text))
        self.reasons.append(text)

    def event(self, kind: Kind, reason: str, *, group: str = "", link: str = "",
              resource: str = "", subject: str = "", severity: Severity | None = None) -> None:
        """A cluster event (history, hooks, mail) for a decision whose sentence is
        ``reason``."""
        self.actions.append(Emit(Notice(kind, reason, group=group, link=link,
                                        resource=resource, subject=subject,
                                        severity=severity)))


# --------------------------------------------------------------------------------------------
# Settings: what does not change between steps (shared by every state, never copied)


@dataclass(frozen=True, eq=False)
class Settings:
    config: Config
    me: str
    peer: str
    key: bytes
    digest: str
    #: what the peer's frames may name (built once: frames decoded against the same domain
    #: object compare it by identity, codec.Template)
    domain: codec.Domain
    release: str = ""  # this node's twinbeat release (its beats say it; "" when unknown)
    #: this node's protocol minor (codec.PROTOCOL_MINOR; another only in tests that play an
    #: older or newer node)
    minor: int = codec.PROTOCOL_MINOR

    @classmethod
    def make(cls, config: Config, me: str, key: bytes, release: str = "",
             minor: int = codec.PROTOCOL_MINOR) -> Settings:
        digest = policy_digest(config)
        return cls(config, me, config.peer_of(me).name, key, digest,
                   codec.Domain.of(config, digest), release, minor)

    def __deepcopy__(self, memo: dict[int, Any]) -> Settings:
        return self


def policy_digest(config: Config) -> str:
    """A short digest of what both nodes must agree on (not links: those differ per node)."""
    shared: dict[str, Any] = {
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
    return sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Sub-states


@dataclass(frozen=True)
class LinkState:
    name: str
    kind: str
    status: LinkStatus = LinkStatus.UNKNOWN
    last_heard: float | None = None
    last_order: tuple[int, int] | None = None
    window_gen: int = -1
    #: the last LOSS_WINDOW sequence numbers heard (for the loss estimate)
    window: tuple[int, ...] = ()
    carrier: bool | None = None
    received: int = 0
    peer_hears_us: bool | None = None
    #: the latest round-trip time measured on this link (an echo of one of our beats)
    rtt: float | None = None
    #: the last frame heard waited for a quiet wake-up (not echoed; see FrameReceived)
    heard_waited: bool = False

    def to(self, status: LinkStatus) -> LinkState:
        checked(LINK_TRANSITIONS, self.status, status, f"link {self.name}")
        return evolve(self, status=status)

    def loss(self) -> float | None:
        if len(self.window) < 2:
            return None
        span = self.window[-1] - self.window[0] + 1
        return max(0.0, 1.0 - len(self.window) / span)


@dataclass(frozen=True)
class Op:
    kind: str  # start | stop | check
    index: int


def stops(up: int) -> tuple[Op, ...]:
    """Stop the first ``up`` resources, last first."""
    return tuple(Op("stop", i) for i in reversed(range(up)))


@dataclass(frozen=True)
class GroupState:
    name: str
    specs: tuple[ResourceSpec, ...]
    activity: Activity = Activity.STOPPING
    nego: Nego = Nego.NONE
    epoch: int = 0
    want_counter: int = 0
    up: int = 0  # resources started, counted from the left
    plan: tuple[Op, ...] = ()
    inflight: Op | None = None
    inflight_id: int = 0
    purpose: str = "cleanup"  # cleanup | start | release | restart | monitor | failover
    fail_after_stop: str = ""  # reason to mark the group failed once stopped
    check_duplicates: bool = False
    failures: tuple[float, ...] = ()
    failed_until: float | None = None
    failed_reason: str = ""
    next_monitor: float | None = None
    reason: str = "starting up: stopping anything left over from before"
    blocked_reason: str = ""

    def to(self, activity: Activity, **changes: Any) -> GroupState:
        """The group with a new activity (checked against ACTIVITY_TRANSITIONS)."""
        checked(ACTIVITY_TRANSITIONS, self.activity, activity, f"group {self.name}")
        return evolve(self, activity=activity, **changes)

    def said(self, reason: str) -> GroupState:
        return self if reason == self.reason else evolve(self, reason=reason)


@dataclass(frozen=True)
class PeerState:
    status: PeerStatus = PeerStatus.UNKNOWN
    beat: codec.Beat | None = None
    #: the frame ``beat`` came in (stripped): the same bytes on another link are that beat
    #: again, authenticated already under the current key, and are not decoded a second time
    frame: bytes = b""
    last_heard: float | None = None
    left_gen: int = -1
    dead_reason: str = ""
    config_mismatch: bool = False
    #: what the replay and jump rules remember of the peer's beats
    fresh: freshness.Freshness = field(default_factory=freshness.Freshness)

    def to(self, status: PeerStatus, **changes: Any) -> PeerState:
        checked(PEER_TRANSITIONS, self.status, status, "peer")
        return evolve(self, status=status, **changes)


@dataclass(frozen=True)
class WorldState:
    """What this node knows of the outside world: public carrier, ping nodes."""

    carrier: bool | None = None
    last_ping: float | None = None
    reason: str = ""  # why it is cut off ("" = it is not)
    ping_silence_warned: bool = False
    #: since when this node cannot see the world while the live peer can (damping)
    outranked_since: float | None = None
    #: it yields its groups for being cut off ("" = it does not): ping or carrier
    lost: str = ""
    #: after a loss by ping, it takes no group back before this time (hysteresis)
    recover_until: float | None = None


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


@dataclass(frozen=True)
class FenceState:
    out: Mapping[str, FenceOut]
    in_: Mapping[str, FenceIn]
    counter: int = 0
    last: FenceOutcome | None = None


@dataclass(frozen=True)
class ForceData:
    """``takeover --force-data``: the group's drbddisk starts promote whatever the data,
    until ``deadline`` (a takeover that never comes must not leave a forced promotion
    armed); each resource's first start after the command uses it up."""

    deadline: float
    resources: frozenset[str]


@dataclass(frozen=True)
class Resolving:
    """A ``resolve-split-brain`` whose drbdadm commands are running: what it said so far,
    whether everything went well, the resources still running their commands here, and
    those whose half the peer still has to run (asked over the heartbeat links as ``sb``
    with ``wire``; given up at ``deadline``)."""

    said: tuple[str, ...]
    ok: bool
    pending: frozenset[str]
    peer: frozenset[str] = frozenset()
    discard: str = ""
    wire: int = 0
    deadline: float = 0.0


@dataclass(frozen=True)
class ResolveIn:
    """The peer asked this node to run its half of a resolve-split-brain (``sb``): the
    request id, and what it came to (None while the commands run; then done, failed or
    refused), published as ``sba`` while the peer still asks."""

    wire: int
    result: str | None = None
    detail: str = ""


# --------------------------------------------------------------------------------------------
# The whole state


@dataclass(frozen=True)
class CoreState:
    settings: Settings
    generation: int
    started_at: float
    links: Mapping[str, LinkState]
    groups: Mapping[str, GroupState]
    #: admin pins (standby/takeover): group -> (node, Lamport stamp); node "" is a pin
    #: cleared by `twinbeat unpin` (kept with its stamp so that an older pin does not return)
    pins: Mapping[str, tuple[str, int]]
    #: frames dropped, by cause
    dropped: Mapping[str, int]
    status: NodeStatus = NodeStatus.INIT
    peer_state: PeerState = PeerState()
    world: WorldState = WorldState()
    watchdog_ok: bool = True
    watchdog_reason: str = "no watchdog state reported yet"
    #: the timeout this node's watchdog is armed with (None: none armed); published as ``wt``
    watchdog_timeout: float | None = None
    lamport: int = 0
    seq: int = 0
    next_beat: float = 0.0
    last_published: tuple[Any, ...] | None = None
    shutting_down: bool = False
    shutdown_done: bool = False
    op_counter: int = 0
    fence: FenceState = FenceState({}, {})
    #: the DRBD resources the groups use, as the events2 monitor last described them
    replicas: Mapping[str, Replica] = field(default_factory=dict)
    #: armed `takeover --force-data`, by group
    force_data: Mapping[str, ForceData] = field(default_factory=dict)
    #: resolve-split-brain requests waiting for their drbdadm commands, by request id
    resolving: Mapping[int, Resolving] = field(default_factory=dict)
    #: maintenance mode by node: (on, Lamport stamp), merged with the peer's by stamp
    maintenance: Mapping[str, tuple[bool, int]] = field(default_factory=dict)
    #: our last SENT_WINDOW beats: (seq, when sent), for the round-trip times
    sent: tuple[tuple[int, float], ...] = ()
    #: the peer's resolve-split-brain requests, by DRBD resource
    resolve_in: Mapping[str, ResolveIn] = field(default_factory=dict)
    resolve_counter: int = 0

    @property
    def config(self) -> Config:
        return self.settings.config

    @property
    def me(self) -> str:
        return self.settings.me

    @property
    def peer(self) -> str:
        return self.settings.peer

    @property
    def peer_status(self) -> PeerStatus:
        return self.peer_state.status

    def to(self, status: NodeStatus) -> CoreState:
        checked(NODE_TRANSITIONS, self.status, status, f"node {self.me}")
        return evolve(self, status=status)

    def with_group(self, g: GroupState) -> CoreState:
        if self.groups.get(g.name) is g:
            return self
        return evolve(self, groups={**self.groups, g.name: g})

    def with_link(self, ls: LinkState) -> CoreState:
        if self.links.get(ls.name) is ls:
            return self
        return evolve(self, links={**self.links, ls.name: ls})

    def in_maintenance(self, node: str) -> bool:
        flag = self.maintenance.get(node)
        return flag is not None and flag[0]

    def count_drop(self, cause: str) -> CoreState:
        return evolve(self, dropped={**self.dropped, cause: self.dropped.get(cause, 0) + 1})

    def group_cfg(self, name: str) -> Group | None:
        for g in self.settings.config.groups:
            if g.name == name:
                return g
        return None


def initial_state(config: Config, me: str, key: bytes, generation: int, now: float, *,
                  maintenance: Mapping[str, tuple[bool, int]] | None = None,
                  release: str = "", minor: int = codec.PROTOCOL_MINOR) -> CoreState:
    """The state of a node that has just started: every group is first stopped (cleanup),
    unless this node is in maintenance (``maintenance``: the flags persisted by the last
    run; then nothing is touched until maintenance ends). ``release`` is this node's
    twinbeat version (said in every beat), ``minor`` its protocol minor."""
    required = config.watchdog.mode == "required"
    flags = dict(maintenance or {})
    return CoreState(
        Settings.make(config, me, key, release, minor),
        generation=generation,
        started_at=now,
        links={link.name: LinkState(link.name, link.type) for link in config.links},
        groups={g.name: new_group(g) for g in config.groups},
        watchdog_ok=not required,
        watchdog_reason="watchdog not armed yet" if required else "not required",
        pins={},
        dropped={},
        replicas={name: Replica(name) for name in drbd_resources(config)},
        maintenance=flags,
        lamport=max((stamp for _, stamp in flags.values()), default=0),
    )


def drbd_resources(config: Config) -> list[str]:
    """The DRBD resources the groups of ``config`` use (drbddisk::RES), in order."""
    names: list[str] = []
    for group in config.groups:
        for spec in group.resources:
            if isinstance(spec, DrbdSpec) and spec.resource not in names:
                names.append(spec.resource)
    return names


def new_group(g: Group) -> GroupState:
    """A group found at start: whatever of it may still run from before is stopped first."""
    n = len(g.resources)
    if not n:
        return GroupState(g.name, g.resources, activity=Activity.IDLE)
    return GroupState(g.name, g.resources, up=n, plan=stops(n))


def beat_opens(s: CoreState) -> float:
    """When this node's next beat may go out: EARLY of the keepalive before it is due (with
    the step at hand: a frame of the peer, a monitor)."""
    return s.next_beat - max(EPS, EARLY * s.settings.config.timing.keepalive)
