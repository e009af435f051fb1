"""The core's status as a typed value (``twinbeat status``), built on request, never per step.

``view(state, now)`` returns a ``CoreView`` of frozen dataclasses; ``CoreView.to_json()`` is
the dictionary ``twinbeat status --json`` prints (the loop adds what only it knows:
transports, the watchdog device, replication, history, loop figures). The JSON keys are the
field names, so the CLI, the tests and the QEMU harness read the same keys as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from supervisor.core.compat import of_state
from supervisor.core.liveness import cut_off_for_groups, world_ok
from supervisor.core.ownership import owner_of, peer_view, preferred
from supervisor.core.state import CoreState
from supervisor.core.watchdog_window import window_text


def jsonable(value: Any) -> Any:
    """A dataclass (recursively) as JSON-ready dicts and lists."""
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class LinkView:
    name: str
    type: str
    state: str
    last_heard_age: float | None
    loss: float | None
    received: int
    peer_hears_us: bool | None
    carrier: bool | None
    rtt: float | None  # seconds, the latest round trip measured on the link


@dataclass(frozen=True)
class GroupStatus:
    name: str
    owner: str | None
    local: str
    negotiation: str
    peer: str | None
    preferred: str
    pinned: bool
    failed: bool
    failed_reason: str | None
    failures: int
    resources: tuple[str, ...]
    resources_up: int
    reason: str


@dataclass(frozen=True)
class TimingView:
    keepalive: float
    warntime: float
    deadtime: float
    initdead: float


@dataclass(frozen=True)
class WorldView:
    ok: bool
    reason: str | None
    carrier: bool | None
    ping_answered: bool | None
    #: why being cut off costs this node its groups now (the damped judgment), if it does
    yields: str | None


@dataclass(frozen=True)
class WatchdogView:
    ok: bool
    reason: str
    #: the timeout this node's watchdog is armed with, as published to the peer (wt)
    armed_timeout: float | None


@dataclass(frozen=True)
class PeerView:
    name: str
    state: str
    reason: str | None
    last_heard_age: float | None
    generation: int | None
    status: str | None
    world_ok: bool | None
    release: str | None  # the peer's twinbeat release (None: not said, or not heard)
    protocol: int | None  # the peer's protocol minor version (0: older than the field)
    #: the peer's published watchdog: may it own groups (wd), armed timeout (wt)
    can_own: bool | None
    watchdog_timeout: float | None
    #: what a takeover from it waits for (the watchdog window)
    takeover_wait: str | None


@dataclass(frozen=True)
class VersionsView:
    """Both nodes' versions and what the pair uses (supervisor.core.compat)."""

    release: str
    protocol: int
    peer_release: str | None
    peer_protocol: int | None
    used: int
    supported: bool
    mixed: bool
    features: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class PeerGroupSaid:
    name: str
    activity: str
    negotiation: str
    failed: bool


@dataclass(frozen=True)
class PeerSaid:
    """What the peer's latest beat says about itself: its own view, shown beside ours."""

    status: str
    world_ok: bool
    can_own: bool
    maintenance: bool
    hears_us: Mapping[str, bool]  # link -> the peer hears us on it
    groups: tuple[PeerGroupSaid, ...]


@dataclass(frozen=True)
class FencePending:
    resource: str
    request: int
    handlers: int
    age: float
    timeout_in: float


@dataclass(frozen=True)
class FenceLast:
    resource: str
    code: int
    message: str
    age: float


@dataclass(frozen=True)
class FencePeerRequest:
    resource: str
    request: int
    result: str | None
    age: float


@dataclass(frozen=True)
class FencingView:
    pending: tuple[FencePending, ...]
    last: FenceLast | None
    peer_requests: tuple[FencePeerRequest, ...]


@dataclass(frozen=True)
class CoreView:
    node: str
    cluster: str
    generation: int
    status: str
    uptime: float
    timing: TimingView
    world: WorldView
    can_own: bool
    watchdog: WatchdogView
    peer: PeerView
    links: tuple[LinkView, ...]
    groups: tuple[GroupStatus, ...]
    dropped: Mapping[str, int]
    shutting_down: bool
    config_digest: str
    config_mismatch: bool
    fencing: FencingView
    versions: VersionsView
    #: nodes in maintenance mode (their resources are left as they are)
    maintenance: tuple[str, ...]
    #: the peer's own view, from its latest beat (None: never heard)
    peer_said: PeerSaid | None

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = jsonable(self)
        return result


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(now - then, 3)


def link_views(s: CoreState, now: float) -> list[LinkView]:
    """The links' part of ``view`` (the status page's samples ask for it alone, every
    statuspage.SAMPLE_EVERY: not the whole view and its JSON)."""
    links = []
    for ls in s.links.values():
        loss = ls.loss()
        links.append(LinkView(
            name=ls.name,
            type=ls.kind,
            state=ls.status.value,
            last_heard_age=_age(now, ls.last_heard),
            loss=None if loss is None else round(loss, 4),
            received=ls.received,
            peer_hears_us=ls.peer_hears_us,
            carrier=ls.carrier,
            rtt=ls.rtt,
        ))
    return links


def view(s: CoreState, now: float) -> CoreView:
    t = s.config.timing
    ok, why = world_ok(s, now)
    links = link_views(s, now)
    groups = []
    for g in s.groups.values():
        pv = peer_view(s, g.name)
        groups.append(GroupStatus(
            name=g.name,
            owner=owner_of(s, g.name),
            local=g.activity.value,
            negotiation=g.nego.value,
            peer=pv.activity.value if pv else None,
            preferred=preferred(s, g.name)[0],
            pinned=bool(s.pins.get(g.name, ("", 0))[0]),
            failed=g.failed_until is not None,
            failed_reason=g.failed_reason or None,
            failures=len(g.failures),
            resources=tuple(spec.describe() for spec in g.specs),
            resources_up=g.up,
            reason=g.reason,
        ))
    p = s.peer_state
    beat = p.beat
    f = s.fence
    last = f.last
    compat = of_state(s)
    return CoreView(
        node=s.me,
        cluster=s.config.cluster_name,
        generation=s.generation,
        status=s.status.value,
        uptime=round(now - s.started_at, 3),
        timing=TimingView(t.keepalive, t.warntime, t.deadtime, t.initdead),
        world=WorldView(
            ok=ok,
            reason=why or None,
            carrier=s.world.carrier,
            ping_answered=None if not s.config.ping_nodes else s.world.last_ping is not None,
            yields=cut_off_for_groups(s, now) or None,
        ),
        can_own=s.watchdog_ok and not s.shutting_down,
        watchdog=WatchdogView(s.watchdog_ok, s.watchdog_reason, s.watchdog_timeout),
        peer=PeerView(
            name=s.peer,
            state=p.status.value,
            reason=p.dead_reason or None,
            last_heard_age=_age(now, p.last_heard),
            generation=beat.generation if beat else None,
            status=beat.status.value if beat else None,
            world_ok=beat.world_ok if beat else None,
            release=(beat.release or None) if beat else None,
            protocol=beat.minor if beat else None,
            can_own=beat.can_own if beat else None,
            watchdog_timeout=beat.watchdog_timeout if beat else None,
            takeover_wait=window_text(beat.watchdog_timeout, t.deadtime, t.keepalive)
            if beat else None,
        ),
        links=tuple(links),
        groups=tuple(groups),
        dropped=dict(sorted(s.dropped.items())),
        shutting_down=s.shutting_down,
        config_digest=s.settings.digest,
        config_mismatch=p.config_mismatch,
        maintenance=tuple(n for n in (s.me, s.peer) if s.in_maintenance(n)),
        peer_said=None if beat is None else PeerSaid(
            status=beat.status.value,
            world_ok=beat.world_ok,
            can_own=beat.can_own,
            maintenance=s.in_maintenance(s.peer),
            hears_us=dict(sorted(beat.links.items())),
            groups=tuple(PeerGroupSaid(n, v.activity.value, v.nego.value, v.failed)
                         for n, v in sorted(beat.groups.items())),
        ),
        fencing=FencingView(
            pending=tuple(
                FencePending(o.resource, o.wire_id, len(o.waiters), round(now - o.since, 3),
                             round(o.deadline - now, 3))
                for o in f.out.values()
            ),
            last=None if last is None else FenceLast(last.resource, last.code, last.message,
                                                     round(now - last.at, 3)),
            peer_requests=tuple(
                FencePeerRequest(i.resource, i.wire_id, i.result, round(now - i.since, 3))
                for i in f.in_.values()
            ),
        ),
        versions=VersionsView(
            release=s.settings.release,
            protocol=compat.mine,
            peer_release=(beat.release or None) if beat else None,
            peer_protocol=beat.minor if beat else None,
            used=compat.used,
            supported=compat.supported,
            mixed=compat.mixed,
            features=compat.features,
            reason=compat.reason,
        ),
    )


def status(s: CoreState, now: float) -> dict[str, Any]:
    """``view(s, now).to_json()``: the core's part of ``twinbeat status --json``."""
    return view(s, now).to_json()
